package series

import (
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/plots"
	"github.com/batchkit/batchkit/policies"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/trace"
)

// writeResults simulates n Poisson requests on the continuous profile with
// a batching window and writes their results file.
func writeResults(t testing.TB, dir string, n int) string {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(n), 1))
	reqs := make([]trace.Request, n)
	at := 0.0
	for i := range reqs {
		at += r.ExpFloat64() / 30 * 1e9
		reqs[i] = trace.Request{RequestID: int64(i), ArrivalNS: int64(at), InputTokens: 100 + r.Int32N(200), OutputTokens: 1 + r.Int32N(60)}
	}
	prof, ok := sim.BuiltinProfile("gpu-continuous")
	require.True(t, ok)
	pol, err := policies.Parse("fixed:window=5ms")
	require.NoError(t, err)
	path := filepath.Join(dir, "r.parquet")
	w, err := sim.CreateResults(path, map[string]string{sim.MetaPolicy: pol.Spec(), sim.MetaSource: "simrun"}, true)
	require.NoError(t, err)
	_, _, err = sim.Run(sim.Config{Profile: prof, Policy: pol, Seed: 1, Results: w.Write}, &sim.SliceSource{Reqs: reqs})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return path
}

// Reading column by column gives exactly the series the row-based
// functions give.
func TestReadMatchesRows(t *testing.T) {
	path := writeResults(t, t.TempDir(), 5000)
	res, _, err := sim.ReadResults(path)
	require.NoError(t, err)
	for _, metric := range Metrics {
		d, meta, err := Read(path, Need{Metric: metric, Batches: true, Timeline: true})
		require.NoError(t, err)
		assert.Equal(t, "simrun", meta[sim.MetaSource])
		assert.Equal(t, len(res), d.N)
		want, err := Metric(res, metric)
		require.NoError(t, err)
		assert.Equal(t, want, d.Values, metric)
		assert.Equal(t, BatchSizes(res), d.Batches)
		tl := Timeline("", plots.Predicted, res)
		assert.Equal(t, tl.Queue, d.Timeline.Queue)
		assert.Equal(t, tl.Running, d.Timeline.Running)
		assert.Equal(t, tl.Batches, d.Timeline.Batches)
		assert.Greater(t, slices.Max(tl.Running.V), 1.0, "the run batches")
	}
	_, _, err = Read(path, Need{Metric: "speed"})
	assert.ErrorContains(t, err, `unknown metric "speed"`)
}

// A timeline of more instants than maxTimelinePoints is thinned but keeps
// its first and last instants and its peaks.
func TestTimelineThinningKeepsPeaks(t *testing.T) {
	const n = 3 * maxTimelinePoints
	var res []sim.Result
	for i := range n {
		// One request per µs, each queued 1 µs; a burst of 50 at one instant.
		at := int64(i) * 1000
		res = append(res, sim.Result{EnqueueNS: at, DispatchNS: at + 1000, EngineStartNS: at + 1000, FinishNS: at + 5000, BatchID: int64(i), BatchSize: 1, Status: sim.StatusOK})
	}
	for i := range 50 {
		res = append(res, sim.Result{EnqueueNS: 777_000, DispatchNS: 900_000, EngineStartNS: 900_000, FinishNS: 901_000, BatchID: int64(n + i), BatchSize: 1, Status: sim.StatusOK})
	}
	c := columnsOf(res, []string{"enqueue_ns", "dispatch_ns"})
	q := stepTrace(c.c["enqueue_ns"], c.c["dispatch_ns"])
	assert.LessOrEqual(t, len(q.T), maxTimelinePoints)
	assert.Equal(t, len(q.T), len(q.V))
	assert.True(t, slices.IsSorted(q.T))
	assert.Equal(t, 0.0, q.T[0])
	assert.Equal(t, float64((n-1)*1000+1000)/1e9, q.T[len(q.T)-1])
	assert.Equal(t, 0.0, q.V[len(q.V)-1])
	assert.Equal(t, 51.0, slices.Max(q.V), "the burst's queue depth survives")
	// Below the bound nothing is thinned: one point per instant.
	small := res[n-1000:]
	c = columnsOf(small, []string{"enqueue_ns", "dispatch_ns"})
	assert.Len(t, stepTrace(c.c["enqueue_ns"], c.c["dispatch_ns"]).T, 1001+2)
}

// Memory per request of what simplot reads for a panel, against whole
// rows. TotalAlloc counts everything allocated, freed or not, so it bounds
// the peak from above.
func TestReadMemoryPerRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 200k-request results file")
	}
	if raceEnabled {
		t.Skip("allocation figures are meaningless under the race detector")
	}
	const n = 200_000
	path := writeResults(t, t.TempDir(), n)
	alloc := func(f func()) float64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc-before.TotalAlloc) / n
	}
	var d *Data
	cdf := alloc(func() {
		var err error
		d, _, err = Read(path, Need{Metric: "latency"})
		require.NoError(t, err)
	})
	panel := alloc(func() {
		var err error
		d, _, err = Read(path, Need{Metric: "latency", Batches: true, Timeline: true})
		require.NoError(t, err)
	})
	rows := alloc(func() {
		_, _, err := sim.ReadResults(path)
		require.NoError(t, err)
	})
	t.Logf("allocated per request: cdf %.0f B, panel %.0f B, whole rows %.0f B", cdf, panel, rows)
	require.Equal(t, n, d.N)
	// Two int64 columns, the status byte and the values: ~25 B. The panel
	// adds three batch and four timeline columns (8 B each).
	assert.Less(t, cdf, 50.0)
	assert.Less(t, panel, 150.0)
	assert.Less(t, panel, rows)
}

func BenchmarkReadPanel(b *testing.B) {
	const n = 200_000
	path := writeResults(b, b.TempDir(), n)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := Read(path, Need{Metric: "latency", Batches: true, Timeline: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}
