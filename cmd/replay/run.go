package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	grid, table                    string
	sweeps                         []string
	asJSON, force, noBare, quiet   bool
	predict, calibrate             bool
	changedMode, changedBatch      bool
	changedBudget, changedOverhead bool
	changedPolicy                  bool
}

func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := pflag.NewFlagSet("replay", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.ef.add(fs)
	o.sf.add(fs)
	fs.StringVar(&o.tracePath, "trace", "", "trace file (default "+defaultTrace+", found from the current directory up)")
	fs.StringVar(&o.policy, "policy", defaultPolicy, "policy spec; 'list' lists them")
	fs.StringArrayVar(&o.sweeps, "sweep", nil, "run a policy spec with one key=from..to/step range at each value, in order, on one engine (repeatable; replaces --policy)")
	fs.StringVar(&o.table, "table", "", "with --sweep: write the measured sweep table (simrun's format; with --predict also TABLE.predicted.parquet)")
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
	fs.BoolVar(&o.calibrate, "calibrate", false, "calibrate a profile on the spot (with --grid) for --predict; with --out it is kept as OUT.profile.json")
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
	o.changedPolicy = fs.Changed("policy")
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
	// StepCosts holds the engine's steps against the profile's step cost,
	// by kind of step (with --predict).
	StepCosts []replay.StepCheck `json:"step_costs,omitempty"`
	// Interrupted: Ctrl-C or SIGTERM cut the run short.
	Interrupted bool `json:"-"`
}

func doReplay(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if o.policy == "list" {
		return policies.List(stdout)
	}
	points, err := o.points()
	if err != nil {
		return err
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
	if len(o.sweeps) > 0 {
		if o.steps != "" || o.predictOut != "" || o.plot != "" {
			return usageError{errors.New("--steps, --predict-out and --plot name one run's files: with --sweep, --out names each run's (OUT_POLICY.parquet) and --table the sweep's; draw with simplot panel")}
		}
	} else if o.table != "" {
		return usageError{errors.New("--table writes a sweep table: add --sweep")}
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
	var tables []string
	if o.table != "" {
		tables = append(tables, o.table)
		if o.predict {
			tables = append(tables, stem(o.table)+".predicted.parquet")
		}
	}
	for _, pt := range points {
		for _, p := range append(append(o.files(pt, len(o.sweeps) > 0), o.profileOut()), tables...) {
			if p == "" || o.force {
				continue
			}
			if _, err := os.Stat(p); err == nil {
				return usageError{fmt.Errorf("%s: already exists (use --force to overwrite)", p)}
			}
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

	r := &runner{o: o, eng: eng, info: info, prof: prof, predProf: prof, reqs: reqs, truncated: truncated, trim: trim, tracePath: tracePath}
	if !o.quiet {
		r.pr = newPrinter(stderr)
	}
	// Calibrate before the run so that the engine is measured idle.
	if o.calibrate {
		sf := serveFlags{mode: string(prof.Mode), maxBatch: prof.MaxBatch, tokenBudget: prof.TokenBudget, overheadMS: prof.RequestOverheadMS}
		cp, _, err := calibrateProfile(ctx, eng, grid, sf, "", o.quiet, stderr)
		if err != nil {
			return err
		}
		if o.grid == "trace" {
			// Measure again where the first profile says the load runs.
			if d := r.loadDecode(points[0], cp); d != nil && !slices.Equal(d, grid.DecodeBatch) {
				if !o.quiet {
					fmt.Fprintf(stderr, "calibrate: the load decodes %v sequences at once (10th, 50th, 90th percentile); measuring those\n", d[1:])
				}
				grid.DecodeBatch = d
				if cp, _, err = calibrateProfile(ctx, eng, grid, sf, "", o.quiet, stderr); err != nil {
					return err
				}
			}
		}
		r.predProf = cp
		if p := o.profileOut(); p != "" {
			if err := writeProfile(p, cp, o.force); err != nil {
				return err
			}
		}
	}
	if len(o.sweeps) == 0 {
		out, err := r.run(ctx, points[0], o.files(points[0], false))
		if err != nil {
			return err
		}
		if o.asJSON {
			return printJSON(stdout, out)
		}
		return printReport(stdout, out)
	}
	var outs []*report
	var measured, predicted []sim.TableRow
	var runErr error
	for _, pt := range points {
		out, err := r.run(ctx, pt, o.files(pt, true))
		if err != nil {
			runErr = err
			break
		}
		if out.Interrupted {
			// A run cut short is kept in its results file, not in the
			// sweep, whose points would no longer be comparable.
			break
		}
		outs = append(outs, out)
		measured = append(measured, out.Summary.Row(pt.Param, pt.Value))
		if out.Predicted != nil {
			predicted = append(predicted, out.Predicted.Row(pt.Param, pt.Value))
		}
	}
	// The points measured before a failure still make their tables.
	if o.table != "" && len(measured) > 0 {
		err := sim.WriteTable(tables[0], measured, o.force)
		if err == nil && len(predicted) > 0 {
			err = sim.WriteTable(tables[1], predicted, o.force)
		}
		if err != nil && runErr != nil {
			return fmt.Errorf("%w; and the sweep table: %v", runErr, err)
		}
		if err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if o.asJSON {
		return printJSON(stdout, outs)
	}
	return printSweep(stdout, outs)
}

// points lists the runs: --policy's, or every point of the --sweep ranges.
func (o options) points() ([]sim.SweepPoint, error) {
	if len(o.sweeps) == 0 {
		if _, err := policies.Parse(o.policy); err != nil {
			return nil, usageError{fmt.Errorf("policy %s: %v", o.policy, err)}
		}
		return []sim.SweepPoint{{Spec: o.policy}}, nil
	}
	if o.changedPolicy {
		return nil, usageError{errors.New("--policy and --sweep both name the policies to run: give one")}
	}
	var points []sim.SweepPoint
	for _, sw := range o.sweeps {
		pts, err := sim.ExpandSweep(sw)
		if err != nil {
			return nil, usageError{err}
		}
		for _, pt := range pts {
			if _, err := policies.Parse(pt.Spec); err != nil {
				return nil, usageError{fmt.Errorf("sweep %s: %s: %v", sw, pt.Spec, err)}
			}
		}
		points = append(points, pts...)
	}
	return points, nil
}

// files are a run's output paths: results, steps, predicted results and
// plot. In a sweep each run's come from --out with the policy in the name.
func (o options) files(pt sim.SweepPoint, sweep bool) []string {
	out, steps, predicted := o.out, o.steps, o.predictOut
	if sweep && out != "" {
		out = stem(out) + "_" + slug(pt.Spec) + filepath.Ext(out)
	}
	if steps == "" && out != "" {
		steps = stem(out) + ".steps.parquet"
	}
	if predicted == "" && out != "" && o.predict {
		predicted = stem(out) + ".predicted.parquet"
	}
	return []string{out, steps, predicted, o.plot}
}

// profileOut is where --calibrate keeps its profile: next to --out, so
// that simrun can predict with it later.
func (o options) profileOut() string {
	if !o.calibrate || o.out == "" {
		return ""
	}
	return stem(o.out) + ".profile.json"
}

// slug makes a policy spec usable in a file name.
func slug(spec string) string {
	return strings.Map(func(r rune) rune {
		if r == ':' || r == '=' || r == ',' || r == '/' || r == ' ' {
			return '_'
		}
		return r
	}, spec)
}

// runner runs one policy after another on one engine and request list.
type runner struct {
	o              options
	eng            realengine.Engine
	info           realengine.Info
	prof, predProf sim.Profile
	reqs           []trace.Request
	truncated      int
	trim           sim.Trim
	tracePath      string
	pr             *printer
	bare           *sim.Summary // the bare-engine run, once made
	bareSent       int
}

// run replays the requests under one policy (files: results, steps,
// predicted results, plot; "" writes none) and predicts it when asked.
func (r *runner) run(ctx context.Context, pt sim.SweepPoint, files []string) (*report, error) {
	o := r.o
	outPath, stepsPath, predictPath, plotPath := files[0], files[1], files[2], files[3]
	pol, err := policies.Parse(pt.Spec)
	if err != nil {
		return nil, usageError{err}
	}
	profJSON, _ := json.Marshal(r.prof)
	meta := map[string]string{
		sim.MetaTrace: r.tracePath, sim.MetaPolicy: pol.Spec(), sim.MetaProfile: r.prof.Name,
		sim.MetaSeed: strconv.FormatUint(o.ef.seed, 10), sim.MetaSource: "replay",
		sim.MetaProfileJSON:      string(profJSON),
		"batchkit.replay.engine": r.info.Engine, "batchkit.replay.model": r.info.Model, "batchkit.replay.device": r.info.Device,
	}
	var w *sim.ResultWriter
	if outPath != "" {
		if w, err = sim.CreateResults(outPath, meta, o.force); err != nil {
			return nil, err
		}
		defer w.Abort()
	}
	cfg := replay.Config{
		Engine: r.eng, Policy: pol, Profile: r.prof, Requests: r.reqs, Clients: o.clients, Think: o.think,
		Speedup: o.speedup, Duration: o.duration, Timeout: o.timeout, Drain: o.drain, Seed: o.ef.seed,
		Trim: r.trim, Trace: r.tracePath, Clock: replay.WallClock{Spin: o.spin},
	}
	var measuredRes, predictedRes []sim.Result
	cfg.Results = func(res *sim.Result) error {
		if plotPath != "" {
			measuredRes = append(measuredRes, *res)
		}
		if w != nil {
			return w.Write(res)
		}
		return nil
	}
	rep, runErr := runWatched(ctx, cfg, r.pr, "replay "+pol.Spec())
	// Whatever happened, keep what was measured.
	if w != nil {
		if err := w.Close(); err != nil {
			return nil, err
		}
	}
	if stepsPath != "" {
		if err := replay.WriteSteps(stepsPath, rep.Steps, meta, o.force); err != nil {
			return nil, err
		}
	}
	if runErr != nil {
		return nil, runErr
	}
	out := &report{Summary: rep.Summary, Engine: r.info, Dispatch: rep.Dispatch, Send: rep.Send, Steps: len(rep.Steps),
		Sent: rep.Sent, Unfinished: rep.Unfinished, Truncated: r.truncated, Interrupted: rep.Interrupted}
	if len(rep.Steps) > 0 {
		var s int64
		for _, st := range rep.Steps {
			s += st.WallNS
		}
		out.StepWallMS = float64(s) / float64(len(rep.Steps)) / 1e6
	}
	sent := r.reqs[:rep.Sent]
	if !o.noBare && !rep.Interrupted && ctx.Err() == nil {
		// One bare run serves every policy that sent the same requests.
		if r.bare == nil || r.bareSent != rep.Sent {
			bare := cfg
			bare.Policy, _ = policies.Parse("none")
			bare.Profile.RequestOverheadMS = 0
			bare.Requests, bare.Duration, bare.Results = sent, 0, nil
			brep, err := runWatched(ctx, bare, r.pr, "bare engine")
			if err != nil {
				return nil, err
			}
			r.bare, r.bareSent = nil, 0
			if !brep.Interrupted {
				r.bare, r.bareSent = &brep.Summary, rep.Sent
			}
		}
		if r.bare != nil {
			out.SetOverhead(r.bare)
		}
	}
	if o.predict && !rep.Interrupted {
		var pw *sim.ResultWriter
		// Policies keep state: the simulator gets its own.
		spol, _ := policies.Parse(pt.Spec)
		scfg := sim.Config{Profile: r.predProf, Policy: spol, Clients: o.clients, Think: o.think, Speedup: o.speedup,
			Seed: o.ef.seed, Trim: r.trim, Total: int64(len(sent)), Trace: r.tracePath}
		pj, _ := json.Marshal(r.predProf)
		if predictPath != "" {
			pw, err = sim.CreateResults(predictPath, map[string]string{
				sim.MetaTrace: r.tracePath, sim.MetaPolicy: pol.Spec(), sim.MetaProfile: r.predProf.Name,
				sim.MetaSeed: strconv.FormatUint(o.ef.seed, 10), sim.MetaSource: "simrun", sim.MetaProfileJSON: string(pj),
			}, o.force)
			if err != nil {
				return nil, err
			}
			defer pw.Abort()
		}
		scfg.Results = func(res *sim.Result) error {
			if plotPath != "" {
				predictedRes = append(predictedRes, *res)
			}
			if pw != nil {
				return pw.Write(res)
			}
			return nil
		}
		ps, _, err := sim.Run(scfg, &sim.SliceSource{Reqs: sent})
		if err != nil {
			return nil, err
		}
		if pw != nil {
			if err := pw.Close(); err != nil {
				return nil, err
			}
		}
		out.Predicted = &ps
		out.Errors = replay.Compare(&ps, &rep.Summary)
		out.StepCosts = replay.CheckSteps(rep.Steps, r.predProf.Step)
		if plotPath != "" {
			if err := drawPanel(plotPath, pol.Spec(), measuredRes, predictedRes, o.force); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// loadDecode simulates the requests under pt's policy with prof and
// returns the decode batch sizes they run at (replay.LoadDecode).
func (r *runner) loadDecode(pt sim.SweepPoint, prof sim.Profile) []int {
	pol, err := policies.Parse(pt.Spec)
	if err != nil {
		return nil
	}
	var res []sim.Result
	cfg := sim.Config{Profile: prof, Policy: pol, Clients: r.o.clients, Think: r.o.think, Speedup: r.o.speedup,
		Seed: r.o.ef.seed, Total: int64(len(r.reqs)), Trace: r.tracePath,
		Results: func(x *sim.Result) error { res = append(res, *x); return nil }}
	if _, _, err := sim.Run(cfg, &sim.SliceSource{Reqs: r.reqs}); err != nil {
		return nil
	}
	return replay.LoadDecode(res, min(prof.MaxBatch, 32))
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printSweep prints one line per run with the prediction errors, so a
// sweep reads as a curve; --json gives every statistic.
func printSweep(w io.Writer, outs []*report) error {
	if len(outs) == 0 {
		_, err := fmt.Fprintln(w, "no run finished")
		return err
	}
	s0 := &outs[0].Summary
	fmt.Fprintf(w, "trace %s  profile %s  engine %s %s on %s  (ms; predicted error in brackets)\n", s0.Trace, s0.Profile, outs[0].Engine.Engine, outs[0].Engine.Model, outs[0].Engine.Device)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\twait mean\tttft mean\tttft p95\tlatency mean\tlatency p95\toverhead\tdispatch p99 µs\t")
	for _, r := range outs {
		s := &r.Summary
		errs := map[string]replay.MetricError{}
		for _, e := range r.Errors {
			errs[e.Metric] = e
		}
		cell := func(metric string, v float64) string {
			e, ok := errs[metric]
			switch {
			case !ok:
				return fmt.Sprintf("%.3f", v)
			case strings.HasPrefix(metric, "window_wait"):
				return fmt.Sprintf("%.3f [%+.3f ms]", v, e.AbsErr)
			case e.RelErr == nil:
				return fmt.Sprintf("%.3f [n/a]", v)
			}
			return fmt.Sprintf("%.3f [%+.1f%%]", v, 100**e.RelErr)
		}
		ov := "n/a"
		if s.OverheadPct != nil {
			ov = fmt.Sprintf("%+.2f%%", *s.OverheadPct)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t\n", s.Policy, cell("window_wait_ms.mean", s.WindowWaitMS.Mean),
			cell("ttft_ms.mean", s.TTFTMS.Mean), cell("ttft_ms.p95", s.TTFTMS.P95), cell("latency_ms.mean", s.LatencyMS.Mean),
			cell("latency_ms.p95", s.LatencyMS.P95), ov, r.Dispatch.P99US)
	}
	return tw.Flush()
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
	if len(r.StepCosts) > 0 {
		fmt.Fprintln(w, "engine steps vs the profile's step cost (a miss in every kind is the engine's speed in this run):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tsteps\tmeasured ms\tpredicted ms\trel error\t")
		for _, c := range r.StepCosts {
			fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%+.1f%%\t\n", c.Kind, c.Steps, c.MeasuredMS, c.PredictedMS, 100*c.RelErr())
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
