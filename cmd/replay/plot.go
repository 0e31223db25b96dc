package main

import (
	"sort"

	"github.com/batchkit/batchkit/plots"
	"github.com/batchkit/batchkit/sim"
)

// drawPanel draws the predicted-vs-measured panel: latency CDFs, a
// timeline derived from the results and the dispatched batch sizes.
func drawPanel(path, group string, measured, predicted []sim.Result, force bool) error {
	p := plots.Panel{
		Title: "predicted (dashed) vs measured (solid): " + group,
		CDF:   plots.CDFPlot{Metric: "latency", Unit: "ms", LogX: true},
	}
	for _, x := range []struct {
		res []sim.Result
		src plots.Source
	}{{measured, plots.Measured}, {predicted, plots.Predicted}} {
		var lat, batches []float64
		seen := map[int64]bool{}
		for _, r := range x.res {
			if r.Status != sim.StatusOK {
				continue
			}
			lat = append(lat, float64(r.FinishNS-r.ArrivalNS)/1e6)
			if !seen[r.BatchID] {
				seen[r.BatchID] = true
				batches = append(batches, float64(r.BatchSize))
			}
		}
		if len(lat) == 0 {
			continue
		}
		p.CDF.Series = append(p.CDF.Series, plots.Sample{Group: group, Source: x.src, Values: lat})
		p.Histogram.Series = append(p.Histogram.Series, plots.Sample{Group: group, Source: x.src, Values: batches})
		p.Timeline.Series = append(p.Timeline.Series, timeline(group, x.src, x.res))
	}
	return plots.Save(path, p, plots.Options{}, force)
}

// timeline rebuilds queue depth (enqueued, not dispatched), running
// sequences (engine start to finish) and batch dispatches from results.
func timeline(group string, src plots.Source, res []sim.Result) plots.TimelineSeries {
	type ev struct {
		t        int64
		dq, drun int
	}
	var evs []ev
	type batch struct {
		t    int64
		size int32
	}
	var bs []batch
	seen := map[int64]bool{}
	for _, r := range res {
		if r.DispatchNS >= 0 {
			evs = append(evs, ev{r.EnqueueNS, 1, 0}, ev{r.DispatchNS, -1, 0})
			if !seen[r.BatchID] {
				seen[r.BatchID] = true
				bs = append(bs, batch{r.DispatchNS, r.BatchSize})
			}
		}
		if r.EngineStartNS >= 0 && r.FinishNS >= 0 {
			evs = append(evs, ev{r.EngineStartNS, 0, 1}, ev{r.FinishNS, 0, -1})
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
			continue
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
