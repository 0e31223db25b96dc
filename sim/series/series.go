// Package series turns results of the simulator and of replay (sim.Result
// rows) into the plain series that package plots draws: per-request metric
// samples, dispatched batch sizes and a run's timeline. It is the one place
// that knows both the results schema and the plots' inputs, so that every
// command draws the same run the same way. It renders nothing itself.
package series

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/batchkit/batchkit/plots"
	"github.com/batchkit/batchkit/sim"
)

// Metrics are the per-request metrics Metric knows, all in ms.
var Metrics = []string{"window_wait", "engine_queue", "ttft", "latency", "tpot"}

// Metric returns one value per completed request, in ms.
func Metric(res []sim.Result, metric string) ([]float64, error) {
	var f func(r *sim.Result) (float64, bool)
	switch metric {
	case "window_wait":
		f = func(r *sim.Result) (float64, bool) { return ms(r.WindowWaitNS), true }
	case "engine_queue":
		f = func(r *sim.Result) (float64, bool) { return ms(r.EngineQueueWaitNS), true }
	case "ttft":
		f = func(r *sim.Result) (float64, bool) { return ms(r.FirstTokenNS - r.ArrivalNS), true }
	case "latency":
		f = func(r *sim.Result) (float64, bool) { return ms(r.FinishNS - r.ArrivalNS), true }
	case "tpot":
		f = func(r *sim.Result) (float64, bool) {
			if r.OutputTokens < 2 {
				return 0, false
			}
			return ms(r.FinishNS-r.FirstTokenNS) / float64(r.OutputTokens-1), true
		}
	default:
		return nil, fmt.Errorf("unknown metric %q (known: %s)", metric, strings.Join(Metrics, ", "))
	}
	out := make([]float64, 0, len(res))
	for i := range res {
		if res[i].Status != sim.StatusOK {
			continue
		}
		if v, ok := f(&res[i]); ok {
			out = append(out, v)
		}
	}
	return out, nil
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// BatchSizes returns the size of every dispatched batch, once per batch.
func BatchSizes(res []sim.Result) []float64 {
	seen := map[int64]bool{}
	var out []float64
	for _, r := range res {
		if r.DispatchNS < 0 || seen[r.BatchID] {
			continue
		}
		seen[r.BatchID] = true
		out = append(out, float64(r.BatchSize))
	}
	return out
}

// Timeline rebuilds a run over time from its results: queue depth
// (enqueued, not yet dispatched), running sequences (engine start to
// finish) and each batch's size at its dispatch. Times in seconds.
func Timeline(group string, src plots.Source, res []sim.Result) plots.TimelineSeries {
	type change struct {
		t        int64
		dq, drun int
	}
	type batch struct {
		t    int64
		size int32
	}
	var evs []change
	var bs []batch
	seen := map[int64]bool{}
	for _, r := range res {
		if r.DispatchNS >= 0 {
			evs = append(evs, change{r.EnqueueNS, 1, 0}, change{r.DispatchNS, -1, 0})
			if !seen[r.BatchID] {
				seen[r.BatchID] = true
				bs = append(bs, batch{r.DispatchNS, r.BatchSize})
			}
		}
		if r.EngineStartNS >= 0 && r.FinishNS >= 0 {
			evs = append(evs, change{r.EngineStartNS, 0, 1}, change{r.FinishNS, 0, -1})
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].t < evs[j].t })
	sort.Slice(bs, func(i, j int) bool { return bs[i].t < bs[j].t })
	ts := plots.TimelineSeries{Group: group, Source: src}
	q, run := 0, 0
	for i, e := range evs {
		q += e.dq
		run += e.drun
		if i+1 < len(evs) && evs[i+1].t == e.t {
			continue // one point per instant, after all its changes
		}
		t := float64(e.t) / 1e9
		ts.Queue.T, ts.Queue.V = append(ts.Queue.T, t), append(ts.Queue.V, float64(q))
		ts.Running.T, ts.Running.V = append(ts.Running.T, t), append(ts.Running.V, float64(run))
	}
	for _, b := range bs {
		ts.Batches.T, ts.Batches.V = append(ts.Batches.T, float64(b.t)/1e9), append(ts.Batches.V, float64(b.size))
	}
	return ts
}

// Run is one results file to draw.
type Run struct {
	Group   string // colour group: policy or configuration
	Source  plots.Source
	Results []sim.Result
}

// Panel builds the 2×2 comparison of runs: the metric's CDF, the timeline
// and the batch-size histogram (a sweep part is added by the caller when
// it has sweep tables).
func Panel(title, metric string, runs []Run) (plots.Panel, error) {
	p := plots.Panel{
		Title: title,
		CDF:   plots.CDFPlot{Metric: strings.ReplaceAll(metric, "_", " "), Unit: "ms", LogX: true},
	}
	for _, r := range runs {
		vals, err := Metric(r.Results, metric)
		if err != nil {
			return p, err
		}
		if len(vals) == 0 {
			continue
		}
		p.CDF.Series = append(p.CDF.Series, plots.Sample{Group: r.Group, Source: r.Source, Values: vals})
		p.Histogram.Series = append(p.Histogram.Series, plots.Sample{Group: r.Group, Source: r.Source, Values: BatchSizes(r.Results)})
		p.Timeline.Series = append(p.Timeline.Series, Timeline(r.Group, r.Source, r.Results))
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
		s.X = append(s.X, r.Value)
		add(&s.Mean, mean)
		add(&s.P95, p95)
		add(&s.Overhead, stat{r.OverheadPct, r.OverheadPctLo, r.OverheadPctHi})
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

// bounded reports whether every point of c has finite bounds around it;
// tables from before the bounds existed read them as zeros.
func bounded(c *plots.Curve) bool {
	for i, y := range c.Y {
		lo, hi := c.Lo[i], c.Hi[i]
		if math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) || lo > y || hi < y || (lo == 0 && hi == 0 && y != 0) {
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
	var keep []string
	for _, kv := range strings.Split(args, ",") {
		if kv == "" || strings.HasPrefix(kv, param+"=") {
			continue
		}
		keep = append(keep, kv)
	}
	if len(keep) == 0 {
		return name
	}
	return name + ":" + strings.Join(keep, ",")
}
