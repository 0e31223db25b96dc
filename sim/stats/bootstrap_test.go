package stats

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The weighted walk must give exactly the quantiles of the expanded
// resample; checked against sorting the expansion.
func TestWeightedQuantilesMatchExpandedResample(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	qs := []float64{0, 0.1, 0.5, 0.95, 0.99, 1}
	for _, n := range []int{1, 2, 3, 10, 97} {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = math.Round(r.NormFloat64() * 3) // ties on purpose
		}
		perm := sortPerm(xs)
		rs := NewResampler(n, uint64(n))
		w := make([]int32, n)
		got := make([]float64, len(qs))
		for range 20 {
			rs.counts(w)
			var exp []float64
			for i, c := range w {
				for range c {
					exp = append(exp, xs[i])
				}
			}
			slices.Sort(exp)
			weightedQuantiles(xs, perm, w, qs, got)
			for i, q := range qs {
				assert.InDelta(t, Quantile(exp, q), got[i], 1e-12, "n=%d q=%v", n, q)
			}
			assert.InDelta(t, Mean(exp), weightedMean(xs, w), 1e-9)
		}
	}
}

func TestResamplerDeterministic(t *testing.T) {
	a := NewResampler(100, 42).Next(nil)
	b := NewResampler(100, 42).Next(nil)
	c := NewResampler(100, 43).Next(nil)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
	for _, i := range a {
		require.True(t, i >= 0 && i < 100)
	}
}

func TestBootstrapDiffDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	a, b := make([]float64, 500), make([]float64, 500)
	for i := range a {
		a[i], b[i] = r.ExpFloat64(), r.ExpFloat64()
	}
	qs := []float64{0.5, 0.99}
	x := BootstrapDiff(a, b, qs, false, 0.95, BootstrapOptions{Resamples: 300, Seed: 9})
	y := BootstrapDiff(a, b, qs, false, 0.95, BootstrapOptions{Resamples: 300, Seed: 9})
	assert.Equal(t, x, y)
}

// Coverage of the bootstrap interval for a difference of quantiles between
// two independent exponential samples whose true difference is known.
// Percentile bootstrap is approximate, so the tolerance is binomial around
// 95 % plus a small allowance for its known slight under-coverage.
func TestBootstrapDiffCoverage(t *testing.T) {
	const trials, n = 200, 200
	for _, tc := range []struct {
		name   string
		paired bool
	}{{"unpaired", false}, {"paired", true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(10, 11))
			a, b := make([]float64, n), make([]float64, n)
			// B = 1.2·A' with A' independent (unpaired) or correlated
			// noise around A (paired): true p90 difference 0.2·ln 10,
			// true mean difference 0.2.
			const q = 0.9
			wantQ, wantMean := 0.2*math.Log(10), 0.2
			covQ, covM := 0, 0
			for s := range trials {
				for i := range a {
					a[i] = r.ExpFloat64()
					if tc.paired {
						// Comonotone pairs: same request, scaled.
						b[i] = 1.2 * a[i]
						if r.IntN(2) == 0 {
							b[i] = 1.2 * r.ExpFloat64()
						}
					} else {
						b[i] = 1.2 * r.ExpFloat64()
					}
				}
				d := BootstrapDiff(a, b, []float64{q}, tc.paired, 0.95, BootstrapOptions{Resamples: 250, Seed: uint64(s)})
				if d.Quantiles[0].Contains(wantQ) {
					covQ++
				}
				if d.Mean.Contains(wantMean) {
					covM++
				}
			}
			t.Logf("coverage: p90 diff %.3f, mean diff %.3f", float64(covQ)/trials, float64(covM)/trials)
			tol := binomTol(0.95, trials) + 0.02
			assert.InDelta(t, 0.95, float64(covQ)/trials, tol, "p90 diff coverage")
			assert.InDelta(t, 0.95, float64(covM)/trials, tol, "mean diff coverage")
		})
	}
}

func TestBootstrapCIThroughput(t *testing.T) {
	// Throughput = total tokens / total time: a ratio, no closed form.
	r := rand.New(rand.NewPCG(12, 13))
	tokens, secs := make([]float64, 300), make([]float64, 300)
	for i := range tokens {
		tokens[i] = 100 + float64(r.IntN(50))
		secs[i] = 0.8 + 0.4*r.Float64()
	}
	stat := func(idx []int) float64 {
		var tk, s float64
		for _, i := range idx {
			tk += tokens[i]
			s += secs[i]
		}
		return tk / s
	}
	iv, w := BootstrapCI(len(tokens), stat, 0.95, BootstrapOptions{Seed: 1})
	assert.Empty(t, w)
	assert.Equal(t, MethodBootstrap, iv.Method)
	assert.True(t, iv.Lo < iv.Est && iv.Est < iv.Hi, "%+v", iv)
	// 124.5 tokens / 1 s on average: the truth lies in a sane interval.
	assert.True(t, iv.Lo > 115 && iv.Hi < 135, "%+v", iv)
}

func BenchmarkBootstrapDiff100k(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x, y := make([]float64, 100_000), make([]float64, 100_000)
	for i := range x {
		x[i] = 400 + 6*r.NormFloat64()
		y[i] = x[i] + r.NormFloat64()
	}
	qs := []float64{0.5, 0.95, 0.99}
	for _, paired := range []bool{false, true} {
		name := "unpaired"
		if paired {
			name = "paired"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				BootstrapDiff(x, y, qs, paired, 0.95, BootstrapOptions{Resamples: 1000, Seed: 1})
			}
		})
	}
}
