package sim

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/batchkit/batchkit/sim/stats"
)

// How repeated runs were made (RunsSpread.Method).
const (
	// RunsSeeds: the same run with seeds seed, seed+1, …; the jitter of
	// step times differs between them.
	RunsSeeds = "seeds"
	// RunsBootstrap: one run, its requests resampled with replacement;
	// for runs with nothing random in them (no jitter), where every seed
	// gives the same result.
	RunsBootstrap = "bootstrap"
)

// Spread is one statistic over repeated runs: Mean is the centre of CI95
// (the mean over seeded runs, or the single run's value for the
// bootstrap) and SD the run-to-run standard deviation (for the bootstrap,
// the standard error of the statistic).
type Spread struct {
	Mean float64     `json:"mean"`
	SD   float64     `json:"sd"`
	CI95 *[2]float64 `json:"ci95"` // null when there are too few runs
}

// DistSpread holds the spread of a Dist's mean and quantiles.
type DistSpread struct {
	Mean Spread `json:"mean"`
	P50  Spread `json:"p50"`
	P95  Spread `json:"p95"`
	P99  Spread `json:"p99"`
}

// RunsSpread is the run-to-run spread of a summary's statistics.
type RunsSpread struct {
	N        int      `json:"n"`
	Method   string   `json:"method"`
	CIMethod string   `json:"ci_method"`
	Seeds    []uint64 `json:"seeds,omitempty"`

	WindowWaitMS  DistSpread `json:"window_wait_ms"`
	EngineQueueMS DistSpread `json:"engine_queue_ms"`
	TTFTMS        DistSpread `json:"ttft_ms"`
	LatencyMS     DistSpread `json:"latency_ms"`
	TPOTMS        DistSpread `json:"tpot_ms"`

	ThroughputTokS Spread `json:"throughput_tok_s"`
	ThroughputReqS Spread `json:"throughput_req_s"`
	// OverheadPct is nil when the runs have no bare-engine baseline, and
	// for the bootstrap, which would resample one side only.
	OverheadPct *Spread  `json:"overhead_pct"`
	Warnings    []string `json:"warnings,omitempty"`
}

// The CI methods of RunsSpread, by Method.
const (
	ciSeeds     = "95 % CI of the mean over the seeded runs: Student t on the run-level values"
	ciBootstrap = "95 % CI of the run's statistic: normal bootstrap (value ± t·SE, SE the SD over resamples of the requests)"
)

// SpreadOf summarises repeated runs. For RunsSeeds the runs are the
// seeded runs; for RunsBootstrap runs[0] is the run itself and runs[1:]
// its resamples.
func SpreadOf(runs []Summary, method string) (RunsSpread, error) {
	rs := RunsSpread{N: len(runs), Method: method}
	var pick func(get func(*Summary) float64) Spread
	switch method {
	case RunsSeeds:
		rs.CIMethod = ciSeeds
		for i := range runs {
			rs.Seeds = append(rs.Seeds, runs[i].Seed)
		}
		pick = func(get func(*Summary) float64) Spread {
			v := make([]float64, len(runs))
			for i := range runs {
				v[i] = get(&runs[i])
			}
			iv, _ := stats.MeanCI(v, CILevel)
			return spread(iv.Est, stats.StdDev(v), iv)
		}
	case RunsBootstrap:
		rs.CIMethod = ciBootstrap
		rs.N = len(runs) - 1
		pick = func(get func(*Summary) float64) Spread {
			v := make([]float64, len(runs)-1)
			for i := range v {
				v[i] = get(&runs[i+1])
			}
			est, se := get(&runs[0]), stats.StdDev(v)
			iv, _ := stats.MeanCIMoments(len(v), est, se*math.Sqrt(float64(len(v))), CILevel)
			return spread(est, se, iv)
		}
	default:
		return rs, fmt.Errorf("repeated runs: unknown method %q", method)
	}
	if rs.N < 2 {
		return rs, fmt.Errorf("repeated runs: need at least 2, have %d", rs.N)
	}
	dist := func(get func(*Summary) *Dist) DistSpread {
		return DistSpread{
			Mean: pick(func(s *Summary) float64 { return get(s).Mean }),
			P50:  pick(func(s *Summary) float64 { return get(s).P50 }),
			P95:  pick(func(s *Summary) float64 { return get(s).P95 }),
			P99:  pick(func(s *Summary) float64 { return get(s).P99 }),
		}
	}
	rs.WindowWaitMS = dist(func(s *Summary) *Dist { return &s.WindowWaitMS })
	rs.EngineQueueMS = dist(func(s *Summary) *Dist { return &s.EngineQueueMS })
	rs.TTFTMS = dist(func(s *Summary) *Dist { return &s.TTFTMS })
	rs.LatencyMS = dist(func(s *Summary) *Dist { return &s.LatencyMS })
	rs.TPOTMS = dist(func(s *Summary) *Dist { return &s.TPOTMS })
	rs.ThroughputTokS = pick(func(s *Summary) float64 { return s.ThroughputTokS })
	rs.ThroughputReqS = pick(func(s *Summary) float64 { return s.ThroughputReqS })
	if method == RunsSeeds && !slices.ContainsFunc(runs, func(s Summary) bool { return s.OverheadPct == nil }) {
		ov := pick(func(s *Summary) float64 { return *s.OverheadPct })
		rs.OverheadPct = &ov
	}
	switch {
	case method == RunsSeeds && rs.N < 5:
		rs.Warnings = append(rs.Warnings, fmt.Sprintf("only %d runs: the run-to-run spread itself is poorly known", rs.N))
	case method == RunsBootstrap && rs.N < 100:
		rs.Warnings = append(rs.Warnings, fmt.Sprintf("only %d resamples: the bootstrap standard error is rough (use --runs 100 or more)", rs.N))
	}
	if method == RunsBootstrap {
		rs.Warnings = append(rs.Warnings, "nothing in the run is random (no jitter): resampling requests shows the sampling error of the statistics, not a different run's timing")
	}
	return rs, nil
}

func spread(centre, sd float64, iv stats.Interval) Spread {
	r := func(x float64) float64 { return math.Round(x*1e4) / 1e4 }
	s := Spread{Mean: r(centre), SD: r(sd)}
	if iv.Finite() {
		s.CI95 = &[2]float64{r(iv.Lo), r(iv.Hi)}
	}
	if math.IsNaN(s.SD) {
		s.SD = 0
	}
	return s
}

// KeptResults returns the results a Collector with this trim would count
// (total as for NewCollector), in arrival order, and how many it trims:
// what a bootstrap of a run resamples. It sorts res in place and returns
// a prefix of it, so a run of millions of requests is not copied.
// Arrival order is rebuilt from ArrivalNS with ties broken by RequestID,
// which matches the run's own order unless equal arrival times straddle
// a count-based trim boundary.
func KeptResults(res []Result, trim Trim, total int64) ([]Result, int64, error) {
	if trim.CooldownN > 0 && total <= 0 {
		return nil, 0, fmt.Errorf("cool-down by count needs a trace of known length")
	}
	if len(res) == 0 {
		return nil, 0, nil
	}
	byArrival := res
	slices.SortStableFunc(byArrival, func(a, b Result) int {
		return cmp.Or(cmp.Compare(a.ArrivalNS, b.ArrivalNS), cmp.Compare(a.RequestID, b.RequestID))
	})
	first, last := byArrival[0].ArrivalNS, byArrival[len(byArrival)-1].ArrivalNS
	kept := byArrival[:0]
	var trimmed int64
	for i, r := range byArrival {
		seq := int64(i)
		if seq < trim.WarmupN || (trim.CooldownN > 0 && seq >= total-trim.CooldownN) ||
			(trim.WarmupNS > 0 && r.ArrivalNS-first < trim.WarmupNS) ||
			(trim.CooldownNS > 0 && r.ArrivalNS >= last-trim.CooldownNS) {
			trimmed++
			continue
		}
		kept = append(kept, r)
	}
	return kept, trimmed, nil
}

// Resample returns the summary of one bootstrap resample of kept (from
// KeptResults): as many results drawn with replacement, summarised with
// no trim; seed picks the resample.
func Resample(kept []Result, seed uint64, policy, trace, profile string) Summary {
	c, _ := NewCollector(Trim{}, 0)
	if len(kept) > 0 {
		r := stats.NewResampler(len(kept), seed)
		for j, i := range r.Next(nil) {
			c.Add(&kept[i], int64(j))
		}
	}
	return c.Summary(policy, trace, profile, seed)
}
