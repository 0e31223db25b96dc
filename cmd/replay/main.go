// Command replay runs batching policies in wall-clock time against a real
// engine (package replay), compares the measurement with the simulator's
// prediction, and calibrates simulator profiles from an engine.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/batchkit/batchkit/realengine"
	"github.com/batchkit/batchkit/replay"
	"github.com/batchkit/batchkit/sim"
	"github.com/spf13/pflag"
)

func main() {
	// The driver loop must find a free P the moment its timer fires. The
	// cpu engine's compute goroutines never block, so with one P per core
	// they would hold every P until the runtime preempts them (10 ms),
	// and dispatches would be that late. One P more than the engine uses
	// keeps the loop on time; the OS shares the cores.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.NumCPU() + 1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runCtx(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the command without signal handling, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	return runCtx(context.Background(), args, stdout, stderr)
}

const usage = `replay: run batching policies against a real engine in wall-clock time

Usage:
  replay [--trace F] [--policy SPEC] [--engine cpu|mlx] [--model PRESET|DIR]
         [--device cpu|gpu] [--dtype float32|float16|bfloat16] [--quantize 4|8]
         [--profile NAME|FILE | --mode M --max-batch N] [--clients N --think D]
         [--speedup X] [--max-requests N] [--duration D] [--timeout D]
         [--out results.parquet] [--steps steps.parquet] [--json] [--force]
         [--predict [--calibrate] [--predict-out F] [--plot out.png]]
  replay --sweep 'fixed:window=1ms..8ms/1ms' [--sweep ...] [--table sweep.parquet] [flags above]
  replay calibrate --engine cpu --model small --out profile.json [--grid SPEC]

The serving model (mode, max_batch, token budget, per-request overhead)
comes from --profile, or from --mode/--max-batch/--token-budget/--overhead-ms;
step times come from the engine. Every run is compared with the bare engine
(policy none, no per-request overhead) on the same requests in the same
process: overhead_pct (skip with --no-bare). Ctrl-C or SIGTERM stops sending,
finishes the step in flight (or drains for --drain) and still writes every
finished request and the summary.

--sweep runs each value of a range in turn on the same engine (loaded and
warmed once; one bare run serves all), prints one line per run with the
prediction errors, writes each run's files as OUT_POLICY.parquet and, with
--table, the measured sweep table (and TABLE.predicted.parquet with --predict)
in simrun's format, so that simplot sweep and simplot panel --sweep-measured
draw them.

Examples:
  replay --model tiny --trace traces/seed-50q.parquet --clients 1 --policy none
  replay --model small --policy fixed:window=2ms --max-requests 200 --out r.parquet
  replay calibrate --engine cpu --model small --out small.json --grid small
  replay --model small --profile small.json --policy fastpath:window=2ms --predict --plot cmp.png
  replay --model tiny --calibrate --predict --max-requests 100 --truncate --json
  replay --model tiny --trace traces/poisson-moderate.parquet --speedup 20 --max-requests 100 --truncate \
      --sweep 'fixed:window=1ms..4ms/1ms' --sweep 'fastpath:window=1ms..4ms/1ms' \
      --calibrate --grid trace --predict --out sw.parquet --table sw-table.parquet

Flags:
`

const calibrateUsage = `replay calibrate: measure an engine's step times and write a simulator profile

Usage:
  replay calibrate --engine cpu --model PRESET|DIR --out profile.json [--grid SPEC]
         [--device cpu|gpu] [--dtype T] [--quantize 4|8] [--mode continuous] [--max-batch 32] [--overhead-ms 0] [--force]

The grid is 'default', 'small', or keys such as
'prefill=0,16,64;decode=0,1,4,16;context=16,128;warmup=2;repeats=5;seed=1'
(keys left out keep the default grid's values). 'vary=true' measures the
shapes a trace brings instead of repeating them: every prefill a prompt length
not measured before, and decoding contexts spread over half to one and a half
times each context, so per-shape costs (kernel and plan building on a GPU) and
mixed-length batching land in the profile. The fit is linear in base, per
prompt, per prompt token, per prompt token squared (attention; with three or
more prompt lengths), per decoding sequence and per context token: give
decode sizes around the batch sizes your load runs at (on the cpu engine,
'prefill=0,64,256,512;decode=0,1,2,4,8,16;context=128,512' instead of the
default took a continuous-batching replay's latency error from about -35 % to
-3..-6 %), or let replay --calibrate --grid trace draw the grid from the
requests it replays (and measure again at the batch sizes a first fit says
the load runs at). It prints R², the median and the maximum relative error of
the fit.

Examples:
  replay calibrate --engine cpu --model small --out small.json
  replay calibrate --model tiny --grid small --out tiny.json --max-batch 16
  replay calibrate --engine mlx --model llama-3.2-1b --dtype bfloat16 --quantize 4 --out l1b.json
  replay calibrate --engine mlx --model llama-3.2-1b --grid 'vary=true' --out l1b-trace.json

Flags:
`

const (
	exitUsage     = 2
	defaultTrace  = "traces/default.parquet"
	defaultPolicy = "none"
)

type usageError struct{ error }

type engineFlags struct {
	engine, model, device, dtype  string
	compile                       string
	maxContext, threads, quantize int
	seed                          uint64
}

func (e *engineFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&e.engine, "engine", "cpu", "engine: cpu or mlx (mlx needs a build with -tags mlx)")
	fs.StringVar(&e.model, "model", "small", "model preset ("+strings.Join(realengine.PresetNames(), ", ")+") or model directory")
	fs.StringVar(&e.device, "device", "", "engine device: cpu or gpu (default: mlx takes the GPU when MLX has one)")
	fs.StringVar(&e.dtype, "dtype", "", "mlx engine: weight and activation type, "+strings.Join(realengine.DTypeNames(), ", ")+" (default float32 on CPU, bfloat16 on GPU)")
	fs.StringVar(&e.compile, "compile", "", "mlx engine: replay each decode step as one compiled MLX function, on or off (default: on for the CPU; off on a GPU, where each new batch shape traces and compiles again)")
	fs.IntVar(&e.quantize, "quantize", 0, "mlx engine: quantise the model's matrices on load to 4 or 8 bits, group size 64 (0: as loaded)")
	fs.IntVar(&e.maxContext, "max-context", 0, "cap tokens per sequence (0: the model's limit)")
	fs.IntVar(&e.threads, "threads", 0, "cpu engine threads (0: one per CPU, less one for the driver loop from 4 CPUs up)")
	fs.Uint64Var(&e.seed, "seed", 1, "seed of random weights, prompt token ids and the simulator's jitter")
}

func (e *engineFlags) open() (realengine.Engine, error) {
	threads := e.threads
	if threads == 0 {
		// Leave one P to the driver loop (see main), and from 4 cores up a
		// core too: on an idle 16-core host 16 threads and the spinning
		// loop made dispatch p99 180 µs, 15 threads 19 and 52 µs.
		threads = max(1, runtime.GOMAXPROCS(0)-1)
		if threads >= 4 {
			threads--
		}
	}
	eng, err := realengine.Open(e.engine, realengine.Options{Model: e.model, Seed: e.seed, Device: e.device, DType: e.dtype, Quantize: e.quantize, Compile: e.compile, MaxContext: e.maxContext, Threads: threads})
	if err != nil {
		return nil, usageError{err}
	}
	return eng, nil
}

type serveFlags struct {
	mode        string
	maxBatch    int
	tokenBudget int64
	overheadMS  float64
}

func (s *serveFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&s.mode, "mode", "continuous", "engine mode: sequential, static or continuous")
	fs.IntVar(&s.maxBatch, "max-batch", 32, "most sequences in the engine at once")
	fs.Int64Var(&s.tokenBudget, "token-budget", 0, "continuous mode: cap on prompt+decode tokens per step (0: none)")
	fs.Float64Var(&s.overheadMS, "overhead-ms", 0, "fixed per-request overhead before the policy's queue, in ms")
}

func runCtx(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "calibrate" {
		return calibrateCmd(ctx, args[1:], stdout, stderr)
	}
	return replayCmd(ctx, args, stdout, stderr)
}

// parseFlags parses args into fs (with --help added). done says the
// command must return code at once: its help was shown (0) or the
// arguments were wrong (exitUsage, one line on stderr).
func parseFlags(fs *pflag.FlagSet, args []string, name, usage string, stdout, stderr io.Writer) (code int, done bool) {
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "%s: %v (see %s --help)\n", name, err, name)
		return exitUsage, true
	}
	if *help {
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (see %s --help)\n", name, fs.Arg(0), name)
		return exitUsage, true
	}
	return 0, false
}

func fail(stderr io.Writer, prefix string, err error) int {
	fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return 1
}

func calibrateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var ef engineFlags
	var sf serveFlags
	var out, grid, name string
	var force, quiet, asJSON bool
	fs := pflag.NewFlagSet("replay calibrate", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ef.add(fs)
	sf.add(fs)
	fs.StringVar(&out, "out", "", "profile JSON to write (required)")
	fs.StringVar(&grid, "grid", "default", "measurement grid: default, small, or key=values;... (see above)")
	fs.StringVar(&name, "name", "", "profile name (default ENGINE-MODEL)")
	fs.BoolVar(&force, "force", false, "overwrite an existing --out")
	fs.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	fs.BoolVar(&asJSON, "json", false, "print the fit as JSON")
	if code, done := parseFlags(fs, args, "replay calibrate", calibrateUsage, stdout, stderr); done {
		return code
	}
	if out == "" {
		fmt.Fprintf(stderr, "replay calibrate: --out is required (see replay calibrate --help)\n")
		return exitUsage
	}
	if err := calibrate(ctx, ef, sf, out, grid, name, force, quiet, asJSON, stdout, stderr); err != nil {
		return fail(stderr, "replay calibrate", err)
	}
	return 0
}

func calibrate(ctx context.Context, ef engineFlags, sf serveFlags, out, gridSpec, name string, force, quiet, asJSON bool, stdout, stderr io.Writer) error {
	g, err := replay.ParseGrid(gridSpec, realengine.DefaultGrid())
	if err != nil {
		return usageError{err}
	}
	if !force {
		if _, err := os.Stat(out); err == nil {
			return usageError{fmt.Errorf("%s: already exists (use --force to overwrite)", out)}
		}
	}
	if err := checkServe(sf); err != nil {
		return err
	}
	eng, err := ef.open()
	if err != nil {
		return err
	}
	defer eng.Close()
	prof, cal, err := calibrateProfile(ctx, eng, g, sf, name, quiet, stderr)
	if err != nil {
		return err
	}
	if err := writeProfile(out, prof, force); err != nil {
		return err
	}
	if asJSON {
		b, _ := json.MarshalIndent(map[string]any{"profile": prof, "r2": cal.Fit.R2, "median_rel_err": cal.Fit.MedianRelErr, "max_rel_err": cal.Fit.MaxRelErr, "jitter_cv": cal.JitterCV, "points": len(cal.Points)}, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return nil
	}
	fmt.Fprintf(stdout, "wrote %s: %d points in %v; R² %.4f, median rel err %.2f%%, max rel err %.2f%%, jitter_cv %.3f\n",
		out, len(cal.Points), cal.Elapsed.Round(time.Millisecond), cal.Fit.R2, 100*cal.Fit.MedianRelErr, 100*cal.Fit.MaxRelErr, cal.JitterCV)
	fmt.Fprintf(stdout, "step ms = %.4g + %.4g·S + %.4g·P + %.4g·Q + %.4g·D + %.4g·K  (S prompts of P tokens, Q their squares, D decoding with K context)\n",
		prof.Step.BaseMS, prof.Step.PerPrefillSeqMS, prof.Step.PerPrefillTokenMS, prof.Step.PerPrefillTokenSqMS, prof.Step.PerDecodeSeqMS, prof.Step.PerKVTokenMS)
	return nil
}

func checkServe(sf serveFlags) error {
	switch sim.Mode(sf.mode) {
	case sim.Sequential, sim.Static, sim.Continuous:
	default:
		return usageError{fmt.Errorf("--mode %q: want sequential, static or continuous", sf.mode)}
	}
	if sf.maxBatch < 1 || sf.tokenBudget < 0 || sf.overheadMS < 0 || math.IsNaN(sf.overheadMS) {
		return usageError{fmt.Errorf("--max-batch must be at least 1, --token-budget and --overhead-ms not negative")}
	}
	return nil
}

func calibrateProfile(ctx context.Context, eng realengine.Engine, g realengine.CalibrationGrid, sf serveFlags, name string, quiet bool, stderr io.Writer) (sim.Profile, *realengine.Calibration, error) {
	var progress func(done, total int)
	if !quiet {
		pr := newPrinter(stderr)
		progress = func(done, total int) { pr.line(fmt.Sprintf("calibrating: %d/%d points", done, total), done == total) }
	}
	cal, err := realengine.Calibrate(ctx, eng, g, progress)
	if err != nil {
		return sim.Profile{}, nil, err
	}
	prof, err := replay.ProfileFromCalibration(cal, replay.ProfileOptions{Name: name, Mode: sim.Mode(sf.mode), MaxBatch: sf.maxBatch, TokenBudget: sf.tokenBudget, RequestOverheadMS: sf.overheadMS})
	return prof, cal, err
}

func writeProfile(path string, p sim.Profile, force bool) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'), force)
}

// writeFile writes through a temporary file in the same directory.
func writeFile(path string, data []byte, force bool) error {
	if !force {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%s: already exists (use --force to overwrite)", path)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	_ = f.Chmod(0o644) // CreateTemp makes it 0600; outputs are for others to read
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("%s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("%s: %v", path, err)
	}
	return os.Rename(f.Name(), path)
}

func stem(p string) string { return strings.TrimSuffix(p, filepath.Ext(p)) }
