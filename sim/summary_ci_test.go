package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/batchkit/batchkit/sim/stats"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// latencyResult is a completed request whose latency is ns.
func latencyResult(ns int64) Result {
	return Result{FirstTokenNS: ns, FinishNS: ns, OutputTokens: 1, BatchSize: 1, Status: StatusOK}
}

func collectLatencies(t *testing.T, ns []int64) Summary {
	t.Helper()
	c, err := NewCollector(Trim{}, 0)
	require.NoError(t, err)
	for i, v := range ns {
		r := latencyResult(v)
		c.Add(&r, int64(i))
	}
	return c.Summary("p", "t", "prof", 1)
}

// The summary's intervals are those of package stats on the values the
// summary ranks (rounded to 1 µs), in the sparse and in the dense form.
func TestSummaryCIMatchesStats(t *testing.T) {
	for _, n := range []int{400, denseAfter + 5000} {
		r := rand.New(rand.NewPCG(uint64(n), 3))
		ns := make([]int64, n)
		us := make([]float64, n)
		for i := range ns {
			ns[i] = int64(r.ExpFloat64() * 20e6)
			us[i] = float64((ns[i] + 500) / 1000)
		}
		s := collectLatencies(t, ns)
		ci := s.LatencyMS.CI95
		require.NotNil(t, ci, "n=%d", n)
		assert.Equal(t, CIMethod, s.CIMethod)
		slices.Sort(us)
		for i, q := range []float64{0.5, 0.95, 0.99} {
			want, _ := stats.QuantileCISorted(us, q, CILevel)
			got := []*[2]float64{ci.P50, ci.P95, ci.P99}[i]
			require.NotNil(t, got, "n=%d q=%v", n, q)
			assert.Equal(t, [2]float64{want.Lo / 1e3, want.Hi / 1e3}, *got, "n=%d q=%v", n, q)
		}
		want, _ := stats.MeanCI(us, CILevel)
		assert.InDelta(t, want.Lo/1e3, ci.Mean[0], 0.0011, "n=%d", n)
		assert.InDelta(t, want.Hi/1e3, ci.Mean[1], 0.0011, "n=%d", n)
		assert.Empty(t, ci.Warnings)
	}
}

// Over many seeded samples from a distribution with known mean and
// quantiles, each 95 % interval covers the true value about 95 % of the
// time (the order-statistic intervals at least 95 %).
func TestSummaryCICoverage(t *testing.T) {
	const trials, n, scale = 1000, 500, 10e6 // exponential, mean 10 ms
	truth := [4]float64{scale, -math.Log(0.5) * scale, -math.Log(0.05) * scale, -math.Log(0.01) * scale}
	var hits [4]int
	r := rand.New(rand.NewPCG(7, 11))
	ns := make([]int64, n)
	for range trials {
		for i := range ns {
			ns[i] = int64(r.ExpFloat64() * scale)
		}
		ci := collectLatencies(t, ns).LatencyMS.CI95
		for i, b := range []*[2]float64{ci.Mean, ci.P50, ci.P95, ci.P99} {
			require.NotNil(t, b)
			if b[0]*1e6 <= truth[i] && truth[i] <= b[1]*1e6 {
				hits[i]++
			}
		}
	}
	tol := 4 * math.Sqrt(0.95*0.05/trials)
	for i, name := range []string{"mean", "p50", "p95", "p99"} {
		cov := float64(hits[i]) / trials
		assert.GreaterOrEqual(t, cov, 0.95-tol, "%s coverage %.3f", name, cov)
		if i == 0 {
			assert.LessOrEqual(t, cov, 0.95+tol, "%s coverage %.3f", name, cov)
		} else {
			// Exact intervals are conservative, but not wildly so at n=500.
			assert.LessOrEqual(t, cov, 0.985, "%s coverage %.3f", name, cov)
		}
	}
}

// Too few samples give no interval but a warning, never a made-up one.
func TestSummaryCISmallSample(t *testing.T) {
	ns := make([]int64, 50)
	for i := range ns {
		ns[i] = int64(i+1) * 1e6
	}
	s := collectLatencies(t, ns)
	ci := s.LatencyMS.CI95
	require.NotNil(t, ci)
	assert.NotNil(t, ci.Mean)
	assert.NotNil(t, ci.P50)
	assert.Nil(t, ci.P95)
	assert.Nil(t, ci.P99)
	assert.Equal(t, []string{"need ≥ 72 samples for a 95 % CI of p95; have 50",
		"p99 of 50 samples is the maximum; need ≥ 368 samples for a 95 % CI"}, ci.Warnings)
	assert.Contains(t, s.Warnings, "window_wait_ms, engine_queue_ms, ttft_ms, latency_ms: p99 of 50 samples is the maximum; need ≥ 368 samples for a 95 % CI")
	assert.Nil(t, s.BatchSize.CI95)
	assert.Nil(t, s.TPOTMS.CI95, "no request has two tokens")

	one := collectLatencies(t, ns[:1]).LatencyMS.CI95
	assert.Nil(t, one.Mean)
	assert.Contains(t, one.Warnings, "need ≥ 2 samples for a 95 % CI of the mean; have 1")
}
