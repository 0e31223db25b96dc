package sim

import (
	"io"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/batchkit/batchkit/trace"
)

// genSource streams n Poisson requests without holding them, so memory
// measurements see only the simulator.
type genSource struct {
	n, i    int
	rate    float64
	in, out int32
	t       float64
	r       *rand.Rand
}

func newGen(n int, rate float64, in, out int32) *genSource {
	return &genSource{n: n, rate: rate, in: in, out: out, r: rand.New(rand.NewPCG(1, 2))}
}

func (g *genSource) Read(buf []trace.Request) (int, error) {
	k := 0
	for ; k < len(buf) && g.i < g.n; k++ {
		g.t += g.r.ExpFloat64() / g.rate * 1e9
		buf[k] = trace.Request{RequestID: int64(g.i), ArrivalNS: int64(g.t), InputTokens: g.in, OutputTokens: g.out}
		g.i++
	}
	if g.i == g.n {
		return k, io.EOF
	}
	return k, nil
}

func benchRun(b *testing.B, p Profile, spec string, rate float64, in, out int32) {
	for _, sum := range []bool{true, false} {
		name := "summary"
		if !sum {
			name = "model-only"
		}
		b.Run(name, func(b *testing.B) { benchRun1(b, p, spec, rate, in, out, !sum) })
	}
}

func benchRun1(b *testing.B, p Profile, spec string, rate float64, in, out int32, skip bool) {
	b.ReportAllocs()
	pol := mustPolicy(b, spec)
	b.ResetTimer()
	cpu := cpuTime()
	_, st, err := Run(Config{Profile: p, Policy: pol, Seed: 1, SkipSummary: skip}, newGen(b.N, rate, in, out))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(float64(st.Events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(st.Steps)/float64(b.N), "steps/req")
}

// The seed engine at 70% load: 406 ms per request, batches of up to 4.
func BenchmarkSequential(b *testing.B) {
	p, _ := BuiltinProfile("seed-llama3.2-3b")
	benchRun(b, p, "fixed:window=2ms,max_batch=4", 0.7/0.406, 40, 50)
}

func BenchmarkStatic(b *testing.B) {
	p, _ := BuiltinProfile("gpu-static")
	benchRun(b, p, "fixed:window=2ms,max_batch=16", 30, 200, 50)
}

// BenchmarkStatic offers 30 req/s to an engine that serves about 26.7
// (batches of 16 take ~600 ms), so its queue and latencies grow without
// bound; this one offers 20 req/s (75% load).
func BenchmarkStaticStable(b *testing.B) {
	p, _ := BuiltinProfile("gpu-static")
	benchRun(b, p, "fixed:window=2ms,max_batch=16", 20, 200, 50)
}

func BenchmarkContinuous(b *testing.B) {
	p, _ := BuiltinProfile("gpu-continuous")
	benchRun(b, p, "none", 40, 200, 50)
}

func BenchmarkContinuousNoJitter(b *testing.B) {
	p, _ := BuiltinProfile("gpu-continuous")
	p.JitterCV = 0
	benchRun(b, p, "none", 40, 200, 50)
}

// BenchmarkCollector is the cost of the summary's exact quantiles per request.
func BenchmarkCollector(b *testing.B) {
	b.ReportAllocs()
	c, _ := NewCollector(Trim{}, 0)
	r := Result{Status: StatusOK, OutputTokens: 50, BatchSize: 3}
	for i := 0; i < b.N; i++ {
		r.FinishNS = int64(i%100000) * 1000
		r.FirstTokenNS = r.FinishNS / 2
		c.Add(&r, int64(i))
	}
	_ = c.Summary("", "", "", 0)
}

func BenchmarkSequentialNone(b *testing.B) {
	p, _ := BuiltinProfile("seed-llama3.2-3b")
	benchRun(b, p, "none", 0.7/0.406, 40, 50)
}

func BenchmarkStaticNone(b *testing.B) {
	p, _ := BuiltinProfile("gpu-static")
	benchRun(b, p, "none", 30, 200, 50)
}

func writeBenchResults(b *testing.B, n int) string {
	path := filepath.Join(b.TempDir(), "r.parquet")
	w, err := CreateResults(path, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	p, _ := BuiltinProfile("gpu-continuous")
	if _, _, err := Run(Config{Profile: p, Policy: mustPolicy(b, "none"), SkipSummary: true, Results: w.Write}, newGen(n, 40, 200, 50)); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// Reading a 1 M-row results file: rows vs three columns.
func BenchmarkReadResults(b *testing.B) {
	const n = 1_000_000
	path := writeBenchResults(b, n)
	b.Run("rows", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, err := ReadResults(path); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("columns", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, _, err := ReadColumns(path, []string{"arrival_ns", "first_token_ns", "finish_ns"}, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

// Writing results costs per request on top of the simulation.
func BenchmarkContinuousWithResults(b *testing.B) {
	b.ReportAllocs()
	path := filepath.Join(b.TempDir(), "r.parquet")
	w, err := CreateResults(path, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	p, _ := BuiltinProfile("gpu-continuous")
	b.ResetTimer()
	if _, _, err := Run(Config{Profile: p, Policy: mustPolicy(b, "none"), Results: w.Write}, newGen(b.N, 40, 200, 50)); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
