package main

import (
	"github.com/batchkit/batchkit/plots"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/sim/series"
)

// drawPanel draws the predicted-vs-measured panel: latency CDFs, the
// timeline rebuilt from the results and the dispatched batch sizes.
func drawPanel(path, group string, measured, predicted []sim.Result, force bool) error {
	p, err := series.Panel("predicted (dashed) vs measured (solid): "+group, "latency", []series.Run{
		{Group: group, Source: plots.Measured, Results: measured},
		{Group: group, Source: plots.Predicted, Results: predicted},
	})
	if err != nil {
		return err
	}
	return plots.Save(path, p, plots.Options{}, force)
}
