//go:build mlx && cgo

package realengine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/batchkit/batchkit/mlxc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newMLXForChecks(t testing.TB, c Config, w *Weights) Engine {
	e, err := NewMLX(c, w, Options{Model: "test", RecordLogits: true})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

func TestMLXMatchesReference(t *testing.T)   { checkMatchesReference(t, newMLXForChecks, 1e-3) }
func TestMLXBatchedEqualsAlone(t *testing.T) { checkBatchedEqualsAlone(t, newMLXForChecks, 1e-3) }
func TestMLXChunkedPrefill(t *testing.T)     { checkChunkedPrefill(t, newMLXForChecks, 1e-3) }
func TestMLXOpenGPUOnCPUBuild(t *testing.T) {
	gpu, err := mlxc.GPUAvailable()
	require.NoError(t, err)
	if gpu {
		t.Skip("this MLX build has a GPU")
	}
	_, err = Open("mlx", Options{Model: "tiny", Device: "gpu"})
	require.ErrorContains(t, err, "no GPU")
	_, err = Open("mlx", Options{Model: "tiny", Device: "tpu"})
	require.ErrorContains(t, err, `device "tpu"`)
}

func TestMLXMemoryBackToBaseline(t *testing.T) {
	c, w := tinyModel(t, 5)
	e := newMLXForChecks(t, c, w)
	base, err := mlxc.Memory()
	require.NoError(t, err)
	runCycles(t, e, rand.New(rand.NewPCG(3, 3)), c.VocabSize)
	after, err := mlxc.Memory()
	require.NoError(t, err)
	assert.Equal(t, base.Active, after.Active)
}

func TestMLXCancelledStepRollsBack(t *testing.T) {
	c, w := tinyModel(t, 6)
	e := newMLXForChecks(t, c, w)
	require.NoError(t, e.Admit(Sequence{ID: 1, Prompt: []int32{1, 2, 3}}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.Step(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, e.Stats().Pending)
	res, err := e.Step(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 3, res.PrefillTokens)
}

func TestMLXContextFull(t *testing.T) {
	c, w := tinyModel(t, 7)
	e, err := NewMLX(c, w, Options{MaxContext: 4})
	require.NoError(t, err)
	defer e.Close()
	require.NoError(t, e.Admit(Sequence{ID: 1, Prompt: []int32{1, 2, 3}}))
	require.NoError(t, e.Admit(Sequence{ID: 2, Prompt: []int32{1}}))
	for i := 0; i < 2; i++ {
		res, err := e.Step(context.Background())
		require.NoError(t, err)
		for _, o := range res.Outputs {
			require.NoError(t, o.Err)
		}
	}
	res, err := e.Step(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Outputs, 2)
	assert.Equal(t, SeqID(2), res.Outputs[0].ID)
	assert.NoError(t, res.Outputs[0].Err)
	assert.ErrorIs(t, res.Outputs[1].Err, ErrContextFull)
}

// TestMLXLoadSavedModel saves random weights, reloads them and requires the
// same logits as the in-memory weights: exact for f32, within quantisation
// error for q8/q4.
func TestMLXLoadSavedModel(t *testing.T) {
	c, w := tinyModel(t, 8)
	prompt := randomPrompt(rand.New(rand.NewPCG(9, 9)), 9, c.VocabSize)
	want, wantLogits := generate(t, newMLXForChecks(t, c, w), 1, prompt, 3)
	for _, tt := range []struct {
		name string
		opt  SaveOptions
		tol  float64
	}{
		{"f32", SaveOptions{DType: F32}, 0},
		{"q8", SaveOptions{Bits: 8, GroupSize: 32}, 5e-2},
		{"q4", SaveOptions{Bits: 4, GroupSize: 32}, 0.6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir() + "/m"
			require.NoError(t, SaveModel(dir, c, w, tt.opt))
			e, err := Open("mlx", Options{Model: dir, RecordLogits: true})
			require.NoError(t, err)
			defer e.Close()
			got, gotLogits := generate(t, e, 1, prompt, 3)
			if tt.tol == 0 {
				assert.Equal(t, want, got)
				assert.Equal(t, wantLogits, gotLogits)
				return
			}
			ref := make([]float64, len(wantLogits[0]))
			for j, v := range wantLogits[0] {
				ref[j] = float64(v)
			}
			assert.Less(t, maxRelDiff(gotLogits[0], ref), tt.tol)
		})
	}
}

// BenchmarkMLXDecode mirrors BenchmarkCPUDecode; it also reports the
// Go-side share of a step: wall time outside mlxc.Eval (graph building, cgo
// crossings, token read-back) over the step's wall.
func BenchmarkMLXDecode(b *testing.B) {
	for _, preset := range []string{"tiny", "small"} {
		for _, batch := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/batch=%d", preset, batch), func(b *testing.B) {
				c, w, err := LoadWeights(preset, 1)
				if err != nil {
					b.Fatal(err)
				}
				e, err := NewMLX(c, w, Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				r := rand.New(rand.NewPCG(1, 1))
				ctx := context.Background()
				next := SeqID(0)
				refill := func() {
					for id := next - SeqID(batch); id < next && id >= 0; id++ {
						_ = e.Retire(id)
					}
					for i := 0; i < batch; i++ {
						if err := e.Admit(Sequence{ID: next, Prompt: randomPrompt(r, 64, c.VocabSize), MaxNewTokens: 128}); err != nil {
							b.Fatal(err)
						}
						next++
					}
					if _, err := e.Step(ctx); err != nil {
						b.Fatal(err)
					}
				}
				refill()
				e.evalTime = 0
				var wall time.Duration
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if i > 0 && i%128 == 0 {
						b.StopTimer()
						ev := e.evalTime
						refill()
						e.evalTime = ev
						b.StartTimer()
					}
					res, err := e.Step(ctx)
					if err != nil {
						b.Fatal(err)
					}
					wall += res.Wall
				}
				b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "tokens/s")
				b.ReportMetric(100*float64(wall-e.evalTime)/float64(wall), "go-overhead-%")
			})
		}
	}
}

// TestMLXGroupedEqualsAlone runs sequences of equal prompt length, which
// share Block calls, and requires each to match its run alone.
func TestMLXGroupedEqualsAlone(t *testing.T) {
	c, w := tinyModel(t, 10)
	e := newMLXForChecks(t, c, w)
	r := rand.New(rand.NewPCG(11, 11))
	prompts := [][]int32{randomPrompt(r, 6, c.VocabSize), randomPrompt(r, 6, c.VocabSize), randomPrompt(r, 6, c.VocabSize)}
	var alone [][][]float32
	var aloneToks [][]int32
	for i, p := range prompts {
		toks, logits := generate(t, e, SeqID(100+i), p, 4)
		aloneToks = append(aloneToks, toks)
		alone = append(alone, logits)
	}
	for i, p := range prompts {
		require.NoError(t, e.Admit(Sequence{ID: SeqID(i), Prompt: p}))
	}
	got := make([][]int32, len(prompts))
	for s := 0; s < 4; s++ {
		res, err := e.Step(context.Background())
		require.NoError(t, err)
		require.Len(t, res.Outputs, len(prompts))
		for _, o := range res.Outputs {
			require.NoError(t, o.Err)
			got[o.ID] = append(got[o.ID], o.Token)
			ref := make([]float64, len(o.Logits))
			for j, v := range alone[o.ID][s] {
				ref[j] = float64(v)
			}
			assert.Less(t, maxRelDiff(o.Logits, ref), 1e-4, "seq %d step %d", o.ID, s)
		}
	}
	assert.Equal(t, aloneToks, got)
}
