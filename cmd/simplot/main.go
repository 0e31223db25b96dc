// Command simplot draws results of the simulator and of replay: CDFs,
// sweep curves, timelines, batch-size histograms and the 2×2 panel that
// puts predicted (dashed) and measured (solid) side by side.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/batchkit/batchkit/plots"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/sim/series"
)

const exitUsage = 2

const usage = `simplot: plot results of simrun and replay, predicted next to measured

Usage:
  simplot KIND -o OUT.png [flags] [FILE ...]

Kinds:
  cdf       CDF of a per-request metric (--metric) for each results file
  hist      batch-size histogram for each results file
  timeline  queue depth, running sequences and batch sizes over time
  sweep     mean and p95 of a metric and overhead % over a swept parameter,
            from sweep tables (simrun --sweep ... --table F); 95 % CI error
            bars from the table's _lo/_hi columns (simrun --runs N)
  panel     the 2×2 comparison: CDF, sweep (with --sweep/--sweep-measured;
            its metric from --sweep-metric),
            timeline and histogram

Results files given as plain arguments are "measured" when replay wrote them
and "predicted" when simrun did, grouped by their policy; --predicted and
--measured NAME=FILE name them yourself (the same NAME shares a colour:
predicted dashed, measured solid). The format comes from the extension of
--out: .png (default), .svg or .pdf. An existing --out is kept unless --force.

Examples:
  simrun --trace traces/seed-50q.parquet --profile seed-llama3.2-3b --clients 1 --policy fixed:window=2ms --out pred.parquet
  replay --model small --trace traces/seed-50q.parquet --clients 1 --policy fixed:window=2ms --out meas.parquet
  simplot panel -o cmp.png --predicted fixed=pred.parquet --measured fixed=meas.parquet
  simplot cdf -o ttft.png --metric ttft pred.parquet meas.parquet
  simrun --sweep 'fixed:window=0ms..4ms/0.5ms' --table sweep.parquet
  simplot sweep -o sweep.png --metric window_wait sweep.parquet

Flags:
`

var kinds = []string{"cdf", "hist", "timeline", "sweep", "panel"}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	out, metric, title     string
	sweepMetric            string
	predicted, measured    []string
	sweeps, sweepsMeasured []string
	logX, force            bool
	width, height, dpi     int
}

// usageError is bad input: exit status 2.
type usageError struct{ error }

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := pflag.NewFlagSet("simplot", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVarP(&o.out, "out", "o", "", "output image: .png, .svg or .pdf (required)")
	fs.StringVar(&o.metric, "metric", "latency", "metric: "+strings.Join(series.Metrics, ", "))
	fs.StringVar(&o.sweepMetric, "sweep-metric", "window_wait", "panel: the sweep quadrant's metric: window_wait, ttft or latency")
	fs.StringVar(&o.title, "title", "", "figure title (default from the kind and metric)")
	fs.StringArrayVar(&o.predicted, "predicted", nil, "NAME=FILE: a predicted results file (repeatable)")
	fs.StringArrayVar(&o.measured, "measured", nil, "NAME=FILE: a measured results file (repeatable)")
	fs.StringArrayVar(&o.sweeps, "sweep", nil, "panel: a predicted sweep table (repeatable)")
	fs.StringArrayVar(&o.sweepsMeasured, "sweep-measured", nil, "panel: a measured sweep table (repeatable)")
	fs.BoolVar(&o.logX, "log-x", true, "log-scale x axis of CDFs")
	fs.BoolVar(&o.force, "force", false, "overwrite an existing output file")
	fs.IntVar(&o.width, "width", 1200, "width in pixels")
	fs.IntVar(&o.height, "height", 800, "height in pixels")
	fs.IntVar(&o.dpi, "dpi", 96, "dots per inch (scales fonts and lines)")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "simplot: %v (see simplot --help)\n", err)
		return exitUsage
	}
	if *help || len(args) == 0 {
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		if *help {
			return 0
		}
		return exitUsage
	}
	if err := simplot(o, fs.Args()); err != nil {
		fmt.Fprintf(stderr, "simplot: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return 1
	}
	return 0
}

func simplot(o options, args []string) error {
	if len(args) == 0 {
		return usageError{fmt.Errorf("need a plot kind: %s", strings.Join(kinds, ", "))}
	}
	kind, files := args[0], args[1:]
	if o.out == "" {
		return usageError{errors.New("need --out FILE (.png, .svg or .pdf)")}
	}
	if _, err := plots.FormatOf(o.out); err != nil {
		return usageError{err}
	}
	if !o.force {
		if _, err := os.Stat(o.out); err == nil {
			return usageError{fmt.Errorf("%s: already exists (use --force to overwrite)", o.out)}
		}
	}
	opt := plots.Options{Width: o.width, Height: o.height, DPI: o.dpi}
	var fig plots.Figure
	var err error
	switch kind {
	case "sweep":
		fig, err = sweepFigure(o, files)
	case "cdf", "hist", "timeline", "panel":
		fig, err = resultsFigure(kind, o, files)
	default:
		return usageError{fmt.Errorf("unknown plot kind %q (kinds: %s)", kind, strings.Join(kinds, ", "))}
	}
	if err != nil {
		return err
	}
	if err := plots.Save(o.out, fig, opt, o.force); err != nil {
		return usageError{err}
	}
	return nil
}

// resultsFigure draws one of the kinds made from per-request results.
func resultsFigure(kind string, o options, files []string) (plots.Figure, error) {
	need := map[string]series.Need{
		"cdf": {Metric: o.metric}, "hist": {Batches: true}, "timeline": {Timeline: true},
		"panel": {Metric: o.metric, Batches: true, Timeline: true},
	}[kind]
	runs, err := readRuns(o, files, need)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "cdf":
		ss, err := samples(runs, func(d *series.Data) []float64 { return d.Values }, "no completed requests to plot")
		if err != nil {
			return nil, err
		}
		return plots.CDFPlot{Title: o.title, Metric: strings.ReplaceAll(o.metric, "_", " "), Unit: "ms", LogX: o.logX, Series: ss}, nil
	case "hist":
		ss, err := samples(runs, func(d *series.Data) []float64 { return d.Batches }, "no dispatched batches to plot")
		if err != nil {
			return nil, err
		}
		return plots.HistogramPlot{Title: o.title, Series: ss}, nil
	case "timeline":
		fig := plots.TimelinePlot{Title: o.title}
		for _, r := range runs {
			tl := r.Data.Timeline
			tl.Group, tl.Source = r.Group, r.Source
			fig.Series = append(fig.Series, tl)
		}
		return fig, nil
	}
	title := o.title
	if title == "" {
		title = "predicted (dashed) vs measured (solid)"
	}
	p, err := series.Panel(title, o.metric, runs)
	if err != nil {
		return nil, usageError{err}
	}
	p.CDF.LogX = o.logX
	for i, list := range [][]string{o.sweeps, o.sweepsMeasured} {
		src := []plots.Source{plots.Predicted, plots.Measured}[i]
		for _, f := range list {
			s, param, err := readSweep(f, o.sweepMetric, src)
			if err != nil {
				return nil, err
			}
			p.Sweep.Series = append(p.Sweep.Series, s...)
			p.Sweep.XLabel, p.Sweep.Metric, p.Sweep.Unit = xLabel(param), strings.ReplaceAll(o.sweepMetric, "_", " "), "ms"
		}
	}
	return p, nil
}

func sweepFigure(o options, files []string) (plots.Figure, error) {
	fig := plots.SweepPlot{Title: o.title, Metric: strings.ReplaceAll(o.metric, "_", " "), Unit: "ms"}
	add := func(f string, src plots.Source, prefix string) error {
		s, param, err := readSweep(f, o.metric, src)
		if err != nil {
			return err
		}
		for i := range s {
			s[i].Group = prefix + s[i].Group
		}
		fig.Series = append(fig.Series, s...)
		fig.XLabel = xLabel(param)
		return nil
	}
	for _, f := range files {
		if err := add(f, plots.Predicted, ""); err != nil {
			return nil, err
		}
	}
	for i, list := range [][]string{o.predicted, o.measured} {
		for _, nf := range list {
			name, f, err := splitNamed(nf)
			if err != nil {
				return nil, err
			}
			if err := add(f, []plots.Source{plots.Predicted, plots.Measured}[i], name+" "); err != nil {
				return nil, err
			}
		}
	}
	if len(fig.Series) == 0 {
		return nil, usageError{errors.New("sweep needs at least one sweep table")}
	}
	return fig, nil
}

func readSweep(path, metric string, src plots.Source) ([]plots.SweepSeries, string, error) {
	rows, err := sim.ReadTable(path)
	if err != nil {
		return nil, "", usageError{err}
	}
	s, param, err := series.Sweep(rows, metric, src, "")
	if err != nil {
		return nil, "", usageError{fmt.Errorf("%s: %w", path, err)}
	}
	return s, param, nil
}

func xLabel(param string) string {
	if param == "" {
		return "swept value"
	}
	return param + " (ms for durations)"
}

// samples are the runs' non-empty values, or a usage error saying none is.
func samples(runs []series.Run, values func(*series.Data) []float64, none string) ([]plots.Sample, error) {
	var ss []plots.Sample
	for _, r := range runs {
		if v := values(r.Data); len(v) > 0 {
			ss = append(ss, plots.Sample{Group: r.Group, Source: r.Source, Values: v})
		}
	}
	if len(ss) == 0 {
		return nil, usageError{errors.New(none)}
	}
	return ss, nil
}

// readRuns reads what need asks of every results file, column by column:
// named ones from --predicted and --measured, plain ones with source and
// name from their metadata.
func readRuns(o options, files []string, need series.Need) ([]series.Run, error) {
	var runs []series.Run
	read := func(group, path string, src plots.Source, fromMeta bool) error {
		d, meta, err := series.Read(path, need)
		if err != nil {
			return usageError{err}
		}
		if d.N == 0 {
			return usageError{fmt.Errorf("%s: no requests in the file", path)}
		}
		if fromMeta {
			group = meta[sim.MetaPolicy]
			if group == "" {
				group = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
			}
			src = plots.Predicted
			if meta[sim.MetaSource] == "replay" {
				src = plots.Measured
			}
		}
		runs = append(runs, series.Run{Group: group, Source: src, Data: d})
		return nil
	}
	for i, list := range [][]string{o.predicted, o.measured} {
		for _, nf := range list {
			name, f, err := splitNamed(nf)
			if err != nil {
				return nil, err
			}
			if err := read(name, f, []plots.Source{plots.Predicted, plots.Measured}[i], false); err != nil {
				return nil, err
			}
		}
	}
	for _, f := range files {
		if err := read("", f, 0, true); err != nil {
			return nil, err
		}
	}
	if len(runs) == 0 {
		return nil, usageError{errors.New("no results files given")}
	}
	return runs, nil
}

func splitNamed(nf string) (string, string, error) {
	name, f, ok := strings.Cut(nf, "=")
	if !ok || name == "" || f == "" {
		return "", "", usageError{fmt.Errorf("want NAME=FILE, got %q", nf)}
	}
	return name, f, nil
}
