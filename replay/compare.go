package replay

import (
	"math"

	"github.com/batchkit/batchkit/sim"
)

// MetricError compares one metric of a prediction with a measurement.
type MetricError struct {
	Metric    string  `json:"metric"`
	Predicted float64 `json:"predicted"`
	Measured  float64 `json:"measured"`
	// RelErr is (predicted - measured) / measured; nil when measured is 0.
	RelErr *float64 `json:"rel_err"`
	// AbsErr is predicted - measured, in the metric's unit (ms).
	AbsErr float64 `json:"abs_err"`
}

// Compare lists the errors of predicted against measured for the mean
// and p95 of TTFT, latency and window wait. Window waits are often near
// zero, so read their AbsErr (ms) rather than RelErr.
func Compare(predicted, measured *sim.Summary) []MetricError {
	pairs := []struct {
		name string
		p, m sim.Dist
	}{
		{"ttft_ms", predicted.TTFTMS, measured.TTFTMS},
		{"latency_ms", predicted.LatencyMS, measured.LatencyMS},
		{"window_wait_ms", predicted.WindowWaitMS, measured.WindowWaitMS},
	}
	var out []MetricError
	for _, x := range pairs {
		for _, q := range []struct {
			suffix string
			p, m   float64
		}{{".mean", x.p.Mean, x.m.Mean}, {".p95", x.p.P95, x.m.P95}} {
			e := MetricError{Metric: x.name + q.suffix, Predicted: q.p, Measured: q.m, AbsErr: q.p - q.m}
			if q.m != 0 && !math.IsNaN(q.m) {
				v := (q.p - q.m) / q.m
				e.RelErr = &v
			}
			out = append(out, e)
		}
	}
	return out
}
