package main

import (
	"context"
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
	"github.com/batchkit/batchkit/realengine"
	"github.com/batchkit/batchkit/replay"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/trace"
	"github.com/spf13/pflag"
)

type options struct {
	ef                             engineFlags
	sf                             serveFlags
	tracePath, policy, profile     string
	clients                        int
	think                          time.Duration
	speedup                        float64
	maxRequests                    int
	duration, timeout, drain, spin time.Duration
	truncate                       bool
	warmup, cooldown               string
	out, steps, predictOut, plot   string
	grid                           string
	asJSON, force, noBare, quiet   bool
	predict, calibrate             bool
	changedMode, changedBatch      bool
	changedBudget, changedOverhead bool
}

func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := pflag.NewFlagSet("replay", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.ef.add(fs)
	o.sf.add(fs)
	fs.StringVar(&o.tracePath, "trace", "", "trace file (default "+defaultTrace+", found from the current directory up)")
	fs.StringVar(&o.policy, "policy", defaultPolicy, "policy spec; 'list' lists them")
	fs.StringVar(&o.profile, "profile", "", "simulator profile (built-in name or JSON file): serving model for the run, step costs for --predict")
	fs.IntVar(&o.clients, "clients", 0, "closed loop with N clients (0: open loop at trace times)")
	fs.DurationVar(&o.think, "think", 0, "closed loop: think time between a response and the client's next request")
	fs.Float64Var(&o.speedup, "speedup", 1, "open loop: divide trace arrival times by X")
	fs.IntVar(&o.maxRequests, "max-requests", 0, "send at most N requests (0: all)")
	fs.DurationVar(&o.duration, "duration", 0, "stop sending after D (open loop: requests arriving later are left out)")
	fs.DurationVar(&o.timeout, "timeout", 0, "fail a request D after its arrival: when dispatched (it never reaches the engine) or at the next step boundary (0: none)")
	fs.DurationVar(&o.drain, "drain", 0, "on Ctrl-C/SIGTERM keep serving requests already sent for up to D")
	fs.DurationVar(&o.spin, "spin", replay.DefaultSpin, "busy-wait this long before each deadline for sub-ms timing (0: sleep only)")
	fs.BoolVar(&o.truncate, "truncate", false, "cut prompts (then outputs) that exceed the engine context instead of failing")
	fs.StringVar(&o.warmup, "warmup", "", "leave out of the summary the first N requests, or those arriving in the first D")
	fs.StringVar(&o.cooldown, "cooldown", "", "leave out of the summary the last N requests, or those arriving in the last D")
	fs.StringVar(&o.out, "out", "", "write per-request results (Parquet, simrun's schema)")
	fs.StringVar(&o.steps, "steps", "", "write measured engine steps (Parquet; default OUT.steps.parquet with --out)")
	fs.BoolVar(&o.predict, "predict", false, "also simulate the same requests with --profile (or --calibrate) and print the errors")
	fs.BoolVar(&o.calibrate, "calibrate", false, "calibrate a profile on the spot (with --grid) for --predict")
	fs.StringVar(&o.grid, "grid", "small", "calibration grid for --calibrate: trace (drawn from the requests replayed), or as replay calibrate --help says")
	fs.StringVar(&o.predictOut, "predict-out", "", "write the predicted results (default OUT.predicted.parquet with --out)")
	fs.StringVar(&o.plot, "plot", "", "draw the predicted-vs-measured panel (png, svg or pdf); needs --predict")
	fs.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&o.force, "force", false, "overwrite existing output files")
	fs.BoolVar(&o.noBare, "no-bare", false, "skip the bare-engine run (overhead_pct is null)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress on stderr")
	if code, done := parseFlags(fs, args, "replay", usage, stdout, stderr); done {
		return code
	}
	o.changedMode, o.changedBatch = fs.Changed("mode"), fs.Changed("max-batch")
	o.changedBudget, o.changedOverhead = fs.Changed("token-budget"), fs.Changed("overhead-ms")
	if err := doReplay(ctx, o, stdout, stderr); err != nil {
		return fail(stderr, "replay", err)
	}
	return 0
}

// report is the JSON output: simrun's summary keys plus replay's own.
type report struct {
	sim.Summary
	Engine     realengine.Info      `json:"engine"`
	Dispatch   replay.Lateness      `json:"dispatch_lateness"`
	Send       replay.Lateness      `json:"send_lateness"`
	Steps      int                  `json:"steps"`
	StepWallMS float64              `json:"step_wall_ms_mean"`
	Sent       int                  `json:"sent"`
	Unfinished int                  `json:"unfinished"`
	Truncated  int                  `json:"truncated"`
	Predicted  *sim.Summary         `json:"predicted,omitempty"`
	Errors     []replay.MetricError `json:"prediction_errors,omitempty"`
}

func doReplay(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if o.policy == "list" {
		return policies.List(stdout)
	}
	pol, err := policies.Parse(o.policy)
	if err != nil {
		return usageError{fmt.Errorf("policy %s: %v", o.policy, err)}
	}
	if o.clients < 0 || o.think < 0 || !(o.speedup > 0) || math.IsInf(o.speedup, 0) || o.maxRequests < 0 ||
		o.duration < 0 || o.timeout < 0 || o.drain < 0 || o.spin < 0 {
		return usageError{errors.New("--clients, --think, --max-requests, --duration, --timeout, --drain, --spin must not be negative and --speedup must be positive")}
	}
	if o.clients == 0 && o.think != 0 {
		return usageError{fmt.Errorf("--think %v needs --clients (closed loop)", o.think)}
	}
	if o.clients > 0 && o.speedup != 1 {
		return usageError{errors.New("--speedup applies to open loop only; drop it or --clients")}
	}
	if o.plot != "" && !o.predict {
		return usageError{errors.New("--plot draws the predicted-vs-measured panel: add --predict")}
	}
	if o.predict && o.profile == "" && !o.calibrate {
		return usageError{errors.New("--predict needs --profile or --calibrate")}
	}
	if o.calibrate && !o.predict {
		return usageError{errors.New("--calibrate calibrates for --predict: add --predict")}
	}
	if err := checkServe(o.sf); err != nil {
		return err
	}
	var grid realengine.CalibrationGrid
	if o.calibrate && o.grid != "trace" { // a trace grid comes from the requests, below
		if grid, err = replay.ParseGrid(o.grid, realengine.DefaultGrid()); err != nil {
			return usageError{err}
		}
	}
	trim, err := sim.ParseTrim(o.warmup, o.cooldown)
	if err != nil {
		return usageError{err}
	}
	// The serving model: the profile's, with flags given explicitly on top.
	var prof sim.Profile
	if o.profile != "" {
		if prof, err = sim.LoadProfile(o.profile); err != nil {
			return usageError{err}
		}
	} else {
		prof = sim.Profile{Name: "replay", Mode: sim.Mode(o.sf.mode), MaxBatch: o.sf.maxBatch, TokenBudget: o.sf.tokenBudget,
			RequestOverheadMS: o.sf.overheadMS, Step: sim.StepCost{BaseMS: 1},
			Provenance: "serving model from replay's flags; step costs are unused (the engine is the cost)"}
	}
	if o.changedMode {
		prof.Mode = sim.Mode(o.sf.mode)
	}
	if o.changedBatch {
		prof.MaxBatch = o.sf.maxBatch
	}
	if o.changedBudget {
		prof.TokenBudget = o.sf.tokenBudget
	}
	if o.changedOverhead {
		prof.RequestOverheadMS = o.sf.overheadMS
	}
	if err := prof.Validate(); err != nil {
		return usageError{fmt.Errorf("profile %s: %v", prof.Name, err)}
	}
	tracePath := o.tracePath
	if tracePath == "" {
		tracePath = trace.FindShipped(defaultTrace)
	}
	all, _, err := trace.ReadAll(tracePath)
	if err != nil {
		return usageError{err}
	}
	if o.steps == "" && o.out != "" {
		o.steps = stem(o.out) + ".steps.parquet"
	}
	if o.predictOut == "" && o.out != "" && o.predict {
		o.predictOut = stem(o.out) + ".predicted.parquet"
	}
	for _, p := range []string{o.out, o.steps, o.predictOut, o.plot} {
		if p == "" || o.force {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return usageError{fmt.Errorf("%s: already exists (use --force to overwrite)", p)}
		}
	}
	eng, err := o.ef.open()
	if err != nil {
		return err
	}
	defer eng.Close()
	info := eng.Info()
	maxCtx := info.Config.MaxPositionEmbeddings
	if o.ef.maxContext > 0 && o.ef.maxContext < maxCtx {
		maxCtx = o.ef.maxContext
	}
	var before int64
	if o.clients == 0 && o.duration > 0 {
		before = int64(math.Round(float64(o.duration) * o.speedup))
	}
	reqs := replay.Limit(all, o.maxRequests, before)
	reqs, truncated, err := replay.FitContext(reqs, maxCtx, o.truncate)
	if err != nil {
		return usageError{fmt.Errorf("%s: %v", tracePath, err)}
	}
	if len(reqs) == 0 {
		return usageError{fmt.Errorf("%s: no request to send (check --max-requests and --duration)", tracePath)}
	}
	if o.calibrate && o.grid == "trace" {
		grid = replay.TraceGrid(reqs, prof.MaxBatch)
	}

	var pr *printer
	if !o.quiet {
		pr = newPrinter(stderr)
	}
	// Calibrate before the run so that the engine is measured idle.
	predProf := prof
	if o.calibrate {
		cp, _, err := calibrateProfile(ctx, eng, grid, serveFlags{mode: string(prof.Mode), maxBatch: prof.MaxBatch, tokenBudget: prof.TokenBudget, overheadMS: prof.RequestOverheadMS}, "", o.quiet, stderr)
		if err != nil {
			return err
		}
		predProf = cp
	}
	profJSON, _ := json.Marshal(prof)
	meta := map[string]string{
		sim.MetaTrace: tracePath, sim.MetaPolicy: pol.Spec(), sim.MetaProfile: prof.Name,
		sim.MetaSeed: strconv.FormatUint(o.ef.seed, 10), sim.MetaSource: "replay",
		sim.MetaProfileJSON:      string(profJSON),
		"batchkit.replay.engine": info.Engine, "batchkit.replay.model": info.Model, "batchkit.replay.device": info.Device,
	}
	var w *sim.ResultWriter
	if o.out != "" {
		if w, err = sim.CreateResults(o.out, meta, o.force); err != nil {
			return err
		}
		defer w.Abort()
	}
	cfg := replay.Config{
		Engine: eng, Policy: pol, Profile: prof, Requests: reqs, Clients: o.clients, Think: o.think,
		Speedup: o.speedup, Duration: o.duration, Timeout: o.timeout, Drain: o.drain, Seed: o.ef.seed,
		Trim: trim, Trace: tracePath, Clock: replay.WallClock{Spin: o.spin},
	}
	var measuredRes, predictedRes []sim.Result
	cfg.Results = func(r *sim.Result) error {
		if o.plot != "" {
			measuredRes = append(measuredRes, *r)
		}
		if w != nil {
			return w.Write(r)
		}
		return nil
	}
	rep, runErr := runWatched(ctx, cfg, pr, "replay "+pol.Spec())
	// Whatever happened, keep what was measured.
	if w != nil {
		if err := w.Close(); err != nil {
			return err
		}
	}
	if o.steps != "" {
		if err := replay.WriteSteps(o.steps, rep.Steps, meta, o.force); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	out := report{Summary: rep.Summary, Engine: info, Dispatch: rep.Dispatch, Send: rep.Send, Steps: len(rep.Steps),
		Sent: rep.Sent, Unfinished: rep.Unfinished, Truncated: truncated}
	if len(rep.Steps) > 0 {
		var s int64
		for _, st := range rep.Steps {
			s += st.WallNS
		}
		out.StepWallMS = float64(s) / float64(len(rep.Steps)) / 1e6
	}
	sent := reqs[:rep.Sent]
	if !o.noBare && !rep.Interrupted && ctx.Err() == nil {
		bare := cfg
		bare.Policy, _ = policies.Parse("none")
		bare.Profile.RequestOverheadMS = 0
		bare.Requests, bare.Duration, bare.Results = sent, 0, nil
		brep, err := runWatched(ctx, bare, pr, "bare engine")
		if err != nil {
			return err
		}
		if !brep.Interrupted {
			out.SetOverhead(&brep.Summary)
		}
	}
	if o.predict && !rep.Interrupted {
		pol2, _ := policies.Parse(o.policy)
		var pw *sim.ResultWriter
		scfg := sim.Config{Profile: predProf, Policy: pol2, Clients: o.clients, Think: o.think, Speedup: o.speedup,
			Seed: o.ef.seed, Trim: trim, Total: int64(len(sent)), Trace: tracePath}
		pj, _ := json.Marshal(predProf)
		if o.predictOut != "" {
			pw, err = sim.CreateResults(o.predictOut, map[string]string{
				sim.MetaTrace: tracePath, sim.MetaPolicy: pol2.Spec(), sim.MetaProfile: predProf.Name,
				sim.MetaSeed: strconv.FormatUint(o.ef.seed, 10), sim.MetaSource: "simrun", sim.MetaProfileJSON: string(pj),
			}, o.force)
			if err != nil {
				return err
			}
			defer pw.Abort()
		}
		scfg.Results = func(r *sim.Result) error {
			if o.plot != "" {
				predictedRes = append(predictedRes, *r)
			}
			if pw != nil {
				return pw.Write(r)
			}
			return nil
		}
		ps, _, err := sim.Run(scfg, &sim.SliceSource{Reqs: sent})
		if err != nil {
			return err
		}
		if pw != nil {
			if err := pw.Close(); err != nil {
				return err
			}
		}
		out.Predicted = &ps
		out.Errors = replay.Compare(&ps, &rep.Summary)
		if o.plot != "" {
			if err := drawPanel(o.plot, pol.Spec(), measuredRes, predictedRes, o.force); err != nil {
				return err
			}
		}
	}
	if o.asJSON {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return printReport(stdout, &out)
}

func runWatched(ctx context.Context, cfg replay.Config, pr *printer, label string) (replay.Report, error) {
	if pr == nil {
		return replay.Run(ctx, cfg)
	}
	var p replay.Progress
	cfg.Progress = &p
	stop, finished := make(chan struct{}), make(chan struct{})
	go watch(pr, label, &p, stop, finished)
	rep, err := replay.Run(ctx, cfg)
	close(stop)
	<-finished
	return rep, err
}

func printReport(w io.Writer, r *report) error {
	s := &r.Summary
	ov := "n/a"
	if s.OverheadPct != nil {
		ov = fmt.Sprintf("%+.2f%%", *s.OverheadPct)
	}
	fmt.Fprintf(w, "policy %s  trace %s  profile %s  engine %s %s on %s\n", s.Policy, s.Trace, s.Profile, r.Engine.Engine, r.Engine.Model, r.Engine.Device)
	fmt.Fprintf(w, "requests %d  rejected %d  dropped %d  failed %d  trimmed %d  throughput %.1f tok/s %.3f req/s  makespan %.3f s  overhead vs bare engine %s\n",
		s.Requests, s.Rejected, s.Dropped, s.Failed, s.Trimmed, s.ThroughputTokS, s.ThroughputReqS, s.MakespanS, ov)
	fmt.Fprintf(w, "steps %d (mean wall %.3f ms)  dispatch lateness p50/p99/max %.1f/%.1f/%.1f µs (%d)  send lateness p50/p99/max %.1f/%.1f/%.1f µs (%d)\n",
		r.Steps, r.StepWallMS, r.Dispatch.P50US, r.Dispatch.P99US, r.Dispatch.MaxUS, r.Dispatch.Count, r.Send.P50US, r.Send.P99US, r.Send.MaxUS, r.Send.Count)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmean\tp50\tp90\tp95\tp99\tmax\t")
	for _, m := range s.Dists() {
		d := m.Dist
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", m.Name, d.Mean, d.P50, d.P90, d.P95, d.P99, d.Max)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "predicted (simulator, profile %s) vs measured:\n", r.Predicted.Profile)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tpredicted\tmeasured\terror ms\trel error\t")
		for _, e := range r.Errors {
			rel := "n/a"
			if e.RelErr != nil {
				rel = fmt.Sprintf("%+.1f%%", 100**e.RelErr)
			}
			fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%+.3f\t%s\t\n", e.Metric, e.Predicted, e.Measured, e.AbsErr, rel)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	return nil
}
