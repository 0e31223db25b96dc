package realengine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkCPUDecode measures decode throughput: batch sequences of a 64-token
// prompt decode together; every 128 steps they are replaced (outside the
// timer) so contexts stay between 64 and 192 tokens whatever b.N is.
func BenchmarkCPUDecode(b *testing.B) {
	for _, preset := range []string{"tiny", "small"} {
		for _, batch := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/batch=%d", preset, batch), func(b *testing.B) {
				c, w, err := LoadWeights(preset, 1)
				if err != nil {
					b.Fatal(err)
				}
				e, err := NewCPU(c, w, CPUOptions{})
				if err != nil {
					b.Fatal(err)
				}
				d := decodeBatch{b: b, e: e, vocab: c.VocabSize, batch: batch, hint: 128, prime: 1, promptLen: func(int) int { return 64 }}
				d.refill()
				d.run(128, nil)
			})
		}
	}
}

// BenchmarkCPUPrefill measures one step prefilling a 128-token prompt.
func BenchmarkCPUPrefill(b *testing.B) {
	for _, preset := range []string{"tiny", "small"} {
		b.Run(preset, func(b *testing.B) {
			c, w, err := LoadWeights(preset, 1)
			if err != nil {
				b.Fatal(err)
			}
			e, err := NewCPU(c, w, CPUOptions{})
			if err != nil {
				b.Fatal(err)
			}
			prompt := randomPrompt(rand.New(rand.NewPCG(2, 2)), 128, c.VocabSize)
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := e.Admit(Sequence{ID: SeqID(i), Prompt: prompt}); err != nil {
					b.Fatal(err)
				}
				if _, err := e.Step(ctx); err != nil {
					b.Fatal(err)
				}
				if err := e.Retire(SeqID(i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(prompt)*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// decodeBatch keeps batch sequences decoding for the decode benchmarks:
// refill retires the previous batch, admits a new one (prompt i of
// promptLen(i) random tokens, MaxNewTokens hint) and runs prime steps
// (the prefill, and more if the benchmark wants decode already under way).
type decodeBatch struct {
	b                  *testing.B
	e                  Engine
	vocab, batch, hint int
	prime              int
	promptLen          func(i int) int
	r                  *rand.Rand
	next               SeqID
	// fatal, when set, stands in for b.Fatal (see onPinned).
	fatal func(args ...any)
}

func (d *decodeBatch) fail(err error) {
	if d.fatal != nil {
		d.fatal(err)
	}
	d.b.Fatal(err)
}

// run times b.N decode steps, replacing the sequences (untimed) every
// `every` steps with refill (d.refill when nil), reports tokens/s and
// returns the timed steps' summed Wall.
func (d *decodeBatch) run(every int, refill func()) time.Duration {
	if refill == nil {
		refill = d.refill
	}
	ctx := context.Background()
	var wall time.Duration
	d.b.ReportAllocs()
	d.b.ResetTimer()
	for i := 0; i < d.b.N; i++ {
		if i > 0 && i%every == 0 {
			d.b.StopTimer()
			refill()
			d.b.StartTimer()
		}
		res, err := d.e.Step(ctx)
		if err != nil {
			d.fail(err)
		}
		wall += res.Wall
	}
	d.b.ReportMetric(float64(d.batch*d.b.N)/d.b.Elapsed().Seconds(), "tokens/s")
	return wall
}

func (d *decodeBatch) refill() {
	if d.r == nil {
		d.r = rand.New(rand.NewPCG(1, 1))
	}
	for id := d.next - SeqID(d.batch); id < d.next && id >= 0; id++ {
		_ = d.e.Retire(id)
	}
	for i := 0; i < d.batch; i++ {
		if err := d.e.Admit(Sequence{ID: d.next, Prompt: randomPrompt(d.r, d.promptLen(i), d.vocab), MaxNewTokens: d.hint}); err != nil {
			d.fail(err)
		}
		d.next++
	}
	for i := 0; i < d.prime; i++ {
		if _, err := d.e.Step(context.Background()); err != nil {
			d.fail(err)
		}
	}
}
