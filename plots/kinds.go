package plots

import (
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg/draw"
)

// CDFPlot overlays the empirical CDFs of a metric for several series.
// Values are in Unit (e.g. "ms"); large samples are downsampled with
// DownsampleCDF, so 10 M requests draw quickly with exact tails.
type CDFPlot struct {
	Title  string
	Metric string // e.g. "window wait"
	Unit   string // e.g. "ms"
	// LogX draws x on a log scale; values ≤ 0 (zero waits) are then off
	// the axis and the curve starts at the fraction they make up.
	LogX       bool
	Series     []Sample
	Downsample Downsample
}

// SweepPlot draws a metric's mean and p95 against a swept parameter, and
// the overhead in percent beside it when any series has one.
type SweepPlot struct {
	Title  string
	XLabel string // with unit, e.g. "window (ms)"
	Metric string
	Unit   string
	Series []SweepSeries
}

// TimelinePlot draws queue depth, running sequences and dispatched batch
// sizes over time, one row each.
type TimelinePlot struct {
	Title  string
	Series []TimelineSeries
	// Buckets bounds drawn points per trace (≈4 per bucket, see
	// DecimateXY); default 1000.
	Buckets int
}

// HistogramPlot draws the distribution of dispatched batch sizes per
// series as outlines, as fractions of all batches of that series.
type HistogramPlot struct {
	Title   string
	Series  []Sample
	MaxBins int // default 64
}

// Panel is the 2×2 summary of one predicted/measured comparison: CDF and
// sweep on top, timeline and batch-size histogram below, one legend.
type Panel struct {
	Title     string
	CDF       CDFPlot
	Sweep     SweepPlot
	Timeline  TimelinePlot
	Histogram HistogramPlot
}

func (c CDFPlot) figure(st style) (*figure, error) {
	cols := newColours()
	cl, err := c.cell(st, cols)
	if err != nil {
		return nil, err
	}
	return &figure{heading: c.Title, cols: 1, cells: []cell{cl}, legend: lineLegend(st, cols), st: st}, nil
}

func (s SweepPlot) figure(st style) (*figure, error) {
	cols := newColours()
	cl, err := s.cell(st, cols, false)
	if err != nil {
		return nil, err
	}
	return &figure{heading: s.Title, cols: 1, cells: []cell{cl}, legend: append(lineLegend(st, cols), statLegend(st)...), st: st}, nil
}

func (t TimelinePlot) figure(st style) (*figure, error) {
	cols := newColours()
	cl, err := t.cell(st, cols, false)
	if err != nil {
		return nil, err
	}
	return &figure{heading: t.Title, cols: 1, cells: []cell{cl}, legend: withBatchMarkers(st, cols, lineLegend(st, cols)), st: st}, nil
}

func (h HistogramPlot) figure(st style) (*figure, error) {
	cols := newColours()
	cl, err := h.cell(st, cols)
	if err != nil {
		return nil, err
	}
	return &figure{heading: h.Title, cols: 1, cells: []cell{cl}, legend: lineLegend(st, cols), st: st}, nil
}

func (p Panel) figure(st style) (*figure, error) {
	cols := newColours()
	cst := st.scaled(0.8)
	parts := []struct {
		present bool
		title   string
		build   func() (cell, error)
	}{
		{len(p.CDF.Series) > 0, orDefault(p.CDF.Title, "CDF of "+orDefault(p.CDF.Metric, "value")),
			func() (cell, error) { return p.CDF.cell(cst, cols) }},
		{len(p.Sweep.Series) > 0, orDefault(p.Sweep.Title, orDefault(p.Sweep.Metric, "value")+" sweep"),
			func() (cell, error) { return p.Sweep.cell(cst, cols, true) }},
		{len(p.Timeline.Series) > 0, orDefault(p.Timeline.Title, "timeline"),
			func() (cell, error) { return p.Timeline.cell(cst, cols, true) }},
		{len(p.Histogram.Series) > 0, orDefault(p.Histogram.Title, "batch sizes"),
			func() (cell, error) { return p.Histogram.cell(cst, cols) }},
	}
	// A part without series is left out rather than failing the panel: a
	// single pair of runs has no sweep, a results file may lack a timeline.
	var cells []cell
	hasSweep, hasTimeline := false, false
	for i, part := range parts {
		if !part.present {
			continue
		}
		cl, err := part.build()
		if err != nil {
			return nil, fmt.Errorf("panel: %w", err)
		}
		// The cells' titles name the plot kind; the panel title goes on top.
		cl.grid[0][0].Title.Text = part.title
		cells = append(cells, cl)
		hasSweep = hasSweep || i == 1
		hasTimeline = hasTimeline || i == 2
	}
	if len(cells) == 0 {
		return nil, fmt.Errorf("panel: nothing to draw: CDF, sweep, timeline and histogram all have no series")
	}
	legend := lineLegend(cst, cols)
	if hasTimeline {
		legend = withBatchMarkers(cst, cols, legend)
	}
	if hasSweep {
		legend = append(legend, statLegend(cst)...)
	}
	return &figure{heading: p.Title, cols: min(2, len(cells)), cells: cells, legend: legend, st: st}, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func withUnit(name, unit string) string {
	if unit == "" {
		return name
	}
	return name + " (" + unit + ")"
}

func (c CDFPlot) cell(st style, cols *colours) (cell, error) {
	if len(c.Series) == 0 {
		return cell{}, fmt.Errorf("cdf: no series")
	}
	metric := orDefault(c.Metric, "value")
	p := st.newPlot("", withUnit(metric, c.Unit), "fraction of requests ≤ x")
	p.Y.Min, p.Y.Max = 0, 1
	xmin, xmax := math.Inf(1), math.Inf(-1)
	for i, s := range c.Series {
		if err := checkSource(s.Source); err != nil {
			return cell{}, fmt.Errorf("cdf: series %d: %w", i, err)
		}
		name := label(s.Group, s.Source)
		pts, err := CDF(s.Values)
		if err != nil {
			return cell{}, fmt.Errorf("cdf: series %q: %w", name, err)
		}
		if pts, err = DownsampleCDF(pts, c.Downsample); err != nil {
			return cell{}, fmt.Errorf("cdf: series %q: %w", name, err)
		}
		if c.LogX {
			k := 0
			for k < len(pts) && pts[k].X <= 0 {
				k++
			}
			if k == len(pts) {
				return cell{}, fmt.Errorf("cdf: series %q: log x needs positive values, all are ≤ 0", name)
			}
			pts = pts[k:]
		}
		xmin, xmax = math.Min(xmin, pts[0].X), math.Max(xmax, pts[len(pts)-1].X)
		l := newLine(pts)
		l.StepStyle = plotter.PostStep
		l.LineStyle = st.lineStyle(cols.of(s.Group, s.Source), s.Source)
		p.Add(l)
	}
	if c.LogX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = logTicks{}
		// Whole decades at both ends so the axis starts and ends on a label.
		p.X.Min = math.Pow(10, math.Floor(math.Log10(xmin)))
		p.X.Max = math.Pow(10, math.Ceil(math.Log10(xmax)))
	}
	return cell{grid: [][]*plot.Plot{{p}}}, nil
}

var (
	meanGlyph = draw.CircleGlyph{}
	p95Glyph  = draw.TriangleGlyph{}
)

func (s SweepPlot) cell(st style, cols *colours, stacked bool) (cell, error) {
	if len(s.Series) == 0 {
		return cell{}, fmt.Errorf("sweep: no series")
	}
	metric := orDefault(s.Metric, "value")
	xlabel := orDefault(s.XLabel, "x")
	mp := st.newPlot("", xlabel, withUnit(metric, s.Unit))
	op := st.newPlot("", xlabel, "overhead vs bare engine (%)")
	hasOverhead := false
	for i, ser := range s.Series {
		if err := checkSource(ser.Source); err != nil {
			return cell{}, fmt.Errorf("sweep: series %d: %w", i, err)
		}
		name := label(ser.Group, ser.Source)
		if len(ser.X) == 0 {
			return cell{}, fmt.Errorf("sweep: series %q: empty series", name)
		}
		if err := checkXY("sweep: series "+strconv.Quote(name), ser.X, ser.Mean.Y); err != nil {
			return cell{}, err
		}
		if err := ser.Mean.check("sweep: series "+strconv.Quote(name)+" mean", len(ser.X)); err != nil {
			return cell{}, err
		}
		if err := ser.P95.check("sweep: series "+strconv.Quote(name)+" p95", len(ser.X)); err != nil {
			return cell{}, err
		}
		col := cols.of(ser.Group, ser.Source)
		ls := st.lineStyle(col, ser.Source)
		addCurve(mp, st, ser.X, ser.Mean, ls, meanGlyph)
		addCurve(mp, st, ser.X, ser.P95, ls, p95Glyph)
		if ser.Overhead.Y != nil {
			if err := ser.Overhead.check("sweep: series "+strconv.Quote(name)+" overhead", len(ser.X)); err != nil {
				return cell{}, err
			}
			hasOverhead = true
			addCurve(op, st, ser.X, ser.Overhead, ls, meanGlyph)
		}
	}
	mp.Y.Min = math.Min(mp.Y.Min, 0)
	if !hasOverhead {
		return cell{grid: [][]*plot.Plot{{mp}}}, nil
	}
	op.Y.Min = math.Min(op.Y.Min, 0)
	if stacked {
		mp.X.Label.Text = ""
		op.Y.Label.Text = "overhead (%)"
		return cell{grid: [][]*plot.Plot{{mp}, {op}}}, nil
	}
	return cell{grid: [][]*plot.Plot{{mp, op}}}, nil
}

// addCurve draws a sweep curve with markers and, where bounds are given,
// 95 % CI error bars in the curve's colour.
func addCurve(p *plot.Plot, st style, x []float64, c Curve, ls draw.LineStyle, g draw.GlyphDrawer) {
	pts := make([]Point, len(x))
	for i := range x {
		pts[i] = Point{x[i], c.Y[i]}
	}
	l := newLine(pts)
	l.LineStyle = ls
	sc, _ := plotter.NewScatter(points(pts))
	sc.GlyphStyle = draw.GlyphStyle{Color: ls.Color, Radius: st.glyph * 1.3, Shape: g}
	p.Add(l, unboxed{sc})
	if c.Lo == nil {
		return
	}
	bars, _ := ErrorBars(c.Y, c.Lo, c.Hi) // checked by Curve.check
	eb, _ := plotter.NewYErrorBars(errorPoints{pts, bars})
	eb.LineStyle = draw.LineStyle{Color: ls.Color, Width: st.line * 0.7}
	eb.CapWidth = st.glyph * 3
	p.Add(unboxed{eb})
}

func (t TimelinePlot) cell(st style, cols *colours, short bool) (cell, error) {
	if len(t.Series) == 0 {
		return cell{}, fmt.Errorf("timeline: no series")
	}
	buckets := t.Buckets
	if buckets == 0 {
		buckets = 1000
	}
	rows := []struct {
		name, short string
		trace       func(TimelineSeries) Trace
		plot        *plot.Plot
	}{
		{"queue depth (requests)", "queued", func(s TimelineSeries) Trace { return s.Queue }, nil},
		{"running sequences", "running", func(s TimelineSeries) Trace { return s.Running }, nil},
		{"batch size (requests)", "batch size", func(s TimelineSeries) Trace { return s.Batches }, nil},
	}
	for i, s := range t.Series {
		if err := checkSource(s.Source); err != nil {
			return cell{}, fmt.Errorf("timeline: series %d: %w", i, err)
		}
		name := label(s.Group, s.Source)
		col := cols.of(s.Group, s.Source)
		for r := range rows {
			tr := rows[r].trace(s)
			if len(tr.T) == 0 && len(tr.V) == 0 {
				continue
			}
			pts, err := DecimateXY(tr.T, tr.V, buckets)
			if err != nil {
				return cell{}, fmt.Errorf("timeline: series %q %s: %w", name, rows[r].name, err)
			}
			if rows[r].plot == nil {
				ylabel := rows[r].name
				if short {
					// A stacked row is too short for the long label.
					ylabel = rows[r].short
				}
				rows[r].plot = st.newPlot("", "", ylabel)
				rows[r].plot.Y.Min = 0
			}
			if r == 2 {
				// Batches are events, not a level: markers, filled when
				// measured and open when predicted, read better than a
				// step line jumping at every dispatch.
				sc := batchMarker(st, col, s.Source)
				sc.XYs = make(plotter.XYs, len(pts))
				for i, p := range pts {
					sc.XYs[i] = plotter.XY{X: p.X, Y: p.Y}
				}
				rows[r].plot.Add(unboxed{sc})
				continue
			}
			l := newLine(pts)
			l.StepStyle = plotter.PostStep
			l.LineStyle = st.lineStyle(col, s.Source)
			rows[r].plot.Add(l)
		}
	}
	var grid [][]*plot.Plot
	tmin, tmax := math.Inf(1), math.Inf(-1)
	for _, r := range rows {
		if r.plot != nil {
			grid = append(grid, []*plot.Plot{r.plot})
			tmin, tmax = math.Min(tmin, r.plot.X.Min), math.Max(tmax, r.plot.X.Max)
		}
	}
	if grid == nil {
		return cell{}, fmt.Errorf("timeline: no series has a queue, running or batch trace")
	}
	for _, row := range grid {
		// A shared time axis lets rows be read against each other.
		row[0].X.Min, row[0].X.Max = tmin, tmax
	}
	grid[len(grid)-1][0].X.Label.Text = "time since start (s)"
	return cell{grid: grid}, nil
}

func (h HistogramPlot) cell(st style, cols *colours) (cell, error) {
	if len(h.Series) == 0 {
		return cell{}, fmt.Errorf("histogram: no series")
	}
	maxBins := h.MaxBins
	if maxBins == 0 {
		maxBins = 64
	}
	p := st.newPlot("", "batch size (requests)", "fraction of batches")
	p.Y.Min = 0
	for i, s := range h.Series {
		if err := checkSource(s.Source); err != nil {
			return cell{}, fmt.Errorf("histogram: series %d: %w", i, err)
		}
		name := label(s.Group, s.Source)
		bins, err := BatchHistogram(s.Values, maxBins)
		if err != nil {
			return cell{}, fmt.Errorf("histogram: series %q: %w", name, err)
		}
		l := newLine(outline(bins))
		l.LineStyle = st.lineStyle(cols.of(s.Group, s.Source), s.Source)
		p.Add(l)
	}
	p.X.Tick.Marker = niceTicks{MinStep: 1}
	p.Y.Max *= 1.05 // the tallest bar does not touch the frame
	// Half a bar of air on each side so the outermost bars do not sit on
	// the axes.
	p.X.Min, p.X.Max = p.X.Min-0.5, p.X.Max+0.5
	return cell{grid: [][]*plot.Plot{{p}}}, nil
}

// outline is the silhouette of a histogram whose bins are centred on the
// batch sizes they count: bin [lo, hi) spans lo−½ … hi−½.
func outline(bins []Bin) []Point {
	pts := make([]Point, 0, 2*len(bins)+2)
	pts = append(pts, Point{bins[0].Lo - 0.5, 0})
	for _, b := range bins {
		pts = append(pts, Point{b.Lo - 0.5, b.Fraction}, Point{b.Hi - 0.5, b.Fraction})
	}
	return append(pts, Point{bins[len(bins)-1].Hi - 0.5, 0})
}

// lineLegend has one entry per (group, source) in order of appearance.
func lineLegend(st style, cols *colours) []legendEntry {
	var out []legendEntry
	for _, k := range cols.keys {
		l := newLine(nil)
		l.LineStyle = st.lineStyle(cols.byGroup[k.group], k.source)
		out = append(out, legendEntry{name: label(k.group, k.source), thumbs: []plot.Thumbnailer{l}})
	}
	return out
}

// withBatchMarkers adds the timeline's batch marker to each line entry.
func withBatchMarkers(st style, cols *colours, entries []legendEntry) []legendEntry {
	for i, k := range cols.keys {
		entries[i].thumbs = append(entries[i].thumbs, batchMarker(st, cols.byGroup[k.group], k.source))
	}
	return entries
}

// batchMarker is how a dispatched batch is drawn: filled when measured,
// open when predicted, matching solid and dashed lines.
func batchMarker(st style, col color.Color, src Source) *plotter.Scatter {
	sc, _ := plotter.NewScatter(plotter.XYs{{}})
	sc.GlyphStyle = draw.GlyphStyle{Color: col, Radius: st.glyph * 0.8, Shape: draw.CircleGlyph{}}
	if src == Predicted {
		sc.GlyphStyle.Shape = draw.RingGlyph{}
	}
	return sc
}

// statLegend explains the sweep markers.
func statLegend(st style) []legendEntry {
	var out []legendEntry
	for _, e := range []struct {
		name string
		g    draw.GlyphDrawer
	}{{"mean", meanGlyph}, {"p95", p95Glyph}} {
		sc, _ := plotter.NewScatter(plotter.XYs{{}})
		sc.GlyphStyle = draw.GlyphStyle{Color: color.Gray{0x40}, Radius: st.glyph * 1.3, Shape: e.g}
		out = append(out, legendEntry{name: e.name, thumbs: []plot.Thumbnailer{sc}})
	}
	return out
}

type points []Point

func (p points) Len() int                    { return len(p) }
func (p points) XY(i int) (float64, float64) { return p[i].X, p[i].Y }

type errorPoints struct {
	pts  []Point
	bars []ErrorBar
}

func (e errorPoints) Len() int                        { return len(e.pts) }
func (e errorPoints) XY(i int) (float64, float64)     { return e.pts[i].X, e.pts[i].Y }
func (e errorPoints) YError(i int) (float64, float64) { return e.bars[i].Low, e.bars[i].High }

// newLine wraps pts without copying: plotter.NewLine copies and re-checks
// every point, which is wasted work on inputs validated already.
func newLine(pts []Point) *plotter.Line {
	xys := make(plotter.XYs, len(pts))
	for i, p := range pts {
		xys[i] = plotter.XY{X: p.X, Y: p.Y}
	}
	return &plotter.Line{XYs: xys, LineStyle: plotter.DefaultLineStyle}
}

func gridLines(st style) *plotter.Grid {
	g := plotter.NewGrid()
	g.Vertical = draw.LineStyle{Color: color.Gray{0xE0}, Width: st.line / 3}
	g.Horizontal = g.Vertical
	return g
}

// logTicks labels decades, and 2 and 5 times them when the axis spans few
// decades, in plain notation (0.1, 1, 10, 1000) rather than exponents.
type logTicks struct {
	Sparse bool // label decades only, where the axis is short
}

func (t logTicks) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= lo {
		return nil
	}
	d0 := int(math.Floor(math.Log10(lo)))
	d1 := int(math.Ceil(math.Log10(hi)))
	few := d1-d0 <= 3 && !t.Sparse
	var ticks []plot.Tick
	for d := d0; d <= d1; d++ {
		base := math.Pow(10, float64(d))
		for m := 1; m < 10; m++ {
			v := float64(m) * base
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || (few && (m == 2 || m == 5)) {
				t.Label = plainNumber(v)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

func plainNumber(v float64) string {
	// Round away binary noise from Pow10 products (0.30000000000000004).
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 12, 64), 64)
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// niceTicks puts about five labelled ticks on steps of 1, 2 or 5 times a
// power of ten, labelled with just the digits the step needs ("25", not
// "25.00"), with an unlabelled tick halfway between. MinStep > 0 keeps
// steps from getting finer than that (1 for batch sizes).
type niceTicks struct {
	MinStep float64
	Target  int // labelled ticks wanted; 0 means 5
}

func (t niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return nil
	}
	target := t.Target
	if target <= 0 {
		target = 5
	}
	step := niceStep(hi-lo, target)
	if t.MinStep > 0 && step < t.MinStep {
		step = t.MinStep
	}
	decimals := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
	var ticks []plot.Tick
	first := math.Ceil(lo/step-1e-9) - 1
	for k := first; ; k++ {
		v := k * step
		if v > hi+step*1e-9 {
			break
		}
		if v >= lo-step*1e-9 {
			ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', decimals, 64)})
		}
		if half := v + step/2; half >= lo && half <= hi && (t.MinStep == 0 || step/2 >= t.MinStep) {
			ticks = append(ticks, plot.Tick{Value: half})
		}
	}
	return ticks
}

// niceStep is the step of 1, 2 or 5 times a power of ten that cuts span
// into the number of intervals closest to target.
func niceStep(span float64, target int) float64 {
	mag := math.Pow(10, math.Floor(math.Log10(span/float64(target))))
	best, bestErr := mag, math.Inf(1)
	for _, m := range []float64{1, 2, 5, 10} {
		if e := math.Abs(span/(m*mag) - float64(target)); e < bestErr {
			best, bestErr = m*mag, e
		}
	}
	return best
}

// unboxed hides a plotter's glyph boxes from the layout. gonum shrinks the
// data area so markers at the edges fit, but on small tiles that solve can
// yield a negative height and the plot vanishes; a marker overlapping the
// axis by its radius is the better failure.
type unboxed struct {
	p interface {
		plot.Plotter
		plot.DataRanger
	}
}

func (u unboxed) Plot(c draw.Canvas, p *plot.Plot)            { u.p.Plot(c, p) }
func (u unboxed) DataRange() (xmin, xmax, ymin, ymax float64) { return u.p.DataRange() }
