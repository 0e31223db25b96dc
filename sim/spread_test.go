package sim

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The bootstrap resamples exactly the requests the run's summary counts.
func TestKeptResultsMatchesCollector(t *testing.T) {
	reqs := poisson(2000, 500, 21, 10, func(r *rand.Rand) int32 { return 1 + r.Int32N(8) })
	const d = int64(300 * time.Millisecond)
	for _, trim := range []Trim{{}, {WarmupN: 100, CooldownN: 50}, {WarmupNS: d, CooldownNS: d}} {
		s, rs := run(t, Config{Profile: profile(Continuous, 4, 1), Policy: mustPolicy(t, "fixed:window=1ms"), Trim: trim, Total: int64(len(reqs))}, reqs)
		kept, trimmed, err := KeptResults(rs, trim, int64(len(reqs)))
		require.NoError(t, err)
		assert.Equal(t, s.Trimmed, trimmed, "%+v", trim)
		c, _ := NewCollector(Trim{}, 0)
		for i := range kept {
			c.Add(&kept[i], int64(i))
		}
		got := c.Summary(s.Policy, s.Trace, s.Profile, s.Seed)
		got.Trimmed = trimmed
		got.Warnings, s.Warnings = nil, nil
		assert.Equal(t, s, got, "%+v", trim)
	}
	_, _, err := KeptResults(nil, Trim{CooldownN: 1}, 0)
	assert.Error(t, err)
}

// Over many seeded samples with a known mean and median, the normal
// bootstrap interval of --runs on a fixed trace covers them ≈ 95 % of the
// time.
func TestBootstrapSpreadCoverage(t *testing.T) {
	const trials, n, resamples, scale = 200, 200, 50, 10e6
	truth := [2]float64{scale / 1e6, -math.Log(0.5) * scale / 1e6}
	var hits [2]int
	r := rand.New(rand.NewPCG(3, 9))
	res := make([]Result, n)
	for trial := range trials {
		for i := range res {
			res[i] = latencyResult(int64(r.ExpFloat64() * scale))
		}
		runs := []Summary{collectLatencies(t, resultsNS(res))}
		for k := range resamples {
			runs = append(runs, Resample(res, uint64(trial*resamples+k), "", "", ""))
		}
		sp, err := SpreadOf(runs, RunsBootstrap)
		require.NoError(t, err)
		for i, s := range []Spread{sp.LatencyMS.Mean, sp.LatencyMS.P50} {
			require.NotNil(t, s.CI95)
			if s.CI95[0] <= truth[i] && truth[i] <= s.CI95[1] {
				hits[i]++
			}
		}
	}
	tol := 4 * math.Sqrt(0.95*0.05/trials)
	for i, name := range []string{"mean", "p50"} {
		cov := float64(hits[i]) / trials
		assert.InDelta(t, 0.95, cov, tol, "%s coverage %.3f", name, cov)
	}
}

func resultsNS(res []Result) []int64 {
	ns := make([]int64, len(res))
	for i := range res {
		ns[i] = res[i].FinishNS - res[i].ArrivalNS
	}
	return ns
}

func TestSpreadOfSeeds(t *testing.T) {
	var runs []Summary
	for i, lat := range []float64{10, 12, 11, 13, 14} {
		ov := float64(i)
		runs = append(runs, Summary{Seed: uint64(i + 1), LatencyMS: Dist{Mean: lat, P99: 2 * lat}, ThroughputTokS: 100, OverheadPct: &ov})
	}
	sp, err := SpreadOf(runs, RunsSeeds)
	require.NoError(t, err)
	assert.Equal(t, 5, sp.N)
	assert.Equal(t, []uint64{1, 2, 3, 4, 5}, sp.Seeds)
	assert.Equal(t, 12.0, sp.LatencyMS.Mean.Mean)
	assert.InDelta(t, math.Sqrt(2.5), sp.LatencyMS.Mean.SD, 1e-4)
	// t(0.975, 4) = 2.776: 12 ± 2.776·√2.5/√5.
	half := 2.7764 * math.Sqrt(2.5) / math.Sqrt(5)
	require.NotNil(t, sp.LatencyMS.Mean.CI95)
	assert.InDelta(t, 12-half, sp.LatencyMS.Mean.CI95[0], 1e-3)
	assert.InDelta(t, 24+2*half, sp.LatencyMS.P99.CI95[1], 2e-3)
	assert.Equal(t, Spread{Mean: 100, SD: 0, CI95: &[2]float64{100, 100}}, sp.ThroughputTokS)
	require.NotNil(t, sp.OverheadPct)
	assert.Equal(t, 2.0, sp.OverheadPct.Mean)
	assert.Empty(t, sp.Warnings)

	_, err = SpreadOf(runs[:1], RunsSeeds)
	assert.Error(t, err)
	_, err = SpreadOf(runs, "magic")
	assert.Error(t, err)
	runs[2].OverheadPct = nil
	sp, _ = SpreadOf(runs[:3], RunsSeeds)
	assert.Nil(t, sp.OverheadPct)
	assert.Contains(t, sp.Warnings, "only 3 runs: the run-to-run spread itself is poorly known")
}
