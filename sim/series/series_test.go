package series

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/plots"
	"github.com/batchkit/batchkit/sim"
)

// Two requests batched together, one rejected: times in ms.
func results() []sim.Result {
	ms := int64(1e6)
	return []sim.Result{
		{RequestID: 1, ArrivalNS: 0, EnqueueNS: 0, DispatchNS: 2 * ms, EngineStartNS: 2 * ms, FirstTokenNS: 5 * ms, FinishNS: 9 * ms,
			OutputTokens: 3, BatchID: 7, BatchSize: 2, WindowWaitNS: 2 * ms, Status: sim.StatusOK},
		{RequestID: 2, ArrivalNS: 1 * ms, EnqueueNS: 1 * ms, DispatchNS: 2 * ms, EngineStartNS: 2 * ms, FirstTokenNS: 5 * ms, FinishNS: 7 * ms,
			OutputTokens: 1, BatchID: 7, BatchSize: 2, WindowWaitNS: 1 * ms, Status: sim.StatusOK},
		{RequestID: 3, ArrivalNS: 1 * ms, EnqueueNS: 1 * ms, DispatchNS: -1, EngineStartNS: -1, FirstTokenNS: -1, FinishNS: -1,
			BatchID: -1, Status: sim.StatusRejected},
	}
}

func TestMetric(t *testing.T) {
	for metric, want := range map[string][]float64{
		"window_wait": {2, 1}, "ttft": {5, 4}, "latency": {9, 6}, "tpot": {2}, "engine_queue": {0, 0},
	} {
		got, err := Metric(results(), metric)
		require.NoError(t, err)
		assert.Equal(t, want, got, metric)
	}
	_, err := Metric(results(), "speed")
	assert.ErrorContains(t, err, `unknown metric "speed"`)
}

func TestBatchSizesAndTimeline(t *testing.T) {
	assert.Equal(t, []float64{2}, BatchSizes(results()))
	ts := Timeline("g", plots.Measured, results())
	// Queue: 1 at 0 ms, 2 at 1 ms, 0 at 2 ms (both dispatched); running: 2
	// from 2 ms, 1 after 7 ms, 0 after 9 ms. The rejected request never
	// queued for the engine.
	assert.Equal(t, []float64{0, 0.001, 0.002}, ts.Queue.T)
	assert.Equal(t, []float64{1, 2, 0}, ts.Queue.V)
	assert.Equal(t, []float64{0.002, 0.007, 0.009}, ts.Running.T)
	assert.Equal(t, []float64{2, 1, 0}, ts.Running.V)
	assert.Equal(t, []float64{0.002}, ts.Batches.T)
	assert.Equal(t, []float64{2}, ts.Batches.V)
}

func TestSweepGroupsBySpecWithoutSweptKey(t *testing.T) {
	rows := []sim.TableRow{
		{Policy: "fixed:window=1ms,max_batch=8,anchor=oldest", Param: "window", Value: 1, WindowWaitMean: 0.5, WindowWaitP95: 0.9, OverheadPct: 1},
		{Policy: "fixed:window=2ms,max_batch=8,anchor=oldest", Param: "window", Value: 2, WindowWaitMean: 1, WindowWaitP95: 1.9, OverheadPct: 2},
	}
	s, param, err := Sweep(rows, "window_wait", plots.Predicted, "")
	require.NoError(t, err)
	assert.Equal(t, "window", param)
	require.Len(t, s, 1)
	// Named without the swept key and the defaults (max_batch=8).
	assert.Equal(t, "fixed:anchor=oldest", s[0].Group)
	assert.Equal(t, []float64{1, 2}, s[0].X)
	assert.Equal(t, []float64{0.5, 1}, s[0].Mean.Y)
	assert.Equal(t, []float64{1, 2}, s[0].Overhead.Y)
	_, _, err = Sweep(rows, "tpot", plots.Predicted, "")
	assert.Error(t, err)
}

func TestSweepErrorBarsFromTable(t *testing.T) {
	nan := math.NaN()
	rows := []sim.TableRow{
		{Policy: "fixed:window=1ms", Param: "window", Value: 1, Runs: 1, LatencyMean: 10, LatencyMeanLo: 9, LatencyMeanHi: 11,
			LatencyP95: 20, LatencyP95Lo: 18, LatencyP95Hi: 23, OverheadPct: 1, OverheadPctLo: nan, OverheadPctHi: nan},
		{Policy: "fixed:window=2ms", Param: "window", Value: 2, Runs: 1, LatencyMean: 12, LatencyMeanLo: 11.5, LatencyMeanHi: 12.5,
			LatencyP95: 25, LatencyP95Lo: nan, LatencyP95Hi: nan, OverheadPct: 2, OverheadPctLo: 1, OverheadPctHi: 3},
	}
	s, _, err := Sweep(rows, "latency", plots.Predicted, "")
	require.NoError(t, err)
	require.Len(t, s, 1)
	assert.Equal(t, plots.Curve{Y: []float64{10, 12}, Lo: []float64{9, 11.5}, Hi: []float64{11, 12.5}}, s[0].Mean)
	// A point without bounds (too few samples for p95) drops the curve's bars.
	assert.Equal(t, plots.Curve{Y: []float64{20, 25}}, s[0].P95)
	assert.Equal(t, plots.Curve{Y: []float64{1, 2}}, s[0].Overhead)
	bars, err := plots.ErrorBars(s[0].Mean.Y, s[0].Mean.Lo, s[0].Mean.Hi)
	require.NoError(t, err)
	assert.Equal(t, []plots.ErrorBar{{Low: 1, High: 1}, {Low: 0.5, High: 0.5}}, bars)
	// A table from before the bounds (runs 0) draws no bars.
	for i := range rows {
		rows[i].Runs = 0
	}
	s, _, err = Sweep(rows, "latency", plots.Predicted, "")
	require.NoError(t, err)
	assert.Nil(t, s[0].Mean.Lo)
}
