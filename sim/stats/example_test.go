package stats_test

import (
	"fmt"
	"math"

	"github.com/batchkit/batchkit/sim/stats"
)

// The seed report (kr-serve-mlx v1.4.2 Phase 1) measured mean response time
// 415.85 ms (SD 6.49) with a 2 ms batching window and 414.34 ms (SD 6.45)
// with 1 ms, 50 questions each, two independent runs, and called the
// −1.51 ms a "marginal improvement". Is it distinguishable from zero, and
// how many questions per arm would show a 1 ms or 0.5 ms effect?
func Example_seedReport() {
	diff, p, _ := stats.WelchFromSummary(415.85, 6.49, 50, 414.34, 6.45, 50, 0.95)
	fmt.Printf("B−A = %.2f ms, %s 95%% CI [%.2f, %.2f] ms, p = %.2f\n", diff.Est, diff.Method, diff.Lo, diff.Hi, p)
	fmt.Println("distinguishable from zero:", !diff.Contains(0))

	sd := math.Sqrt((6.49*6.49 + 6.45*6.45) / 2)
	for _, spec := range []string{"1ms", "500us", "0.5%"} {
		e, err := stats.ParseEffect(spec)
		if err != nil {
			panic(err)
		}
		delta, _ := e.Size(415.85, 1e6) // values in ms: 1e6 ns each
		n := stats.NPerArmMean(sd, delta, false, 0.95, stats.DefaultPower)
		fmt.Printf("%s (%.3f ms): %d questions per arm (unpaired, 95%% confidence, 80%% power)\n", spec, delta, n)
		fmt.Println(" ", stats.EffectWarning(e, "mean latency", n, 50))
	}
	fmt.Printf("p99 needs ≥ %d questions for a finite 95%% CI\n", stats.MinSamplesQuantileCI(0.99, 0.95))
	// Output:
	// B−A = -1.51 ms, welch-t 95% CI [-4.08, 1.06] ms, p = 0.25
	// distinguishable from zero: false
	// 1ms (1.000 ms): 659 questions per arm (unpaired, 95% confidence, 80% power)
	//   a 1ms effect on mean latency needs ≈ 659 requests per arm; this sample has 50
	// 500us (0.500 ms): 2630 questions per arm (unpaired, 95% confidence, 80% power)
	//   a 500us effect on mean latency needs ≈ 2630 requests per arm; this sample has 50
	// 0.5% (2.079 ms): 153 questions per arm (unpaired, 95% confidence, 80% power)
	//   a 0.5% effect on mean latency needs ≈ 153 requests per arm; this sample has 50
	// p99 needs ≥ 368 questions for a finite 95% CI
}

// Paired per request: same trace, two policies, one row per request id.
func ExampleCompare() {
	idsA := []int64{1, 2, 3, 4, 5, 6, 7, 8}
	a := []float64{410, 425, 398, 440, 405, 415, 430, 402}
	idsB := []int64{8, 7, 6, 5, 4, 3, 2, 1}
	b := []float64{401.2, 429.1, 414.0, 404.1, 439.2, 397.3, 424.0, 409.1}
	pa, pb, unmatched, err := stats.PairByID(idsA, a, idsB, b)
	if err != nil {
		panic(err)
	}
	c, err := stats.Compare("window=2ms", "window=1ms", []stats.MetricSamples{
		{Metric: "latency_ms", Unit: 1e6, A: pa, B: pb, Paired: true},
	}, stats.CompareOptions{Quantiles: []float64{0.5}, Bootstrap: stats.BootstrapOptions{Seed: 1}})
	if err != nil {
		panic(err)
	}
	r := c.Rows[0]
	fmt.Printf("unmatched %d; mean %s %+.2f ms [%.2f, %.2f] significant=%v\n", unmatched, r.Method, r.Delta, r.CI95[0], r.CI95[1], r.Significant)
	// Output:
	// unmatched 0; mean paired-t -0.87 ms [-0.96, -0.79] significant=true
}
