package stats

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSummarize(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 9, 7, 8, 6, 10}
	s := Summarize(xs, []float64{0.5, 0.99}, 0.95)
	require.Len(t, s.Quantiles, 2)
	assert.Equal(t, 10, s.N)
	assert.InDelta(t, 5.5, s.Mean.Est, 1e-12)
	assert.Equal(t, MethodT, s.Mean.Method)
	assert.InDelta(t, 5.5, s.Quantiles[0].Est, 1e-12)
	assert.Equal(t, MethodOrderStat, s.Quantiles[0].Method)
	// n=10 median: order statistics 2 and 9 give 97.9 % ≥ 95 %.
	assert.Equal(t, 2.0, s.Quantiles[0].Lo)
	assert.Equal(t, 9.0, s.Quantiles[0].Hi)
	assert.InDelta(t, 0.9785, s.Quantiles[0].Level, 1e-4)
	assert.Equal(t, []string{"p99 of 10 samples is the maximum; need ≥ 368 samples for a 95 % CI"}, s.Warnings)
	assert.Equal(t, []float64{5, 1, 4, 2, 3, 9, 7, 8, 6, 10}, xs, "input untouched")
}

func BenchmarkSummarize100k(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	xs := make([]float64, 100_000)
	for i := range xs {
		xs[i] = 400 + 10*r.ExpFloat64()
	}
	qs := []float64{0.5, 0.95, 0.99}
	b.ReportAllocs()
	for b.Loop() {
		Summarize(xs, qs, 0.95)
	}
}

func BenchmarkCompare100k(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	x, y := make([]float64, 100_000), make([]float64, 100_000)
	for i := range x {
		x[i] = 400 + 10*r.ExpFloat64()
		y[i] = x[i] - 1 + r.NormFloat64()
	}
	e, _ := ParseEffect("1ms")
	m := []MetricSamples{{Metric: "latency_ms", Unit: 1e6, A: x, B: y, Paired: true}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compare("a", "b", m, CompareOptions{Detect: e, Bootstrap: BootstrapOptions{Seed: 1}}); err != nil {
			b.Fatal(err)
		}
	}
}
