package stats

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQuantile(t *testing.T) {
	xs := []float64{1, 2, 3, 4, 5}
	for _, tc := range []struct {
		q, want float64
	}{{0, 1}, {0.5, 3}, {1, 5}, {0.25, 2}, {0.9, 4.6}, {0.99, 4.96}} {
		assert.InDelta(t, tc.want, Quantile(xs, tc.q), 1e-12, "q=%v", tc.q)
	}
	assert.True(t, math.IsNaN(Quantile(nil, 0.5)))
	assert.Equal(t, 7.0, Quantile([]float64{7}, 0.99))
}

func TestMinSamplesQuantileCI(t *testing.T) {
	assert.Equal(t, 6, MinSamplesQuantileCI(0.5, 0.95))
	assert.Equal(t, 368, MinSamplesQuantileCI(0.99, 0.95))
	assert.Equal(t, 72, MinSamplesQuantileCI(0.95, 0.95))
	// The definition: at n the interval is finite, at n−1 it is not.
	for _, q := range []float64{0.5, 0.95, 0.99} {
		n := MinSamplesQuantileCI(q, 0.95)
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = float64(i)
		}
		iv, _ := QuantileCISorted(xs, q, 0.95)
		assert.True(t, iv.Finite(), "q=%v n=%d %+v", q, n, iv)
		iv, _ = QuantileCISorted(xs[:n-1], q, 0.95)
		assert.False(t, iv.Finite(), "q=%v n=%d %+v", q, n-1, iv)
	}
}

func TestQuantileWarnings(t *testing.T) {
	xs := make([]float64, 50)
	for i := range xs {
		xs[i] = float64(i)
	}
	_, w := QuantileCI(xs, 0.99, 0.95)
	require.Len(t, w, 1)
	assert.Equal(t, "p99 of 50 samples is the maximum; need ≥ 368 samples for a 95 % CI", w[0])
	_, w = QuantileCI(xs[:5], 0.5, 0.95)
	assert.Equal(t, []string{"need ≥ 6 samples for a 95 % CI of p50; have 5"}, w)
	_, w = QuantileCI(xs, 0.5, 0.95)
	assert.Empty(t, w)
	_, w = MeanCI(xs[:1], 0.95)
	assert.Equal(t, []string{"need ≥ 2 samples for a 95 % CI of the mean; have 1"}, w)
}

// binomTol is four binomial standard deviations of a coverage estimated from
// trials draws: a correct 95 % interval fails this check about once in
// 15 000 runs, a wrong one (say 90 %) fails it reliably.
func binomTol(p float64, trials int) float64 {
	return 4 * math.Sqrt(p*(1-p)/float64(trials))
}

func TestMeanCICoverage(t *testing.T) {
	const trials = 2000
	for _, tc := range []struct {
		name string
		n    int
		draw func(*rand.Rand) float64
		mean float64
	}{
		{"normal n=10", 10, func(r *rand.Rand) float64 { return 400 + 6.5*r.NormFloat64() }, 400},
		{"normal n=50", 50, func(r *rand.Rand) float64 { return 400 + 6.5*r.NormFloat64() }, 400},
		// Skewed like latencies: the t interval is approximate here, so
		// use enough samples for the CLT to hold.
		{"exponential n=200", 200, func(r *rand.Rand) float64 { return 10 * r.ExpFloat64() }, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			xs := make([]float64, tc.n)
			covered := 0
			for range trials {
				for i := range xs {
					xs[i] = tc.draw(r)
				}
				iv, _ := MeanCI(xs, 0.95)
				if iv.Contains(tc.mean) {
					covered++
				}
			}
			cov := float64(covered) / trials
			assert.InDelta(t, 0.95, cov, binomTol(0.95, trials), "coverage %v", cov)
		})
	}
}

func TestQuantileCICoverage(t *testing.T) {
	const trials = 2000
	for _, tc := range []struct {
		name string
		n    int
		q    float64
	}{
		{"p50 n=20", 20, 0.5},
		{"p50 n=101", 101, 0.5},
		{"p95 n=200", 200, 0.95},
		{"p99 n=500", 500, 0.99},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Exponential(1): true q-quantile is −ln(1−q).
			truth := -math.Log(1 - tc.q)
			r := rand.New(rand.NewPCG(3, 4))
			xs := make([]float64, tc.n)
			covered := 0
			var level float64
			for range trials {
				for i := range xs {
					xs[i] = r.ExpFloat64()
				}
				iv, _ := QuantileCI(xs, tc.q, 0.95)
				require.True(t, iv.Finite())
				level = iv.Level
				if iv.Contains(truth) {
					covered++
				}
			}
			cov := float64(covered) / trials
			// The order-statistic interval is exact in its achieved level
			// (≥ 95 %), for any continuous distribution.
			require.GreaterOrEqual(t, level, 0.95)
			assert.InDelta(t, level, cov, binomTol(level, trials), "coverage %v, achieved level %v", cov, level)
		})
	}
}

// The ranks are finite exactly from MinSamplesQuantileCI on, then cover at
// least the requested level, and never bound a quantile from the wrong
// side of its own rank.
func TestQuantileCIRanks(t *testing.T) {
	for _, q := range []float64{0.5, 0.95, 0.99} {
		need := MinSamplesQuantileCI(q, 0.95)
		for _, n := range []int{1, need - 1, need, 1000, 12345, 10_000_000} {
			if n < 1 {
				continue
			}
			lo, hi, achieved := QuantileCIRanks(n, q, 0.95)
			finite := lo >= 0 && hi < n
			assert.Equal(t, n >= need, finite, "q=%v n=%d lo=%d hi=%d", q, n, lo, hi)
			if finite {
				assert.GreaterOrEqual(t, achieved, 0.95, "q=%v n=%d", q, n)
				k := int(q * float64(n-1))
				assert.LessOrEqual(t, lo, k, "q=%v n=%d", q, n)
				assert.GreaterOrEqual(t, hi, k, "q=%v n=%d", q, n)
			}
		}
	}
	lo, hi, _ := QuantileCIRanks(0, 0.5, 0.95)
	assert.Equal(t, [2]int{-1, 0}, [2]int{lo, hi})
}
