package sim

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/batchkit/batchkit/policies"
	"github.com/batchkit/batchkit/trace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// poisson returns n requests at rate per second with output tokens from out.
func poisson(n int, rate float64, seed uint64, in int32, out func(r *rand.Rand) int32) []trace.Request {
	r := rand.New(rand.NewPCG(seed, 1))
	reqs := make([]trace.Request, n)
	t := 0.0
	for i := range reqs {
		t += r.ExpFloat64() / rate * 1e9
		reqs[i] = trace.Request{RequestID: int64(i), ArrivalNS: int64(t), InputTokens: in, OutputTokens: out(r)}
	}
	return reqs
}

func one(*rand.Rand) int32 { return 1 }

func mustPolicy(t testing.TB, spec string) policies.Policy {
	p, err := policies.Parse(spec)
	require.NoError(t, err)
	return p
}

func profile(mode Mode, maxBatch int, base float64) Profile {
	return Profile{Name: "test", Mode: mode, MaxBatch: maxBatch, Step: StepCost{BaseMS: base}}
}

type collected struct{ rs []Result }

func (c *collected) put(r *Result) error { c.rs = append(c.rs, *r); return nil }

func run(t testing.TB, cfg Config, reqs []trace.Request) (Summary, []Result) {
	var c collected
	cfg.Results = c.put
	s, _, err := Run(cfg, &SliceSource{Reqs: reqs})
	require.NoError(t, err)
	return s, c.rs
}

func meanOf(rs []Result, f func(r *Result) float64) float64 {
	s := 0.0
	for i := range rs {
		s += f(&rs[i])
	}
	return s / float64(len(rs))
}

func within(t *testing.T, name string, got, want, rel float64) {
	t.Helper()
	t.Logf("%s: got %.6g want %.6g (%+.2f%%)", name, got, want, (got/want-1)*100)
	assert.InDelta(t, want, got, rel*want, "%s: got %v want %v (±%.1f%%)", name, got, want, rel*100)
}

// Fixed window anchored at the first arrival, Poisson arrivals, an engine
// that always has room: mean wait W(1+λW/2)/(1+λW), mean batch 1+λW.
func TestFixedWindowClosedForm(t *testing.T) {
	const lambda, w = 1000.0, 0.002
	reqs := poisson(60000, lambda, 1, 0, one)
	p := profile(Continuous, 1<<20, 1e-6)
	_, rs := run(t, Config{Profile: p, Policy: mustPolicy(t, "fixed:window=2ms,max_batch=100000,anchor=first")}, reqs)
	lw := lambda * w
	within(t, "mean window wait", meanOf(rs, func(r *Result) float64 { return float64(r.WindowWaitNS) / 1e9 }), w*(1+lw/2)/(1+lw), 0.01)
	batches := map[int64]bool{}
	for _, r := range rs {
		batches[r.BatchID] = true
	}
	within(t, "mean batch size", float64(len(rs))/float64(len(batches)), 1+lw, 0.01)
}

// One closed-loop client: fixed adds exactly W to every latency, fastpath
// nothing, against the bare engine.
func TestClosedLoopOneClient(t *testing.T) {
	reqs, _, err := trace.ReadAll("../traces/seed-50q.parquet")
	require.NoError(t, err)
	p, _ := BuiltinProfile("seed-llama3.2-3b")
	p.JitterCV = 0
	_, bare := run(t, Config{Profile: p, Policy: mustPolicy(t, "none"), Clients: 1, Think: time.Second}, reqs)
	for _, tc := range []struct {
		spec string
		add  time.Duration
	}{{"fixed:window=2ms", 2 * time.Millisecond}, {"fastpath:window=2ms", 0}, {"fixed:window=750us", 750 * time.Microsecond}} {
		_, rs := run(t, Config{Profile: p, Policy: mustPolicy(t, tc.spec), Clients: 1, Think: time.Second}, reqs)
		require.Len(t, rs, len(bare))
		for i := range rs {
			assert.Equal(t, bare[i].FinishNS-bare[i].ArrivalNS+int64(tc.add), rs[i].FinishNS-rs[i].ArrivalNS, "%s request %d", tc.spec, i)
			assert.Equal(t, int64(tc.add), rs[i].WindowWaitNS, tc.spec)
		}
	}
}

// Policy none, sequential engine, Poisson arrivals: M/D/1 and
// Pollaczek–Khinchine mean queueing delays.
func TestMG1ClosedForm(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out     func(*rand.Rand) int32
		es, es2 float64 // E[n], E[n²] of output tokens
	}{
		{"M/D/1", one, 1, 1},
		{"M/G/1 uniform 1..10 tokens", func(r *rand.Rand) int32 { return 1 + r.Int32N(10) }, 5.5, 38.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const step, rho = 0.1e-3, 0.5
			lambda := rho / (tc.es * step)
			reqs := poisson(200000, lambda, 7, 0, tc.out)
			_, rs := run(t, Config{Profile: profile(Sequential, 1, step*1e3), Policy: mustPolicy(t, "none")}, reqs)
			want := lambda * tc.es2 * step * step / (2 * (1 - rho))
			within(t, "mean queueing delay", meanOf(rs, func(r *Result) float64 { return float64(r.EngineQueueWaitNS) / 1e9 }), want, 0.02)
			within(t, "mean wait (start-enqueue)", meanOf(rs, func(r *Result) float64 { return float64(r.EngineStartNS-r.EnqueueNS) / 1e9 }), want, 0.02)
		})
	}
}

// Greedy batching: a static engine with constant batch service S takes
// everything queued, so a batch holds max(1, Poisson(λS)):
// E[N] = λS + e^(−λS).
func TestGreedyBatchClosedForm(t *testing.T) {
	const lambda, s = 2000.0, 1e-3
	reqs := poisson(100000, lambda, 3, 0, one)
	_, rs := run(t, Config{Profile: profile(Static, 1<<20, s*1e3), Policy: mustPolicy(t, "none")}, reqs)
	batches := map[int64]bool{}
	for _, r := range rs {
		batches[r.BatchID] = true
	}
	within(t, "mean batch", float64(len(rs))/float64(len(batches)), lambda*s+math.Exp(-lambda*s), 0.01)
}

// An exact timeline: a continuous engine cuts a multi-step plan when a
// request arrives, and the late request joins at the next step boundary.
func TestContinuousTimeline(t *testing.T) {
	reqs := []trace.Request{
		{RequestID: 10, ArrivalNS: 0, InputTokens: 4, OutputTokens: 3},
		{RequestID: 11, ArrivalNS: 500_000, InputTokens: 4, OutputTokens: 2},
	}
	_, rs := run(t, Config{Profile: profile(Continuous, 8, 1), Policy: mustPolicy(t, "none")}, reqs)
	require.Len(t, rs, 2)
	ms := int64(time.Millisecond)
	assert.Equal(t, Result{RequestID: 10, ArrivalNS: 0, EnqueueNS: 0, DispatchNS: 0, EngineStartNS: 0, FirstTokenNS: ms, FinishNS: 3 * ms,
		InputTokens: 4, OutputTokens: 3, BatchID: 0, BatchSize: 1, Status: StatusOK}, rs[0])
	assert.Equal(t, Result{RequestID: 11, ArrivalNS: ms / 2, EnqueueNS: ms / 2, DispatchNS: ms / 2, EngineStartNS: ms, FirstTokenNS: 2 * ms, FinishNS: 3 * ms,
		InputTokens: 4, OutputTokens: 2, BatchID: 1, BatchSize: 1, EngineQueueWaitNS: ms / 2, Status: StatusOK}, rs[1])
}

// Sequential mode serves batch-mates one after another; the wait behind a
// batch-mate is engine queue wait, and overhead delays the enqueue.
func TestSequentialBatchMates(t *testing.T) {
	reqs := []trace.Request{
		{RequestID: 1, ArrivalNS: 0, InputTokens: 1, OutputTokens: 2},
		{RequestID: 2, ArrivalNS: 0, InputTokens: 1, OutputTokens: 2},
	}
	p := profile(Sequential, 4, 1)
	p.RequestOverheadMS = 0.25
	_, rs := run(t, Config{Profile: p, Policy: mustPolicy(t, "fixed:window=1ms")}, reqs)
	require.Len(t, rs, 2)
	ms := int64(time.Millisecond)
	for i, r := range rs {
		assert.Equal(t, ms/4, r.OverheadNS)
		assert.Equal(t, ms/4, r.EnqueueNS)
		assert.Equal(t, ms, r.WindowWaitNS)
		assert.Equal(t, int64(2), int64(r.BatchSize))
		assert.Equal(t, ms/4+ms+int64(i)*2*ms, r.EngineStartNS)
		assert.Equal(t, int64(i)*2*ms, r.EngineQueueWaitNS)
		assert.Equal(t, r.EngineStartNS+2*ms, r.FinishNS)
	}
}

func TestDeterministicOutputs(t *testing.T) {
	reqs := poisson(5000, 50, 9, 100, func(r *rand.Rand) int32 { return 1 + r.Int32N(60) })
	dir := t.TempDir()
	var files [2][]byte
	var js [2][]byte
	for i := range files {
		p, _ := BuiltinProfile("gpu-continuous")
		path := filepath.Join(dir, "r"+string(rune('0'+i))+".parquet")
		w, err := CreateResults(path, map[string]string{MetaPolicy: "adaptive", MetaSeed: "3"}, false)
		require.NoError(t, err)
		s, _, err := Run(Config{Profile: p, Policy: mustPolicy(t, "adaptive"), Seed: 3, Results: w.Write}, &SliceSource{Reqs: reqs})
		require.NoError(t, err)
		require.NoError(t, w.Close())
		files[i], err = os.ReadFile(path)
		require.NoError(t, err)
		js[i], err = s.JSON()
		require.NoError(t, err)
	}
	assert.True(t, bytes.Equal(files[0], files[1]), "results files differ")
	assert.Equal(t, string(js[0]), string(js[1]))
	// A different seed changes the jittered results.
	p, _ := BuiltinProfile("gpu-continuous")
	s, _, err := Run(Config{Profile: p, Policy: mustPolicy(t, "adaptive"), Seed: 4}, &SliceSource{Reqs: reqs})
	require.NoError(t, err)
	j, _ := s.JSON()
	assert.NotEqual(t, string(js[0]), string(j))
}

func TestTrim(t *testing.T) {
	reqs := poisson(2000, 500, 21, 10, func(r *rand.Rand) int32 { return 1 + r.Int32N(8) })
	first, last := reqs[0].ArrivalNS, reqs[len(reqs)-1].ArrivalNS
	const d = int64(300 * time.Millisecond)
	for _, tc := range []struct {
		name string
		trim Trim
		keep func(i int, q trace.Request) bool
	}{
		{"count", Trim{WarmupN: 100, CooldownN: 50}, func(i int, _ trace.Request) bool { return i >= 100 && i < len(reqs)-50 }},
		{"time", Trim{WarmupNS: d, CooldownNS: d}, func(_ int, q trace.Request) bool {
			return q.ArrivalNS-first >= d && q.ArrivalNS < last-d
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, rs := run(t, Config{Profile: profile(Continuous, 4, 1), Policy: mustPolicy(t, "fixed:window=1ms"), Trim: tc.trim, Total: int64(len(reqs))}, reqs)
			keep := map[int64]bool{}
			for i, q := range reqs {
				if tc.keep(i, q) {
					keep[q.RequestID] = true
				}
			}
			var sum float64
			for _, r := range rs {
				if keep[r.RequestID] {
					sum += float64(r.FinishNS - r.ArrivalNS)
				}
			}
			assert.Equal(t, int64(len(keep)), s.Requests)
			assert.Equal(t, int64(len(reqs)-len(keep)), s.Trimmed)
			assert.InDelta(t, sum/float64(len(keep))/1e6, s.LatencyMS.Mean, 0.0006)
		})
	}
}

// Quantiles are exact order statistics at 1 µs: compare with a sort.
func TestSummaryQuantilesExact(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, n := range []int{1, 2, 7, 1000, denseAfter + 5000} {
		var m samples
		vals := make([]float64, n)
		for i := range vals {
			ns := int64(r.ExpFloat64() * 3e6)
			if i%1000 == 0 {
				ns = int64(denseMaxUS)*1000 + int64(i) // beyond the dense range
			}
			m.add(ns)
			vals[i] = math.Round(float64(ns) / 1e3)
		}
		slices.Sort(vals)
		q := m.quantiles()
		for i, p := range quantileProbs {
			h := p * float64(n-1)
			lo := int(math.Floor(h))
			hi := min(lo+1, n-1)
			want := vals[lo] + (h-float64(lo))*(vals[hi]-vals[lo])
			assert.InDelta(t, want, q[i], 1e-6, "n=%d p=%v", n, p)
		}
	}
}

// add adds one value, for tests that feed samples directly.
func (m *samples) add(ns int64) { m.addAll([]int64{ns}) }
