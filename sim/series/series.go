// Package series turns results of the simulator and of replay (sim.Result
// rows) into the plain series that package plots draws: per-request metric
// samples, dispatched batch sizes and a run's timeline. It is the one place
// that knows both the results schema and the plots' inputs, so that every
// command draws the same run the same way. It renders nothing itself.
package series

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"

	"github.com/batchkit/batchkit/plots"
	"github.com/batchkit/batchkit/policies"
	"github.com/batchkit/batchkit/sim"
)

// Metrics are the per-request metrics Metric knows, all in ms.
var Metrics = []string{"window_wait", "engine_queue", "ttft", "latency", "tpot"}

// metricColumns names the results columns each metric is computed from.
var metricColumns = map[string][]string{
	"window_wait":  {"window_wait_ns"},
	"engine_queue": {"engine_queue_wait_ns"},
	"ttft":         {"arrival_ns", "first_token_ns"},
	"latency":      {"arrival_ns", "finish_ns"},
	"tpot":         {"first_token_ns", "finish_ns", "output_tokens"},
}

// columns holds some columns of a results file, one entry per request;
// a nil slice was not read. Building every series from columns lets a
// file be read column by column, a few columns at a time, and dropped
// as soon as its series are made, instead of holding whole rows
// (~130 B per request) of a 10 M-request run.
type columns struct {
	status []sim.Status
	c      map[string][]int64
}

func (c columns) n() int { return len(c.status) }

// columnsOf turns rows held in memory (replay's results) into columns.
func columnsOf(res []sim.Result, names []string) columns {
	c := columns{status: make([]sim.Status, len(res)), c: map[string][]int64{}}
	get := map[string]func(r *sim.Result) int64{
		"arrival_ns": func(r *sim.Result) int64 { return r.ArrivalNS }, "enqueue_ns": func(r *sim.Result) int64 { return r.EnqueueNS },
		"dispatch_ns": func(r *sim.Result) int64 { return r.DispatchNS }, "engine_start_ns": func(r *sim.Result) int64 { return r.EngineStartNS },
		"first_token_ns": func(r *sim.Result) int64 { return r.FirstTokenNS }, "finish_ns": func(r *sim.Result) int64 { return r.FinishNS },
		"output_tokens": func(r *sim.Result) int64 { return int64(r.OutputTokens) }, "batch_id": func(r *sim.Result) int64 { return r.BatchID },
		"batch_size": func(r *sim.Result) int64 { return int64(r.BatchSize) }, "window_wait_ns": func(r *sim.Result) int64 { return r.WindowWaitNS },
		"engine_queue_wait_ns": func(r *sim.Result) int64 { return r.EngineQueueWaitNS },
	}
	for _, name := range names {
		col := make([]int64, len(res))
		for i := range res {
			col[i] = get[name](&res[i])
		}
		c.c[name] = col
	}
	for i := range res {
		switch res[i].Status {
		case sim.StatusOK:
			c.status[i] = sim.OK
		case sim.StatusRejected:
			c.status[i] = sim.Rejected
		case sim.StatusDropped:
			c.status[i] = sim.Dropped
		default:
			c.status[i] = sim.Failed
		}
	}
	return c
}

// readColumns reads the named columns of a results file and its status.
func readColumns(path string, names []string) (columns, map[string]string, error) {
	cols, st, meta, err := sim.ReadColumns(path, names, true)
	if err != nil {
		return columns{}, nil, err
	}
	c := columns{status: st, c: map[string][]int64{}}
	for i, name := range names {
		c.c[name] = cols[i]
	}
	return c, meta, nil
}

func checkMetric(metric string) error {
	if metricColumns[metric] == nil {
		return fmt.Errorf("unknown metric %q (known: %s)", metric, strings.Join(Metrics, ", "))
	}
	return nil
}

// Metric returns one value per completed request, in ms.
func Metric(res []sim.Result, metric string) ([]float64, error) {
	if err := checkMetric(metric); err != nil {
		return nil, err
	}
	return metricOf(columnsOf(res, metricColumns[metric]), metric), nil
}

func metricOf(c columns, metric string) []float64 {
	var f func(i int) (float64, bool)
	switch metric {
	case "window_wait":
		w := c.c["window_wait_ns"]
		f = func(i int) (float64, bool) { return ms(w[i]), true }
	case "engine_queue":
		q := c.c["engine_queue_wait_ns"]
		f = func(i int) (float64, bool) { return ms(q[i]), true }
	case "ttft":
		a, ft := c.c["arrival_ns"], c.c["first_token_ns"]
		f = func(i int) (float64, bool) { return ms(ft[i] - a[i]), true }
	case "latency":
		a, fin := c.c["arrival_ns"], c.c["finish_ns"]
		f = func(i int) (float64, bool) { return ms(fin[i] - a[i]), true }
	case "tpot":
		ft, fin, out := c.c["first_token_ns"], c.c["finish_ns"], c.c["output_tokens"]
		f = func(i int) (float64, bool) {
			if out[i] < 2 {
				return 0, false
			}
			return ms(fin[i]-ft[i]) / float64(out[i]-1), true
		}
	}
	n := 0
	for _, s := range c.status {
		if s == sim.OK {
			n++
		}
	}
	out := make([]float64, 0, n)
	for i, s := range c.status {
		if s != sim.OK {
			continue
		}
		if v, ok := f(i); ok {
			out = append(out, v)
		}
	}
	return out
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

var batchColumns = []string{"dispatch_ns", "batch_id", "batch_size"}

// BatchSizes returns the size of every dispatched batch, once per batch.
func BatchSizes(res []sim.Result) []float64 {
	sizes, _ := batchesOf(columnsOf(res, batchColumns))
	return sizes
}

// batchesOf returns each dispatched batch's size and its dispatch time
// (s) as a timeline trace, ordered by dispatch time, then size.
func batchesOf(c columns) ([]float64, plots.Trace) {
	disp, id, size := c.c["dispatch_ns"], c.c["batch_id"], c.c["batch_size"]
	// Batch ids are small dense numbers in the simulator and replay: a
	// bitmap marks those seen in 1 bit each, where a map would cost tens
	// of bytes per batch. Other ids fall back to a map.
	maxID := int64(-1)
	for i, d := range disp {
		if d >= 0 {
			maxID = max(maxID, id[i])
		}
	}
	var bits []uint64
	var seen map[int64]bool
	if maxID < 4*int64(len(disp))+64 {
		bits = make([]uint64, maxID/64+1)
	} else {
		seen = map[int64]bool{}
	}
	first := func(b int64) bool {
		if bits != nil && b >= 0 {
			if bits[b/64]&(1<<(b%64)) != 0 {
				return false
			}
			bits[b/64] |= 1 << (b % 64)
			return true
		}
		if seen == nil {
			seen = map[int64]bool{}
		}
		if seen[b] {
			return false
		}
		seen[b] = true
		return true
	}
	// First occurrences, as row indices (4 B per batch), sorted by
	// dispatch time then size: results files are in finishing order.
	n := 0
	for i, d := range disp {
		if d >= 0 && first(id[i]) {
			n++
		}
	}
	clear(bits)
	seen = nil
	rows := make([]int32, 0, n)
	for i, d := range disp {
		if d >= 0 && first(id[i]) {
			rows = append(rows, int32(i))
		}
	}
	slices.SortFunc(rows, func(x, y int32) int {
		return cmp.Or(cmp.Compare(disp[x], disp[y]), cmp.Compare(size[x], size[y]))
	})
	sizes := make([]float64, len(rows))
	for i, r := range rows {
		sizes[i] = float64(size[r])
	}
	tr := thin(len(rows), func(emit func(t int64, v int)) {
		for _, r := range rows {
			emit(disp[r], int(size[r]))
		}
	})
	return sizes, tr
}

// maxTimelinePoints bounds a timeline trace: beyond it the trace is
// thinned as plots.DecimateXY does (first, min, max and last of each
// bucket), so a 10 M-request run keeps its peaks without holding tens of
// millions of points.
const maxTimelinePoints = 1 << 16

// Timeline rebuilds a run over time from its results: queue depth
// (enqueued, not yet dispatched), running sequences (engine start to
// finish) and each batch's size at its dispatch. Times in seconds; each
// trace has one point per instant at which it changes.
func Timeline(group string, src plots.Source, res []sim.Result) plots.TimelineSeries {
	ts := plots.TimelineSeries{Group: group, Source: src}
	c := columnsOf(res, []string{"enqueue_ns", "dispatch_ns"})
	ts.Queue = stepTrace(c.c["enqueue_ns"], c.c["dispatch_ns"])
	c = columnsOf(res, []string{"engine_start_ns", "finish_ns"})
	ts.Running = stepTrace(c.c["engine_start_ns"], c.c["finish_ns"])
	_, ts.Batches = batchesOf(columnsOf(res, batchColumns))
	return ts
}

// stepTrace counts what is in a stage over time: a request enters at
// in[i] and leaves at out[i]; requests with a negative time never went
// through. in and out are filtered and sorted in place.
func stepTrace(in, out []int64) plots.Trace {
	k := 0
	for i := range in {
		if in[i] >= 0 && out[i] >= 0 {
			in[k], out[k] = in[i], out[i]
			k++
		}
	}
	in, out = in[:k], out[:k]
	slices.Sort(in)
	slices.Sort(out)
	// walk calls emit once per instant with the count after all changes
	// at that instant.
	walk := func(emit func(t int64, v int)) {
		i, o := 0, 0
		for i < len(in) || o < len(out) {
			t := int64(math.MaxInt64)
			if i < len(in) {
				t = in[i]
			}
			if o < len(out) {
				t = min(t, out[o])
			}
			for i < len(in) && in[i] == t {
				i++
			}
			for o < len(out) && out[o] == t {
				o++
			}
			emit(t, i-o)
		}
	}
	n := 0
	walk(func(int64, int) { n++ })
	return thin(n, walk)
}

// thin builds a trace from the n points walk emits (ascending t): all of
// them up to maxTimelinePoints, beyond that the first, lowest, highest
// and last of each of maxTimelinePoints/4 buckets, so peaks survive.
func thin(n int, walk func(emit func(t int64, v int))) plots.Trace {
	var tr plots.Trace
	add := func(t int64, v int) {
		tr.T, tr.V = append(tr.T, float64(t)/1e9), append(tr.V, float64(v))
	}
	if n <= maxTimelinePoints {
		tr.T, tr.V = make([]float64, 0, n), make([]float64, 0, n)
		walk(add)
		return tr
	}
	buckets := maxTimelinePoints / 4
	tr.T, tr.V = make([]float64, 0, maxTimelinePoints), make([]float64, 0, maxTimelinePoints)
	type pt struct {
		t int64
		v int
	}
	var bucket []pt
	flush := func() {
		if len(bucket) == 0 {
			return
		}
		lo, hi := 0, 0
		for i, p := range bucket {
			if p.v < bucket[lo].v {
				lo = i
			}
			if p.v > bucket[hi].v {
				hi = i
			}
		}
		keep := []int{0, lo, hi, len(bucket) - 1}
		slices.Sort(keep)
		for _, i := range slices.Compact(keep) {
			add(bucket[i].t, bucket[i].v)
		}
		bucket = bucket[:0]
	}
	j := 0
	walk(func(t int64, v int) {
		bucket = append(bucket, pt{t, v})
		j++
		if int64(j)*int64(buckets)/int64(n) != int64(j-1)*int64(buckets)/int64(n) {
			flush()
		}
	})
	flush()
	return tr
}

// Run is one results file to draw: Results in memory (replay), or Data
// read column by column with Read (simplot).
type Run struct {
	Group   string // colour group: policy or configuration
	Source  plots.Source
	Results []sim.Result
	Data    *Data
}

// Data is what the plots draw of one run, without its rows.
type Data struct {
	N        int       // requests in the file
	Values   []float64 // the metric of each completed request, ms
	Batches  []float64 // the size of each dispatched batch
	Timeline plots.TimelineSeries
}

// Need says which series Read makes: the values of a metric, batch
// sizes, the timeline.
type Need struct {
	Metric   string // "" for none
	Batches  bool
	Timeline bool
}

// Read reads the series need asks for from a results file, two or three
// columns at a time, never holding its rows: beyond what it keeps (8 B
// per request for the metric, 16 B per batch) memory peaks at about three
// int64 columns (~25 B per request).
func Read(path string, need Need) (*Data, map[string]string, error) {
	if need.Metric != "" {
		if err := checkMetric(need.Metric); err != nil {
			return nil, nil, err
		}
	}
	d := &Data{}
	var meta map[string]string
	read := func(names []string) (columns, error) {
		// Collect the previous phase's columns now, so that the heap
		// target follows what is kept rather than the largest phase.
		runtime.GC()
		c, m, err := readColumns(path, names)
		if err != nil {
			return c, err
		}
		meta, d.N = m, c.n()
		return c, nil
	}
	if need.Timeline {
		// One stage at a time: two columns in memory, not four.
		for _, st := range []struct {
			in, out string
			tr      *plots.Trace
		}{{"enqueue_ns", "dispatch_ns", &d.Timeline.Queue}, {"engine_start_ns", "finish_ns", &d.Timeline.Running}} {
			c, err := read([]string{st.in, st.out})
			if err != nil {
				return nil, nil, err
			}
			*st.tr = stepTrace(c.c[st.in], c.c[st.out])
		}
	}
	if need.Batches || need.Timeline {
		c, err := read(batchColumns)
		if err != nil {
			return nil, nil, err
		}
		sizes, tr := batchesOf(c)
		if need.Batches {
			d.Batches = sizes
		}
		if need.Timeline {
			d.Timeline.Batches = tr
		}
	}
	if need.Metric != "" || meta == nil {
		c, err := read(metricColumns[need.Metric])
		if err != nil {
			return nil, nil, err
		}
		if need.Metric != "" {
			d.Values = metricOf(c, need.Metric)
		}
	}
	// The columns are garbage now; collect them before the caller's own
	// large allocations (a CDF sorts a copy of the values) stack on top.
	runtime.GC()
	return d, meta, nil
}

// data returns the run's series, computing them from Results if needed.
func (r *Run) data(metric string) (*Data, error) {
	if r.Data != nil {
		return r.Data, nil
	}
	if err := checkMetric(metric); err != nil {
		return nil, err
	}
	tl := Timeline(r.Group, r.Source, r.Results)
	return &Data{N: len(r.Results), Values: metricOf(columnsOf(r.Results, metricColumns[metric]), metric), Batches: BatchSizes(r.Results), Timeline: tl}, nil
}

// Panel builds the 2×2 comparison of runs: the metric's CDF, the timeline
// and the batch-size histogram (a sweep part is added by the caller when
// it has sweep tables).
func Panel(title, metric string, runs []Run) (plots.Panel, error) {
	p := plots.Panel{
		Title: title,
		CDF:   plots.CDFPlot{Metric: strings.ReplaceAll(metric, "_", " "), Unit: "ms", LogX: true},
	}
	for i := range runs {
		r := &runs[i]
		d, err := r.data(metric)
		if err != nil {
			return p, err
		}
		if len(d.Values) == 0 {
			continue
		}
		p.CDF.Series = append(p.CDF.Series, plots.Sample{Group: r.Group, Source: r.Source, Values: d.Values})
		p.Histogram.Series = append(p.Histogram.Series, plots.Sample{Group: r.Group, Source: r.Source, Values: d.Batches})
		tl := d.Timeline
		tl.Group, tl.Source = r.Group, r.Source
		p.Timeline.Series = append(p.Timeline.Series, tl)
	}
	if len(p.CDF.Series) == 0 {
		return p, fmt.Errorf("no completed requests to plot")
	}
	return p, nil
}

// Sweep builds sweep curves of a metric ("window_wait", "ttft", "latency")
// from sweep-table rows, one series per policy name and source; x is the
// swept parameter's value. A curve gets error bars from the table's 95 %
// bounds (simrun --runs, or each run's own intervals) when every point of
// it has them.
func Sweep(rows []sim.TableRow, metric string, src plots.Source, prefix string) ([]plots.SweepSeries, string, error) {
	type stat struct{ y, lo, hi float64 }
	pick := map[string]func(r *sim.TableRow) (mean, p95 stat){
		"window_wait": func(r *sim.TableRow) (stat, stat) {
			return stat{r.WindowWaitMean, r.WindowWaitMeanLo, r.WindowWaitMeanHi}, stat{r.WindowWaitP95, r.WindowWaitP95Lo, r.WindowWaitP95Hi}
		},
		"ttft": func(r *sim.TableRow) (stat, stat) {
			return stat{r.TTFTMean, r.TTFTMeanLo, r.TTFTMeanHi}, stat{r.TTFTP95, r.TTFTP95Lo, r.TTFTP95Hi}
		},
		"latency": func(r *sim.TableRow) (stat, stat) {
			return stat{r.LatencyMean, r.LatencyMeanLo, r.LatencyMeanHi}, stat{r.LatencyP95, r.LatencyP95Lo, r.LatencyP95Hi}
		},
	}[metric]
	if pick == nil {
		return nil, "", fmt.Errorf("sweep tables hold window_wait, ttft and latency, not %q", metric)
	}
	byGroup := map[string]*plots.SweepSeries{}
	var order []string
	param := ""
	add := func(c *plots.Curve, st stat) {
		c.Y, c.Lo, c.Hi = append(c.Y, st.y), append(c.Lo, st.lo), append(c.Hi, st.hi)
	}
	for i := range rows {
		r := &rows[i]
		g := prefix + sweptPolicy(r.Policy, r.Param)
		s := byGroup[g]
		if s == nil {
			s = &plots.SweepSeries{Group: g, Source: src}
			byGroup[g] = s
			order = append(order, g)
		}
		if param == "" {
			param = r.Param
		}
		mean, p95 := pick(r)
		ov := stat{r.OverheadPct, r.OverheadPctLo, r.OverheadPctHi}
		if r.Runs == 0 {
			// A table written before the bounds existed reads them as 0.
			nan := math.NaN()
			mean.lo, mean.hi, p95.lo, p95.hi, ov.lo, ov.hi = nan, nan, nan, nan, nan, nan
		}
		s.X = append(s.X, r.Value)
		add(&s.Mean, mean)
		add(&s.P95, p95)
		add(&s.Overhead, ov)
	}
	var out []plots.SweepSeries
	for _, g := range order {
		s := byGroup[g]
		for _, o := range s.Overhead.Y {
			if o != o { // NaN: the sweep ran without a bare-engine baseline
				s.Overhead.Y = nil
				break
			}
		}
		for _, c := range []*plots.Curve{&s.Mean, &s.P95, &s.Overhead} {
			if c.Y == nil || !bounded(c) {
				c.Lo, c.Hi = nil, nil
			}
		}
		out = append(out, *s)
	}
	if len(out) == 0 {
		return nil, "", fmt.Errorf("sweep table has no rows")
	}
	return out, param, nil
}

// bounded reports whether every point of c has finite bounds around it.
func bounded(c *plots.Curve) bool {
	for i, y := range c.Y {
		lo, hi := c.Lo[i], c.Hi[i]
		if math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) || lo > y || hi < y {
			return false
		}
	}
	return true
}

// sweptPolicy is a swept run's spec without the swept key, so that every
// run of one sweep falls in one group ("fixed:anchor=first" of
// "fixed:window=1ms,anchor=first" swept over window).
func sweptPolicy(spec, param string) string {
	name, args, _ := strings.Cut(spec, ":")
	// Parameters at their defaults say nothing: "adaptive" reads better
	// than its eight settings.
	defaults := map[string]bool{}
	if p, err := policies.Parse(name); err == nil {
		_, d, _ := strings.Cut(p.Spec(), ":")
		for _, kv := range strings.Split(d, ",") {
			defaults[kv] = true
		}
	}
	var keep []string
	for _, kv := range strings.Split(args, ",") {
		if kv == "" || strings.HasPrefix(kv, param+"=") || defaults[kv] {
			continue
		}
		keep = append(keep, kv)
	}
	if len(keep) == 0 {
		return name
	}
	return name + ":" + strings.Join(keep, ",")
}
