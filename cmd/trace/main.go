// Command trace makes, imports, checks and summarises request traces in the
// project's Parquet format (package trace).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/batchkit/batchkit/trace"
	"github.com/spf13/pflag"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `trace: Parquet request traces for batchkit

Usage:
  trace gen      --arrivals KIND [flags] --out FILE   generate a synthetic trace
  trace import   --format FORMAT [flags] --out FILE SOURCE
                                                      convert a public trace
  trace stats    [--json] FILE                        summarise a trace
  trace validate FILE...                              check traces, exit 2 on the first bad one
  trace sort     --out FILE IN                        sort a trace by arrival
  trace head     [-n N] [--json] FILE                 print the first rows

Run 'trace COMMAND --help' for a command's flags and examples.

Examples:
  trace gen --arrivals poisson --rate 200 --n 200000 --input const:1 --output const:1 --seed 7 --out /tmp/p.parquet
  trace stats --json /tmp/p.parquet
  trace import --format azure --out conv.parquet AzureLLMInferenceTrace_conv.csv
`

// exitUsage is the exit status for usage errors and bad input.
const exitUsage = 2

// run is the whole command; main only supplies the process's arguments and
// streams. It returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmds := map[string]func([]string, io.Writer) error{
		"gen": cmdGen, "import": cmdImport, "stats": cmdStats,
		"validate": cmdValidate, "sort": cmdSort, "head": cmdHead,
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "trace: unknown command %q (want gen, import, stats, validate, sort or head; see trace --help)\n", name)
		return exitUsage
	}
	err := cmd(args[1:], stdout)
	if err == nil {
		return 0
	}
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	// One line, whatever the error wrapped.
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(stderr, "trace %s: %s\n", name, msg)
	var we *writeError
	if errors.As(err, &we) {
		return 1
	}
	return exitUsage
}

// writeError marks a failure to write output (disk full, permissions), as
// opposed to bad input: exit status 1.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// outputErr classifies an error from writing path.
func outputErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w (use --force to replace it)", err)
	}
	var te *trace.Error
	if errors.As(err, &te) {
		return err
	}
	return &writeError{err}
}

// newFlags makes a flag set that reports errors instead of printing and
// prints help (with examples) to stdout.
func newFlags(name, synopsis, examples string, stdout io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: trace %s\n\nFlags:\n", synopsis)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		fmt.Fprintf(stdout, "\nExamples:\n%s", examples)
	}
	return fs
}

// parse parses flags; on --help pflag itself prints the usage and parse
// returns pflag.ErrHelp.
func parse(fs *pflag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%v (see trace %s --help)", err, fs.Name())
	}
	return nil
}

func cmdGen(args []string, stdout io.Writer) error {
	fs := newFlags("gen", "gen --arrivals KIND [flags] --out FILE", `  # the issue's example: 200 req/s Poisson, 200,000 one-token requests
  trace gen --arrivals poisson --rate 200 --n 200000 --input const:1 --output const:1 --seed 7 --out /tmp/p.parquet
  # bursty: gamma gaps with CV 4, realistic prompt and answer lengths
  trace gen --arrivals gamma --rate 5 --cv 4 --n 5000 --input lognormal:mean=1000,cv=1 --output lognormal:mean=200,cv=1.2 --out g.parquet
  # on/off: 20 req/s for ~10 s, silent for ~30 s
  trace gen --arrivals onoff --rate 20 --on 10s --off 30s --n 3000 --input exp:mean=500 --output exp:mean=150 --out b.parquet
  # 50 questions sent one after another by a closed-loop client
  trace gen --arrivals closed --n 50 --input const:24 --output const:50 --out q.parquet
  # resample the lengths of an imported trace
  trace gen --arrivals poisson --rate 4 --n 1000 --input empirical:conv.parquet --output empirical:conv.parquet --out e.parquet
`, stdout)
	var cfg trace.GenConfig
	var in, out, path, name string
	var force bool
	fs.StringVar(&cfg.Arrivals, "arrivals", "", "arrival process: "+strings.Join(trace.ArrivalKinds, ", "))
	fs.Float64Var(&cfg.Rate, "rate", 0, "mean requests per second (poisson, gamma, fixed; the on-state rate for onoff)")
	fs.Float64Var(&cfg.CV, "cv", 1, "gamma: coefficient of variation of the gaps (1 = Poisson, >1 burstier)")
	fs.Float64Var(&cfg.OffRate, "off-rate", 0, "onoff: requests per second while off")
	fs.DurationVar(&cfg.On, "on", 10*time.Second, "onoff: mean length of an on period")
	fs.DurationVar(&cfg.Off, "off", 30*time.Second, "onoff: mean length of an off period")
	fs.IntVar(&cfg.N, "n", 0, "number of requests")
	fs.StringVar(&in, "input", "", "input-token spec: const:N, uniform:A,B, exp:mean=M, lognormal:mean=M,cv=C, empirical:FILE")
	fs.StringVar(&out, "output", "", "output-token spec (counts the first token), same forms as --input")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed; the same flags and seed give a byte-identical file")
	fs.StringVar(&path, "out", "", "output Parquet file")
	fs.StringVar(&name, "name", "", "trace name stored in the metadata (default: the file name)")
	fs.BoolVar(&force, "force", false, "replace --out if it exists")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see trace gen --help)", fs.Arg(0))
	}
	for flag, v := range map[string]string{"arrivals": cfg.Arrivals, "input": in, "output": out, "out": path} {
		if v == "" {
			return fmt.Errorf("--%s is required (see trace gen --help)", flag)
		}
	}
	var err error
	if cfg.Input, err = trace.ParseTokenDist(in, trace.Input); err != nil {
		return fmt.Errorf("--input: %w", err)
	}
	if cfg.Output, err = trace.ParseTokenDist(out, trace.Output); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	if err := cfg.Check(); err != nil {
		return err
	}
	return outputErr(trace.GenerateFile(path, cfg, trace.Metadata{Name: nameOr(name, path)}, trace.Overwrite(force)))
}

func nameOr(name, path string) string {
	if name != "" {
		return name
	}
	base := path[strings.LastIndexByte(path, '/')+1:]
	return strings.TrimSuffix(base, ".parquet")
}

func cmdImport(args []string, stdout io.Writer) error {
	fs := newFlags("import", "import --format FORMAT [flags] --out FILE SOURCE", `  trace import --format azure --out code.parquet AzureLLMInferenceTrace_code.csv
  trace import --format mooncake --spread --out mc.parquet synthetic_trace.jsonl
  trace import --format burstgpt --keep-zero-output --out burst.parquet BurstGPT_1.csv
  # any CSV: name the columns, say the unit of numeric times
  trace import --format csv --map arrival=ts --map input=prompt_len --map output=gen_len --time-unit 1s --out x.parquet log.csv
  # JSON lines with RFC 3339 times
  trace import --format jsonl --map arrival=time --map input=in --map output=out --time-layout 2006-01-02T15:04:05.999999999Z07:00 --out y.parquet log.jsonl
`, stdout)
	var opt trace.ImportOptions
	var path string
	var force, asJSON bool
	var maps []string
	fs.StringVar(&opt.Format, "format", "", "source format: "+strings.Join(trace.ImportFormats, ", "))
	fs.StringVar(&path, "out", "", "output Parquet file")
	fs.BoolVar(&opt.Spread, "spread", false, "spread requests sharing one source timestamp evenly over the time quantum")
	fs.DurationVar(&opt.Quantum, "quantum", 0, "source timestamp resolution, overriding the format's (azure 100ns, mooncake 1ms, burstgpt 1s)")
	fs.BoolVar(&opt.KeepZeroOutput, "keep-zero-output", false, "keep rows with 0 output tokens as 1-token requests with class suffix |zero-output (default: drop and count them)")
	fs.StringArrayVar(&maps, "map", nil, "csv/jsonl: FIELD=COLUMN, FIELD one of "+strings.Join(trace.MapFields, ", ")+" (arrival, input, output required); repeatable")
	fs.DurationVar(&opt.TimeUnit, "time-unit", time.Millisecond, "csv/jsonl: unit of numeric arrival and deadline values")
	fs.StringVar(&opt.TimeLayout, "time-layout", "", "csv/jsonl: parse arrival and deadline as text with this Go time layout")
	fs.StringVar(&opt.Name, "name", "", "trace name stored in the metadata (default: the source file name)")
	fs.BoolVar(&force, "force", false, "replace --out if it exists")
	fs.BoolVar(&asJSON, "json", false, "print the import report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want exactly one SOURCE file, got %d (see trace import --help)", fs.NArg())
	}
	if opt.Format == "" || path == "" {
		return fmt.Errorf("--format and --out are required (see trace import --help)")
	}
	if opt.TimeUnit <= 0 {
		return fmt.Errorf("--time-unit %v must be positive", opt.TimeUnit)
	}
	for _, m := range maps {
		k, v, ok := strings.Cut(m, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("--map %q: want FIELD=COLUMN", m)
		}
		if opt.Map == nil {
			opt.Map = map[string]string{}
		}
		opt.Map[k] = v
	}
	imp, err := trace.ImportFile(fs.Arg(0), opt)
	if err != nil {
		return err
	}
	if err := outputErr(trace.WriteFile(path, imp.Meta, imp.Requests, trace.Overwrite(force))); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(stdout, imp.Report)
	}
	r := imp.Report
	fmt.Fprintf(stdout, "%s: %d of %d rows imported", path, r.Kept, r.Rows)
	if r.Reordered {
		fmt.Fprint(stdout, ", sorted by arrival")
	}
	if r.Spread > 0 {
		fmt.Fprintf(stdout, ", %d spread within the quantum", r.Spread)
	}
	fmt.Fprintln(stdout)
	for _, k := range sortedKeys(r.Dropped) {
		fmt.Fprintf(stdout, "  dropped %d: %s\n", r.Dropped[k], k)
	}
	for _, k := range sortedKeys(r.Flagged) {
		fmt.Fprintf(stdout, "  flagged %d: %s\n", r.Flagged[k], k)
	}
	return nil
}

func sortedKeys(m map[string]int) []string { return slices.Sorted(maps.Keys(m)) }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func oneFile(fs *pflag.FlagSet) (string, error) {
	if fs.NArg() != 1 {
		return "", fmt.Errorf("want exactly one FILE, got %d (see trace %s --help)", fs.NArg(), fs.Name())
	}
	return fs.Arg(0), nil
}

func cmdStats(args []string, stdout io.Writer) error {
	fs := newFlags("stats", "stats [--json] FILE", `  trace stats traces/default.parquet
  trace stats --json /tmp/p.parquet | jq .rate_per_s
`, stdout)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	path, err := oneFile(fs)
	if err != nil {
		return err
	}
	s, err := trace.StatsFile(path)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, s)
	}
	return s.WriteTable(stdout)
}

func cmdValidate(args []string, stdout io.Writer) error {
	fs := newFlags("validate", "validate FILE...", `  trace validate traces/*.parquet
`, stdout)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("want at least one FILE (see trace validate --help)")
	}
	for _, path := range fs.Args() {
		s, err := trace.StatsFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok, %d requests over %.3f s\n", path, s.Requests, s.SpanS)
	}
	return nil
}

func cmdSort(args []string, stdout io.Writer) error {
	fs := newFlags("sort", "sort --out FILE IN", `  trace sort --out fixed.parquet unsorted.parquet
`, stdout)
	path := fs.String("out", "", "output Parquet file (may not be IN unless --force)")
	force := fs.Bool("force", false, "replace --out if it exists")
	if err := parse(fs, args); err != nil {
		return err
	}
	in, err := oneFile(fs)
	if err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("--out is required (see trace sort --help)")
	}
	reordered, err := trace.SortFile(in, *path, trace.Overwrite(*force))
	if err != nil {
		return outputErr(err)
	}
	if reordered {
		fmt.Fprintf(stdout, "%s: sorted by arrival\n", *path)
	} else {
		fmt.Fprintf(stdout, "%s: already in arrival order; copied\n", *path)
	}
	return nil
}

// headRow is a row as JSON: optional facts omitted when null.
type headRow struct {
	RequestID      int64   `json:"request_id"`
	ArrivalNS      int64   `json:"arrival_ns"`
	InputTokens    int32   `json:"input_tokens"`
	OutputTokens   int32   `json:"output_tokens"`
	SessionID      *int64  `json:"session_id,omitempty"`
	RequestClass   *string `json:"request_class,omitempty"`
	PrefixBlockIDs []int64 `json:"prefix_block_ids,omitempty"`
	Priority       *int32  `json:"priority,omitempty"`
	DeadlineNS     *int64  `json:"deadline_ns,omitempty"`
}

func cmdHead(args []string, stdout io.Writer) error {
	fs := newFlags("head", "head [-n N] [--json] FILE", `  trace head traces/default.parquet
  trace head -n 3 --json traces/seed-50q.parquet
`, stdout)
	n := fs.IntP("n", "n", 10, "number of rows")
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	path, err := oneFile(fs)
	if err != nil {
		return err
	}
	if *n < 0 {
		return fmt.Errorf("-n %d must not be negative", *n)
	}
	r, err := trace.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	buf := make([]trace.Request, min(*n, 4096))
	var tw *tabwriter.Writer
	enc := json.NewEncoder(stdout)
	if !*asJSON {
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "request_id\tarrival_s\tinput\toutput\tsession\tclass\tprefix_blocks\tpriority\tdeadline_s\t")
	}
	for left := *n; left > 0; {
		k, err := r.Read(buf[:min(left, len(buf))])
		for _, q := range buf[:k] {
			if *asJSON {
				if err := enc.Encode(headRow(q)); err != nil {
					return &writeError{err}
				}
				continue
			}
			fmt.Fprintf(tw, "%d\t%.9f\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t\n", q.RequestID, float64(q.ArrivalNS)/1e9,
				q.InputTokens, q.OutputTokens, opt(q.SessionID, "%d"), opt(q.RequestClass, "%s"),
				blocks(q.PrefixBlockIDs), opt(q.Priority, "%d"), secs(q.DeadlineNS))
		}
		left -= k
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

func opt[T any](p *T, format string) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf(format, *p)
}

func secs(p *int64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.9f", float64(*p)/1e9)
}

func blocks(b []int64) string {
	if b == nil {
		return "-"
	}
	if len(b) <= 4 {
		return strings.Trim(fmt.Sprint(b), "[]")
	}
	return fmt.Sprintf("%d %d … %d (%d)", b[0], b[1], b[len(b)-1], len(b))
}
