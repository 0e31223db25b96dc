package main

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/spf13/pflag"

	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/sim/stats"
)

const compareUsage = `simrun compare: is the difference between two runs real?

Usage:
  simrun compare A.parquet B.parquet [--detect EFFECT] [--unpaired] [--json] [--seed N]

A and B are results files from simrun --out or replay --out. Each metric
(window wait, engine queue, TTFT, latency, TPOT, per-request tok/s) is
compared on its mean (t interval) and p50/p95/p99 (bootstrap interval, with
exact order-statistic intervals per run). When both files hold the same
requests they are paired per request_id, which removes the request-to-request
spread from the comparison; --unpaired treats them as independent runs
(Welch t, Mann-Whitney U). A delta whose 95 % interval includes zero is
marked ~; ? marks a quantile the sample is too small to pin down. With
--detect, every row says how many requests per run would detect that effect
(95 % confidence, 80 % power).

Examples:
  simrun --policy fixed:window=2ms --out a.parquet
  simrun --policy fixed:window=1ms --out b.parquet
  simrun compare a.parquet b.parquet
  simrun compare a.parquet b.parquet --detect 1ms --json
  simrun compare a.parquet b.parquet --detect 0.5%

Flags:
`

// compareMinPaired is the share of requests both runs must hold for a
// per-request pairing: below it the runs are not the same workload.
const compareMinPaired = 0.9

func runCompare(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("simrun compare", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	detect := fs.String("detect", "", "effect to size samples for: a duration (1ms, 250us) or a share of A (0.5%)")
	unpaired := fs.Bool("unpaired", false, "treat the runs as independent even when they hold the same requests")
	asJSON := fs.Bool("json", false, "print JSON instead of the table")
	seed := fs.Uint64("seed", 1, "seed of the bootstrap")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "simrun compare: %v (see simrun compare --help)\n", err)
		return exitUsage
	}
	if *help {
		fmt.Fprint(stdout, compareUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	if fs.NArg() != 2 {
		fmt.Fprintf(stderr, "simrun compare: need two results files, got %d (see simrun compare --help)\n", fs.NArg())
		return exitUsage
	}
	var opt stats.CompareOptions
	opt.Bootstrap.Seed = *seed
	if *detect != "" {
		e, err := stats.ParseEffect(*detect)
		if err != nil {
			fmt.Fprintf(stderr, "simrun compare: --detect: %v\n", err)
			return exitUsage
		}
		opt.Detect = e
	}
	a, err := readRun(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "simrun compare: %v\n", err)
		return exitUsage
	}
	b, err := readRun(fs.Arg(1))
	if err != nil {
		fmt.Fprintf(stderr, "simrun compare: %v\n", err)
		return exitUsage
	}
	metrics, err := pairRuns(a, b, !*unpaired)
	if err != nil {
		fmt.Fprintf(stderr, "simrun compare: %v\n", err)
		return exitUsage
	}
	c, err := stats.Compare(fs.Arg(0), fs.Arg(1), metrics, opt)
	if err != nil {
		fmt.Fprintf(stderr, "simrun compare: %v\n", err)
		return exitUsage
	}
	if *asJSON {
		err = c.WriteJSON(stdout)
	} else {
		err = c.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "simrun compare: %v\n", err)
		return 1
	}
	return 0
}

// compared lists the per-request metrics compare reports, in order.
var compared = []struct {
	name string
	unit time.Duration
}{
	{"window_wait_ms", time.Millisecond},
	{"engine_queue_ms", time.Millisecond},
	{"ttft_ms", time.Millisecond},
	{"latency_ms", time.Millisecond},
	{"tpot_ms", time.Millisecond},
	{"tok_s", 0}, // a request's output tokens over its latency
}

// runValues is one results file's completed requests: ids and one value per
// compared metric (NaN where a metric does not apply, e.g. TPOT of a
// one-token answer).
type runValues struct {
	ids    []int64
	values [][]float64
}

func readRun(path string) (runValues, error) {
	cols, st, _, err := sim.ReadColumns(path, []string{
		"request_id", "arrival_ns", "first_token_ns", "finish_ns", "output_tokens",
		"window_wait_ns", "engine_queue_wait_ns",
	}, true)
	if err != nil {
		return runValues{}, err
	}
	id, arr, first, fin, out, wait, queue := cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]
	r := runValues{values: make([][]float64, len(compared))}
	const ms = float64(time.Millisecond)
	for i := range id {
		if st[i] != sim.OK {
			continue
		}
		r.ids = append(r.ids, id[i])
		lat := float64(fin[i] - arr[i])
		tpot := math.NaN()
		if out[i] > 1 {
			tpot = float64(fin[i]-first[i]) / float64(out[i]-1) / ms
		}
		tok := math.NaN()
		if lat > 0 {
			tok = float64(out[i]) / (lat / float64(time.Second))
		}
		for m, v := range []float64{
			float64(wait[i]) / ms, float64(queue[i]) / ms, float64(first[i]-arr[i]) / ms, lat / ms, tpot, tok,
		} {
			r.values[m] = append(r.values[m], v)
		}
	}
	if len(r.ids) == 0 {
		return runValues{}, fmt.Errorf("%s: no completed requests to compare", path)
	}
	return r, nil
}

// pairRuns builds the metric samples: paired per request when asked and
// both runs hold (almost) the same requests, unpaired otherwise.
func pairRuns(a, b runValues, wantPaired bool) ([]stats.MetricSamples, error) {
	out := make([]stats.MetricSamples, 0, len(compared))
	for m, c := range compared {
		ms := stats.MetricSamples{Metric: c.name, Unit: c.unit}
		if wantPaired {
			pa, pb, unmatched, err := stats.PairByID(a.ids, a.values[m], b.ids, b.values[m])
			if err != nil {
				return nil, err
			}
			if float64(len(pa)) >= compareMinPaired*float64(len(pa)+unmatched) {
				ms.A, ms.B = dropNaNPairs(pa, pb)
				ms.Paired = true
			}
		}
		if !ms.Paired {
			ms.A, ms.B = dropNaN(a.values[m]), dropNaN(b.values[m])
		}
		if len(ms.A) == 0 || len(ms.B) == 0 {
			continue // e.g. TPOT when every answer is one token
		}
		out = append(out, ms)
	}
	return out, nil
}

func dropNaN(xs []float64) []float64 {
	out := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			out = append(out, x)
		}
	}
	return out
}

// dropNaNPairs keeps the pairs where both values apply.
func dropNaNPairs(a, b []float64) (pa, pb []float64) {
	for i := range a {
		if !math.IsNaN(a[i]) && !math.IsNaN(b[i]) {
			pa, pb = append(pa, a[i]), append(pb, b[i])
		}
	}
	return pa, pb
}
