package stats

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	assert.Equal(t, string(want), string(got), "golden %s differs; rerun with -update and review the diff", path)
}

func normalSample(r *rand.Rand, n int, mean, sd float64) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = mean + sd*r.NormFloat64()
	}
	return xs
}

// seedLikeRuns mimics the seed report: 50 questions per arm, latency
// 415.85 ± 6.49 ms vs 414.34 ± 6.45 ms, TTFT and per-request throughput.
func seedLikeRuns() []MetricSamples {
	r := rand.New(rand.NewPCG(2025, 11))
	return []MetricSamples{
		{Metric: "latency_ms", Unit: time.Millisecond, A: normalSample(r, 50, 415.85, 6.49), B: normalSample(r, 50, 414.34, 6.45)},
		{Metric: "ttft_ms", Unit: time.Millisecond, A: normalSample(r, 50, 104.99, 4), B: normalSample(r, 50, 104.22, 4)},
		{Metric: "throughput_tok_s", A: normalSample(r, 50, 120.27, 1.5), B: normalSample(r, 50, 120.72, 1.5)},
	}
}

func pairedRuns() []MetricSamples {
	r := rand.New(rand.NewPCG(7, 7))
	const n = 400
	a, b := make([]float64, n), make([]float64, n)
	for i := range a {
		base := 400 + 10*r.ExpFloat64()
		a[i] = base + 0.5*r.NormFloat64()
		b[i] = base - 1 + 0.5*r.NormFloat64()
	}
	return []MetricSamples{{Metric: "latency_ms", Unit: time.Millisecond, A: a, B: b, Paired: true}}
}

func TestCompareGolden(t *testing.T) {
	for _, tc := range []struct {
		name    string
		metrics []MetricSamples
		detect  string
	}{
		{"unpaired_seedlike", seedLikeRuns(), "1ms"},
		{"unpaired_relative", seedLikeRuns()[2:], "0.5%"},
		{"paired", pairedRuns(), "250us"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseEffect(tc.detect)
			require.NoError(t, err)
			c, err := Compare("v1.4.1", "phase1", tc.metrics, CompareOptions{Detect: e, Bootstrap: BootstrapOptions{Seed: 1}})
			require.NoError(t, err)
			var txt, js bytes.Buffer
			require.NoError(t, c.WriteTable(&txt))
			require.NoError(t, c.WriteJSON(&js))
			golden(t, tc.name+".txt", txt.Bytes())
			golden(t, tc.name+".json", js.Bytes())
			// The JSON form carries the keys the compare command promises.
			var parsed struct {
				Metrics  []map[string]any `json:"metrics"`
				Warnings []string         `json:"warnings"`
			}
			require.NoError(t, json.Unmarshal(js.Bytes(), &parsed))
			require.NotEmpty(t, parsed.Metrics)
			for _, m := range parsed.Metrics {
				for _, k := range []string{"metric", "a", "b", "delta", "delta_pct", "ci95", "p_value", "significant", "method"} {
					assert.Contains(t, m, k)
				}
				// A duration effect does not apply to tok/s; a warning says so.
				if m["metric"] != "throughput_tok_s" || tc.detect == "0.5%" {
					assert.Contains(t, m, "n_needed")
				}
			}
			// Determinism: same inputs and seed give identical bytes.
			c2, err := Compare("v1.4.1", "phase1", tc.metrics, CompareOptions{Detect: e, Bootstrap: BootstrapOptions{Seed: 1}})
			require.NoError(t, err)
			var txt2 bytes.Buffer
			require.NoError(t, c2.WriteTable(&txt2))
			assert.Equal(t, txt.String(), txt2.String())
		})
	}
}

func TestComparePairedFindsEffect(t *testing.T) {
	c, err := Compare("a", "b", pairedRuns(), CompareOptions{Bootstrap: BootstrapOptions{Seed: 1}})
	require.NoError(t, err)
	mean := c.Rows[0]
	assert.Equal(t, "mean", mean.Stat)
	assert.Equal(t, MethodPairedT, mean.Method)
	assert.True(t, mean.Significant)
	assert.InDelta(t, -1, mean.Delta, 0.1)
	assert.True(t, mean.CI95[0] < -1 && -1 < mean.CI95[1])
	for _, r := range c.Rows[1:] {
		assert.Equal(t, MethodPairedBootstrap, r.Method)
		// The true quantile shift is ≈ −1 (noise blurs it slightly).
		assert.True(t, r.CI95[0] < -1 && -1 < r.CI95[1], "%s %v", r.Stat, r.CI95)
	}
	// The median is well estimated at n=400; the exponential tail makes
	// p95/p99 differences too noisy to call (simulated SD 0.45 and 0.60).
	assert.True(t, c.Rows[1].Significant, "p50")
}

func TestCompareErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    MetricSamples
		opt  CompareOptions
		want string
	}{
		{"empty", MetricSamples{Metric: "x", A: nil, B: []float64{1}}, CompareOptions{}, "metric x: run A has no values"},
		{"nan", MetricSamples{Metric: "x", A: []float64{1, math.NaN()}, B: []float64{1}}, CompareOptions{}, "metric x: run A value 1 is NaN"},
		{"paired lengths", MetricSamples{Metric: "x", A: []float64{1, 2}, B: []float64{1}, Paired: true}, CompareOptions{}, "paired samples have 2 and 1"},
		{"level", MetricSamples{Metric: "x", A: []float64{1}, B: []float64{1}}, CompareOptions{Level: 1.5}, "confidence level 1.5"},
		{"quantile", MetricSamples{Metric: "x", A: []float64{1}, B: []float64{1}}, CompareOptions{Quantiles: []float64{1}}, "quantile 1"},
	} {
		_, err := Compare("a", "b", []MetricSamples{tc.m}, tc.opt)
		assert.ErrorContains(t, err, tc.want, tc.name)
	}
}

func TestCompareTinySamplesWarn(t *testing.T) {
	c, err := Compare("a", "b", []MetricSamples{{Metric: "lat", A: []float64{1, 2, 3}, B: []float64{2, 3, 4}}}, CompareOptions{})
	require.NoError(t, err)
	assert.Contains(t, c.Warnings, "lat: need ≥ 6 samples for a 95 % CI of p50; have 3")
	assert.Contains(t, c.Warnings, "lat: p99 of 3 samples is the maximum; need ≥ 368 samples for a 95 % CI")
	for _, r := range c.Rows[1:] {
		assert.True(t, r.Undetermined, "%s of 3 samples cannot be judged", r.Stat)
		assert.False(t, r.Significant)
	}
	var buf bytes.Buffer
	require.NoError(t, c.WriteJSON(&buf), "infinite bounds must still encode")
	assert.Contains(t, buf.String(), "null")
}

func TestPairByID(t *testing.T) {
	pa, pb, un, err := PairByID([]int64{1, 2, 3}, []float64{10, 20, 30}, []int64{3, 1, 4}, []float64{31, 11, 41})
	require.NoError(t, err)
	assert.Equal(t, []float64{10, 30}, pa)
	assert.Equal(t, []float64{11, 31}, pb)
	assert.Equal(t, 2, un)
	_, _, _, err = PairByID([]int64{1, 1}, []float64{1, 2}, []int64{1}, []float64{1})
	assert.ErrorContains(t, err, "duplicate id 1 in A (row 1)")
	_, _, _, err = PairByID([]int64{1}, []float64{1, 2}, []int64{1}, []float64{1})
	assert.ErrorContains(t, err, "1 ids for 2 values in A")
}

func TestWelchFromSummaryMatchesSamples(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	a, b := normalSample(r, 30, 10, 2), normalSample(r, 45, 11, 3)
	iv1, p1, _ := WelchDiff(a, b, 0.95)
	iv2, p2, _ := WelchFromSummary(Mean(a), StdDev(a), 30, Mean(b), StdDev(b), 45, 0.95)
	assert.Equal(t, iv1, iv2)
	assert.Equal(t, p1, p2)
	// Cross-check against R: t.test(x, y) with the same summaries gives
	// df = 72.99 for these SDs; here just check the t identity p ↔ CI:
	// the 1−p interval touches zero.
	iv3, _, _ := WelchDiff(a, b, 1-p1)
	assert.InDelta(t, 0, math.Min(math.Abs(iv3.Lo), math.Abs(iv3.Hi)), 1e-6)
}

func TestRunSeeds(t *testing.T) {
	a := RunSeeds(1, 5)
	assert.Equal(t, a, RunSeeds(1, 5))
	assert.Equal(t, a[:3], RunSeeds(1, 3), "a prefix of runs keeps its seeds")
	assert.NotEqual(t, a, RunSeeds(2, 5))
	seen := map[uint64]bool{}
	for _, s := range a {
		assert.False(t, seen[s])
		seen[s] = true
	}
}

func TestSummarizeRuns(t *testing.T) {
	s := SummarizeRuns([]float64{10, 12, 11, 13, 9}, 0.95)
	assert.Equal(t, 5, s.N)
	assert.InDelta(t, 11, s.Mean, 1e-12)
	assert.InDelta(t, math.Sqrt(2.5), s.SD, 1e-12)
	assert.Equal(t, 9.0, s.Min)
	assert.Equal(t, 13.0, s.Max)
	// t(0.975, 4) = 2.776
	assert.InDelta(t, 11-2.7764451*math.Sqrt(2.5)/math.Sqrt(5), s.CI.Lo, 1e-6)
	assert.Empty(t, s.Warnings)
	s = SummarizeRuns([]float64{10, 12}, 0.95)
	assert.Contains(t, s.Warnings, "fewer than 5 runs: the spread itself is poorly known")
}
