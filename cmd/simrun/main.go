// Command simrun simulates batching policies on a request trace with an
// engine profile (package sim) and reports where the time goes.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/batchkit/batchkit/policies"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/sim/stats"
	"github.com/batchkit/batchkit/trace"
	"github.com/spf13/pflag"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `simrun: simulate batching policies on a request trace

Usage:
  simrun [--trace F] [--policy SPEC ...] [--sweep SPEC ...] [--profile NAME|FILE]
         [--clients N --think D] [--speedup X] [--seed N] [--warmup N|D] [--cooldown N|D]
         [--runs N] [--out results.parquet] [--table sweep.parquet] [--json] [--force]
  simrun --policy list        list the policies and their parameters
  simrun --profile list       list the built-in engine profiles
  simrun compare A.parquet B.parquet [--detect D] [--json]
                              is the difference between two results files real?

With no flags it runs traces/default.parquet with policy adaptive on the
gpu-continuous profile. Every run is compared with the bare engine (policy
none, no per-request overhead) on the same trace and clients: overhead_pct.

Every mean and p50/p95/p99 comes with a 95 % confidence interval (the "95% CI"
row; "ci95" in --json): Student t for means, exact order statistics for
quantiles, "n/a"/null with a warning when the sample is too small. --runs N
repeats each run: with seeds seed, seed+1, ... when the profile jitters step
times, or, when nothing in the run is random, as N bootstrap resamples of its
requests; it reports the run-to-run mean, SD and 95 % CI of every statistic
("runs" in --json; _lo/_hi columns in --table) and says which method it used.

Examples:
  simrun
  simrun --policy adaptive --trace prod.parquet
  simrun --trace traces/seed-50q.parquet --profile seed-llama3.2-3b --clients 1 --policy fixed:window=2ms --policy fastpath:window=2ms
  simrun --sweep 'fixed:window=0.25ms..4ms/0.25ms' --table sweep.parquet --json
  simrun --policy fixed:window=1ms --out results.parquet --warmup 100
  simrun --policy fixed:window=1ms --runs 20 --json
  simrun --sweep 'fixed:window=0ms..4ms/0.5ms' --runs 10 --table sweep.parquet

Flags:
`

const (
	exitUsage      = 2
	defaultTrace   = "traces/default.parquet"
	defaultPolicy  = "adaptive"
	defaultProfile = "gpu-continuous"
)

type options struct {
	trace, profile, out, table, warmup string
	policies, sweeps                   []string
	clients                            int
	think                              time.Duration
	speedup                            float64
	seed                               uint64
	cooldown                           string
	runs                               int
	json, force, noBare                bool
}

// maxRuns bounds --runs so a typo cannot start millions of runs.
const maxRuns = 10000

// usageError is bad input: exit status 2.
type usageError struct{ error }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "compare" {
		return runCompare(args[1:], stdout, stderr)
	}
	var o options
	fs := pflag.NewFlagSet("simrun", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.trace, "trace", "", "trace file (default "+defaultTrace+", found from the current directory up)")
	fs.StringArrayVar(&o.policies, "policy", nil, "policy spec, repeatable; 'list' lists them (default "+defaultPolicy+")")
	fs.StringArrayVar(&o.sweeps, "sweep", nil, "policy spec with one key=from..to/step range, repeatable")
	fs.StringVar(&o.profile, "profile", defaultProfile, "engine profile: built-in name or JSON file; 'list' lists the built-ins")
	fs.IntVar(&o.clients, "clients", 0, "closed loop with N clients (0: open loop at trace times)")
	fs.DurationVar(&o.think, "think", 0, "closed loop: think time between a response and the client's next request")
	fs.Float64Var(&o.speedup, "speedup", 1, "open loop: divide trace arrival times by X")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the step-time jitter")
	fs.StringVar(&o.warmup, "warmup", "", "leave out of the summary the first N requests, or those arriving in the first D (e.g. 30s)")
	fs.StringVar(&o.cooldown, "cooldown", "", "leave out of the summary the last N requests, or those arriving in the last D")
	fs.IntVar(&o.runs, "runs", 1, "repeat each run N times (seeds seed.. with jitter, else bootstrap resamples) and report the spread")
	fs.StringVar(&o.out, "out", "", "write per-request results (Parquet) of the single run (the first seed with --runs)")
	fs.StringVar(&o.table, "table", "", "write one row per run (Parquet) for plots")
	fs.BoolVar(&o.json, "json", false, "print JSON: an object per run, an array when several")
	fs.BoolVar(&o.force, "force", false, "overwrite existing output files")
	fs.BoolVar(&o.noBare, "no-bare", false, "skip the bare-engine run (overhead_pct is null)")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "simrun: %v (see simrun --help)\n", err)
		return exitUsage
	}
	if *help {
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "simrun: unexpected argument %q (see simrun --help)\n", fs.Arg(0))
		return exitUsage
	}
	if err := simrun(o, stdout); err != nil {
		fmt.Fprintf(stderr, "simrun: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return 1
	}
	return 0
}

type runSpec struct {
	spec  string
	param string
	value float64
}

func simrun(o options, stdout io.Writer) error {
	for _, p := range o.policies {
		if p == "list" {
			return policies.List(stdout)
		}
	}
	if o.profile == "list" {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		for _, n := range sim.BuiltinProfiles() {
			p, _ := sim.BuiltinProfile(n)
			fmt.Fprintf(tw, "%s\t%s, max_batch %d\t%s\n", n, p.Mode, p.MaxBatch, p.Provenance)
		}
		return tw.Flush()
	}
	if o.runs < 1 || o.runs > maxRuns {
		return usageError{fmt.Errorf("--runs %d: want 1 to %d", o.runs, maxRuns)}
	}
	prof, err := sim.LoadProfile(o.profile)
	if err != nil {
		return usageError{err}
	}
	var runs []runSpec
	for _, p := range o.policies {
		runs = append(runs, runSpec{spec: p, value: math.NaN()})
	}
	for _, s := range o.sweeps {
		pts, err := sim.ExpandSweep(s)
		if err != nil {
			return usageError{err}
		}
		for _, p := range pts {
			runs = append(runs, runSpec{spec: p.Spec, param: p.Param, value: p.Value})
		}
	}
	if len(runs) == 0 {
		runs = []runSpec{{spec: defaultPolicy, value: math.NaN()}}
	}
	for _, r := range runs {
		if _, err := policies.Parse(r.spec); err != nil {
			return usageError{fmt.Errorf("policy %s: %v", r.spec, err)}
		}
	}
	if o.out != "" && len(runs) != 1 {
		return usageError{fmt.Errorf("--out writes the results of one run; with %d runs use --table", len(runs))}
	}
	if o.clients < 0 || o.think < 0 || !(o.speedup > 0) || math.IsInf(o.speedup, 0) {
		return usageError{fmt.Errorf("--clients, --think must not be negative and --speedup must be positive")}
	}
	if o.clients == 0 && o.think != 0 {
		return usageError{fmt.Errorf("--think %v needs --clients (closed loop)", o.think)}
	}
	if o.clients > 0 && o.speedup != 1 {
		return usageError{fmt.Errorf("--speedup applies to open loop only; drop it or --clients")}
	}
	trim, err := sim.ParseTrim(o.warmup, o.cooldown)
	if err != nil {
		return usageError{err}
	}
	tracePath := o.trace
	if tracePath == "" {
		tracePath = trace.FindShipped(defaultTrace)
	}
	// Open once up front for a clear error and the row count.
	tr, err := trace.Open(tracePath)
	if err != nil {
		return usageError{err}
	}
	total := tr.NumRows()
	tr.Close()
	for _, p := range []string{o.out, o.table} {
		if p == "" || o.force {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return usageError{fmt.Errorf("%s: already exists (use --force to overwrite)", p)}
		}
	}

	profJSON, err := json.Marshal(prof)
	if err != nil {
		return err
	}
	base := sim.Config{
		Profile: prof, Clients: o.clients, Think: o.think, Speedup: o.speedup,
		Seed: o.seed, Trim: trim, Total: total, Trace: tracePath,
	}
	// Seeded repeats only differ where something is random: the jitter of
	// step times. Without it every seed gives the same run, so --runs
	// resamples the run's requests instead.
	method, seedRuns := "", 1
	if o.runs > 1 {
		method = sim.RunsBootstrap
		if prof.JitterCV > 0 {
			method, seedRuns = sim.RunsSeeds, o.runs
		}
	}
	specs := len(runs)
	if !o.noBare {
		specs++
	}
	sums := make([]sim.Summary, specs*seedRuns)
	kept := make([][]sim.Result, len(runs)) // bootstrap: the results of each run
	err = sim.Parallel(len(sums), 0, func(j int) error {
		i, k := j/seedRuns, j%seedRuns
		cfg := base
		cfg.Seed = o.seed + uint64(k)
		spec := defaultPolicy
		if i < len(runs) {
			spec = runs[i].spec
		} else {
			spec = "none"
			cfg.Profile = prof
			cfg.Profile.RequestOverheadMS = 0
		}
		pol, err := policies.Parse(spec)
		if err != nil {
			return usageError{err}
		}
		cfg.Policy = pol
		src, err := trace.Open(tracePath)
		if err != nil {
			return usageError{err}
		}
		defer src.Close()
		var w *sim.ResultWriter
		if o.out != "" && i == 0 && k == 0 {
			w, err = sim.CreateResults(o.out, map[string]string{
				sim.MetaTrace: tracePath, sim.MetaPolicy: pol.Spec(), sim.MetaProfile: prof.Name,
				sim.MetaSeed: strconv.FormatUint(o.seed, 10), sim.MetaSource: "simrun",
				sim.MetaProfileJSON: string(profJSON),
			}, o.force)
			if err != nil {
				return err
			}
			cfg.Results = w.Write
		}
		if method == sim.RunsBootstrap && i < len(runs) {
			var res []sim.Result
			write := cfg.Results
			cfg.Results = func(r *sim.Result) error {
				res = append(res, *r)
				if write != nil {
					return write(r)
				}
				return nil
			}
			defer func() { kept[i] = res }()
		}
		s, _, err := sim.Run(cfg, src)
		if err != nil {
			if w != nil {
				w.Abort()
			}
			var te *trace.Error
			if errors.As(err, &te) {
				return usageError{err}
			}
			return err
		}
		if w != nil {
			if err := w.Close(); err != nil {
				return err
			}
		}
		sums[j] = s
		return nil
	})
	if err != nil {
		return err
	}
	if !o.noBare {
		bare := sums[len(runs)*seedRuns:]
		for j := range sums[:len(runs)*seedRuns] {
			sums[j].SetOverhead(&bare[j%seedRuns])
		}
	}
	out := make([]sim.Summary, len(runs))
	for i := range out {
		out[i] = sums[i*seedRuns]
	}
	if method != "" {
		if err := addSpread(out, sums, kept, method, seedRuns, o.runs, o.seed, trim, total); err != nil {
			return err
		}
	}
	if o.table != "" {
		rows := make([]sim.TableRow, len(out))
		for i := range out {
			rows[i] = out[i].Row(runs[i].param, runs[i].value)
		}
		if err := sim.WriteTable(o.table, rows, o.force); err != nil {
			return err
		}
	}
	if o.json {
		var b []byte
		if len(out) == 1 {
			b, err = json.MarshalIndent(out[0], "", "  ")
		} else {
			b, err = json.MarshalIndent(out, "", "  ")
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	if len(o.sweeps) > 0 {
		return printSweep(stdout, out)
	}
	return printTable(stdout, out)
}

// addSpread fills the Runs of each summary in out: from its seeded runs
// (sums, seedRuns per policy) or from n bootstrap resamples of its kept
// requests.
func addSpread(out, sums []sim.Summary, kept [][]sim.Result, method string, seedRuns, n int, seed uint64, trim sim.Trim, total int64) error {
	if method == sim.RunsSeeds {
		for i := range out {
			sp, err := sim.SpreadOf(sums[i*seedRuns:(i+1)*seedRuns], method)
			if err != nil {
				return err
			}
			out[i].Runs = &sp
		}
		return nil
	}
	// The same resample seeds for every policy: runs of one trace then
	// resample the same request indices, as paired comparisons want.
	seeds := stats.RunSeeds(seed, n)
	for i := range out {
		k, _, err := sim.KeptResults(kept[i], trim, total)
		if err != nil {
			return usageError{err}
		}
		kept[i] = nil
		reps := make([]sim.Summary, n+1)
		reps[0] = out[i]
		s := &out[i]
		if err := sim.Parallel(n, 0, func(r int) error {
			reps[r+1] = sim.Resample(k, seeds[r], s.Policy, s.Trace, s.Profile)
			return nil
		}); err != nil {
			return err
		}
		sp, err := sim.SpreadOf(reps, method)
		if err != nil {
			return err
		}
		out[i].Runs = &sp
	}
	return nil
}

// printSweep prints one line per run, so a sweep of many values reads as
// a curve; --json or --table give every statistic.
func printSweep(w io.Writer, sums []sim.Summary) error {
	s0 := sums[0]
	fmt.Fprintf(w, "trace %s  profile %s  seed %d  (ms; overhead vs bare engine)\n", s0.Trace, s0.Profile, s0.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\twait mean\twait p95\tttft mean\tttft p95\tlatency mean\tlatency p95\tbatch mean\toverhead\t")
	for _, s := range sums {
		ov := "n/a"
		if s.OverheadPct != nil {
			ov = fmt.Sprintf("%+.2f%%", *s.OverheadPct)
		}
		if r := s.Runs; r != nil {
			// With repeated runs each cell is the runs' centre ± its CI.
			if r.OverheadPct != nil {
				ov = fmt.Sprintf("%+.2f%%±n/a", r.OverheadPct.Mean)
				if b := r.OverheadPct.CI95; b != nil {
					ov = fmt.Sprintf("%+.2f%%±%.2f", r.OverheadPct.Mean, max(r.OverheadPct.Mean-b[0], b[1]-r.OverheadPct.Mean))
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t\n", s.Policy,
				spreadCell(r.WindowWaitMS.Mean), spreadCell(r.WindowWaitMS.P95), spreadCell(r.TTFTMS.Mean), spreadCell(r.TTFTMS.P95),
				spreadCell(r.LatencyMS.Mean), spreadCell(r.LatencyMS.P95), s.BatchSize.Mean, ov)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.2f\t%s\t\n", s.Policy,
			s.WindowWaitMS.Mean, s.WindowWaitMS.P95, s.TTFTMS.Mean, s.TTFTMS.P95, s.LatencyMS.Mean, s.LatencyMS.P95, s.BatchSize.Mean, ov)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r := s0.Runs; r != nil {
		if r.Method == sim.RunsSeeds {
			fmt.Fprintf(w, "each cell: mean over %d runs (seeds %d..%d) ± 95 %% CI (t over runs)\n", r.N, r.Seeds[0], r.Seeds[len(r.Seeds)-1])
		} else {
			fmt.Fprintf(w, "each cell: value ± 95 %% CI from %d bootstrap resamples of the requests\n", r.N)
		}
	}
	seen := map[string]bool{}
	for _, s := range sums {
		var ws []string
		if s.Runs != nil {
			ws = s.Runs.Warnings
		}
		for _, warn := range append(slices.Clip(s.Warnings), ws...) {
			if !seen[warn] {
				seen[warn] = true
				fmt.Fprintf(w, "warning: %s\n", warn)
			}
		}
	}
	return nil
}

func printTable(w io.Writer, sums []sim.Summary) error {
	for i, s := range sums {
		if i > 0 {
			fmt.Fprintln(w)
		}
		ov := "n/a"
		if s.OverheadPct != nil {
			ov = fmt.Sprintf("%+.2f%%", *s.OverheadPct)
		}
		fmt.Fprintf(w, "policy %s  trace %s  profile %s  seed %d\n", s.Policy, s.Trace, s.Profile, s.Seed)
		fmt.Fprintf(w, "requests %d  rejected %d  dropped %d  trimmed %d  throughput %.1f tok/s %.3f req/s  makespan %.3f s  overhead vs bare engine %s\n",
			s.Requests, s.Rejected, s.Dropped, s.Trimmed, s.ThroughputTokS, s.ThroughputReqS, s.MakespanS, ov)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tmean\tp50\tp90\tp95\tp99\tmax\t")
		for _, m := range s.Dists() {
			d := m.Dist
			fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", m.Name, d.Mean, d.P50, d.P90, d.P95, d.P99, d.Max)
			if ci := d.CI95; ci != nil {
				fmt.Fprintf(tw, "  95%% CI\t%s\t%s\t\t%s\t%s\t\t\n", halfWidth(d.Mean, ci.Mean), bounds(ci.P50), bounds(ci.P95), bounds(ci.P99))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, warn := range s.Warnings {
			fmt.Fprintf(w, "warning: %s\n", warn)
		}
		if s.Runs != nil {
			if err := printRuns(w, s.Runs); err != nil {
				return err
			}
		}
	}
	if m := sums[len(sums)-1].CIMethod; m != "" {
		fmt.Fprintf(w, "note: %s\n", m)
	}
	return nil
}

// printRuns prints the spread over repeated runs: centre ± the half-width
// of its 95 % CI.
func printRuns(w io.Writer, r *sim.RunsSpread) error {
	switch r.Method {
	case sim.RunsSeeds:
		fmt.Fprintf(w, "%d runs, seeds %d..%d: mean over runs ± 95 %% CI (t over runs)\n", r.N, r.Seeds[0], r.Seeds[len(r.Seeds)-1])
	default:
		fmt.Fprintf(w, "%d bootstrap resamples of the requests: value ± 95 %% CI (normal bootstrap)\n", r.N)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmean\tp50\tp95\tp99\t")
	for _, m := range []struct {
		name string
		d    sim.DistSpread
	}{
		{"window_wait_ms", r.WindowWaitMS}, {"engine_queue_ms", r.EngineQueueMS},
		{"ttft_ms", r.TTFTMS}, {"latency_ms", r.LatencyMS}, {"tpot_ms", r.TPOTMS},
	} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", m.name, spreadCell(m.d.Mean), spreadCell(m.d.P50), spreadCell(m.d.P95), spreadCell(m.d.P99))
	}
	fmt.Fprintf(tw, "throughput_tok_s\t%s\t\t\t\t\n", spreadCell(r.ThroughputTokS))
	fmt.Fprintf(tw, "throughput_req_s\t%s\t\t\t\t\n", spreadCell(r.ThroughputReqS))
	if r.OverheadPct != nil {
		fmt.Fprintf(tw, "overhead_pct\t%s\t\t\t\t\n", spreadCell(*r.OverheadPct))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	return nil
}

// spreadCell renders a statistic over runs as centre±half-width.
func spreadCell(s sim.Spread) string {
	if s.CI95 == nil {
		return fmt.Sprintf("%.3f±n/a", s.Mean)
	}
	return fmt.Sprintf("%.3f%s", s.Mean, halfWidth(s.Mean, s.CI95))
}

// halfWidth renders a mean's interval as ±h, the larger distance from
// the estimate to a bound (the t interval is symmetric up to rounding).
func halfWidth(est float64, b *[2]float64) string {
	if b == nil {
		return "n/a"
	}
	return fmt.Sprintf("±%.3f", max(est-b[0], b[1]-est))
}

// bounds renders an interval as [lo,hi]; n/a when the sample is too small
// (the warnings say how many samples it needs).
func bounds(b *[2]float64) string {
	if b == nil {
		return "n/a"
	}
	return fmt.Sprintf("[%.3f,%.3f]", b[0], b[1])
}
