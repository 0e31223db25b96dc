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
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/batchkit/batchkit/policies"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/trace"
	"github.com/spf13/pflag"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `simrun: simulate batching policies on a request trace

Usage:
  simrun [--trace F] [--policy SPEC ...] [--sweep SPEC ...] [--profile NAME|FILE]
         [--clients N --think D] [--speedup X] [--seed N] [--warmup N|D] [--cooldown N|D]
         [--out results.parquet] [--table sweep.parquet] [--json] [--force]
  simrun --policy list        list the policies and their parameters
  simrun --profile list       list the built-in engine profiles
  simrun compare A.parquet B.parquet [--detect D] [--json]
                              is the difference between two results files real?

With no flags it runs traces/default.parquet with policy adaptive on the
gpu-continuous profile. Every run is compared with the bare engine (policy
none, no per-request overhead) on the same trace and clients: overhead_pct.

Examples:
  simrun
  simrun --policy adaptive --trace prod.parquet
  simrun --trace traces/seed-50q.parquet --profile seed-llama3.2-3b --clients 1 --policy fixed:window=2ms --policy fastpath:window=2ms
  simrun --sweep 'fixed:window=0.25ms..4ms/0.25ms' --table sweep.parquet --json
  simrun --policy fixed:window=1ms --out results.parquet --warmup 100

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
	json, force, noBare                bool
}

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
	fs.StringVar(&o.out, "out", "", "write per-request results (Parquet) of the single run")
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
	n := len(runs)
	if !o.noBare {
		n++
	}
	sums := make([]sim.Summary, n)
	err = sim.Parallel(n, 0, func(i int) error {
		cfg := base
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
		if o.out != "" && i == 0 {
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
		sums[i] = s
		return nil
	})
	if err != nil {
		return err
	}
	out := sums[:len(runs)]
	if !o.noBare {
		for i := range out {
			out[i].SetOverhead(&sums[len(runs)])
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
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.2f\t%s\t\n", s.Policy,
			s.WindowWaitMS.Mean, s.WindowWaitMS.P95, s.TTFTMS.Mean, s.TTFTMS.P95, s.LatencyMS.Mean, s.LatencyMS.P95, s.BatchSize.Mean, ov)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, s := range sums {
		for _, warn := range s.Warnings {
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
		for _, m := range []struct {
			name string
			d    sim.Dist
		}{
			{"window_wait_ms", s.WindowWaitMS}, {"engine_queue_ms", s.EngineQueueMS},
			{"ttft_ms", s.TTFTMS}, {"latency_ms", s.LatencyMS}, {"tpot_ms", s.TPOTMS}, {"batch_size", s.BatchSize},
		} {
			d := m.d
			fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", m.name, d.Mean, d.P50, d.P90, d.P95, d.P99, d.Max)
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
	}
	if m := sums[len(sums)-1].CIMethod; m != "" {
		fmt.Fprintf(w, "note: %s\n", m)
	}
	return nil
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
