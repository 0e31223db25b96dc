package replay

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/batchkit/batchkit/realengine"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/trace"
)

// ProfileOptions are the parts of a profile a calibration cannot measure:
// how the serving stack batches.
type ProfileOptions struct {
	Name              string // default "<engine>-<model>"
	Mode              sim.Mode
	MaxBatch          int
	TokenBudget       int64
	RequestOverheadMS float64
}

// ProfileFromCalibration turns a calibration into a simulator profile,
// with the fit's coefficients, the measured jitter and provenance naming
// engine, model, device, date, grid and fit quality.
func ProfileFromCalibration(c *realengine.Calibration, o ProfileOptions) (sim.Profile, error) {
	name := o.Name
	if name == "" {
		name = c.Engine.Engine + "-" + strings.ReplaceAll(c.Engine.Model, "/", "_")
	}
	round := func(x float64) float64 { v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 6, 64), 64); return v }
	p := sim.Profile{
		Name: name, Mode: o.Mode, MaxBatch: o.MaxBatch, TokenBudget: o.TokenBudget,
		RequestOverheadMS: o.RequestOverheadMS,
		Step: sim.StepCost{
			BaseMS: round(c.Fit.Cost.BaseMs), PerPrefillSeqMS: round(c.Fit.Cost.PerPrefillSeqMs), PerPrefillTokenMS: round(c.Fit.Cost.PerPrefillTokenMs),
			PerPrefillTokenSqMS: round(c.Fit.Cost.PerPrefillTokenSqMs),
			PerDecodeSeqMS:      round(c.Fit.Cost.PerDecodeSeqMs), PerKVTokenMS: round(c.Fit.Cost.PerKVTokenMs),
		},
		JitterCV: round(c.JitterCV),
	}
	dropped := ""
	if len(c.Fit.Dropped) > 0 {
		dropped = "; fixed at 0 (fit made them negative): " + strings.Join(c.Fit.Dropped, ", ")
	}
	p.Provenance = fmt.Sprintf("calibrated by replay: engine %s, model %s, device %s, date %s, grid %s, %d points in %v; fit R² %.4f, median rel err %.2f%%, max rel err %.2f%%%s; jitter_cv is the median repeat CV; mode, max_batch and request_overhead_ms are the serving stack's, given on the command line",
		c.Engine.Engine, c.Engine.Model, c.Engine.Device, c.Started.UTC().Format(time.RFC3339), FormatGrid(c.Grid), len(c.Points),
		c.Elapsed.Round(time.Millisecond), c.Fit.R2, 100*c.Fit.MedianRelErr, 100*c.Fit.MaxRelErr, dropped)
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("calibrated profile: %v", err)
	}
	return p, nil
}

// FormatGrid writes a grid in the form ParseGrid reads.
func FormatGrid(g realengine.CalibrationGrid) string {
	ints := func(a []int) string {
		s := make([]string, len(a))
		for i, v := range a {
			s[i] = strconv.Itoa(v)
		}
		return strings.Join(s, ",")
	}
	s := fmt.Sprintf("prefill=%s;decode=%s;context=%s;warmup=%d;repeats=%d;seed=%d",
		ints(g.PrefillTokens), ints(g.DecodeBatch), ints(g.Context), g.Warmup, g.Repeats, g.Seed)
	if g.Vary {
		s += ";vary=true"
	}
	return s
}

// SmallGrid is a quick grid for the tiny preset and tests: a few seconds
// on two cores.
func SmallGrid() realengine.CalibrationGrid {
	return realengine.CalibrationGrid{
		PrefillTokens: []int{0, 16, 64},
		DecodeBatch:   []int{0, 1, 4, 8},
		Context:       []int{16, 64},
		Warmup:        1,
		Repeats:       3,
		Seed:          1,
	}
}

// ParseGrid reads "prefill=0,16,64;decode=0,1,4;context=16,128;warmup=2;
// repeats=5;seed=1;vary=false"; keys left out keep base's values. "default" and
// "small" name DefaultGrid and SmallGrid.
func ParseGrid(s string, base realengine.CalibrationGrid) (realengine.CalibrationGrid, error) {
	g := base
	s = strings.TrimSpace(s)
	switch s {
	case "", "default":
		return realengine.DefaultGrid(), nil
	case "small":
		return SmallGrid(), nil
	case "trace":
		return g, fmt.Errorf(`grid "trace" is drawn from the requests replayed: use it with replay --calibrate --predict`)
	}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return g, fmt.Errorf("grid %q: %q is not key=value", s, part)
		}
		k = strings.TrimSpace(k)
		list := func() ([]int, error) {
			var out []int
			for _, f := range strings.Split(v, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil || n < 0 {
					return nil, fmt.Errorf("grid key %s: %q is not a non-negative integer", k, f)
				}
				out = append(out, n)
			}
			return out, nil
		}
		one := func() (int, error) {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 {
				return 0, fmt.Errorf("grid key %s: %q is not a non-negative integer", k, v)
			}
			return n, nil
		}
		var err error
		switch k {
		case "prefill":
			g.PrefillTokens, err = list()
		case "decode":
			g.DecodeBatch, err = list()
		case "context":
			g.Context, err = list()
		case "warmup":
			g.Warmup, err = one()
		case "repeats":
			g.Repeats, err = one()
		case "seed":
			var n int
			n, err = one()
			g.Seed = uint64(n)
		case "vary":
			if g.Vary, err = strconv.ParseBool(strings.TrimSpace(v)); err != nil {
				err = fmt.Errorf("grid key vary: %q is not true or false", v)
			}
		default:
			return g, fmt.Errorf("grid %q: unknown key %q (want prefill, decode, context, warmup, repeats, seed, vary)", s, k)
		}
		if err != nil {
			return g, err
		}
	}
	return g, nil
}

// TraceGrid measures where reqs will run the engine, because the fit is
// linear through the grid and a fit through shapes the trace never
// brings misplaces the ones it does: prefills at the 25th, 50th and 90th
// percentiles of the prompt lengths and the longest (whose attention, the
// square term, a line through shorter ones would miss), decode batches 1,
// 2, 4, ... up to maxBatch (at most 32), at contexts of the 25th and 75th
// percentiles of prompt + output/2 (a sequence's mean context while
// decoding). On the cpu engine (small, 2 cores), for a continuous replay
// of poisson-moderate at 3x with fixed 2 ms, latency came out 11 %
// under-predicted with this grid (TTFT 4 %), 31-35 % with the default
// grid; replay then measures again at LoadDecode's batch sizes.
func TraceGrid(reqs []trace.Request, maxBatch int) realengine.CalibrationGrid {
	g := realengine.CalibrationGrid{Warmup: 2, Repeats: 5, Seed: 1}
	in := make([]int, len(reqs))
	ctx := make([]int, len(reqs))
	for i, r := range reqs {
		in[i] = int(r.InputTokens)
		ctx[i] = int(r.InputTokens) + int(r.OutputTokens)/2
	}
	slices.Sort(in)
	slices.Sort(ctx)
	q := func(v []int, p float64) int {
		if len(v) == 0 {
			return 1
		}
		return max(1, v[int(p*float64(len(v)-1))])
	}
	g.PrefillTokens = uniqueInts(0, q(in, 0.25), q(in, 0.5), q(in, 0.9), q(in, 1))
	g.Context = uniqueInts(q(ctx, 0.25), q(ctx, 0.75))
	g.DecodeBatch = []int{0}
	for d := 1; d <= min(max(maxBatch, 1), 32); d *= 2 {
		g.DecodeBatch = append(g.DecodeBatch, d)
	}
	return g
}

// LoadDecode returns the decode batch sizes a load runs the engine at,
// from a prediction of it: the 10th, 50th and 90th percentiles, weighted
// by time, of how many sequences decode at once while any does (from each
// result's first token to its finish), with 0 (prefill alone) and at
// least two sizes above 0 so that a line can be fitted (none above
// maxBatch); nil when no request decodes. A trace grid's decode batches
// 1..32 put the fitted line where the engine runs at 32, which a load of
// 4-8 never reaches: on the cpu engine that under-predicted such a load's
// latency by 11 %.
func LoadDecode(results []sim.Result, maxBatch int) []int {
	type ev struct {
		t int64
		d int
	}
	var evs []ev
	for _, r := range results {
		if r.Status == sim.StatusOK && r.FinishNS > r.FirstTokenNS {
			evs = append(evs, ev{r.FirstTokenNS, 1}, ev{r.FinishNS, -1})
		}
	}
	if len(evs) == 0 {
		return nil
	}
	slices.SortFunc(evs, func(a, b ev) int { return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.d, b.d)) })
	// at[c] is how long c sequences decode at once.
	var at []int64
	n := 0
	for i, e := range evs {
		if i > 0 && n > 0 {
			for len(at) <= n {
				at = append(at, 0)
			}
			at[n] += e.t - evs[i-1].t
		}
		n += e.d
	}
	var total int64
	for _, d := range at {
		total += d
	}
	q := func(p float64) int {
		var acc int64
		for c, d := range at {
			acc += d
			if float64(acc) >= p*float64(total) && d > 0 {
				return c
			}
		}
		return len(at) - 1
	}
	lo, mid, hi := q(0.1), q(0.5), q(0.9)
	if lo == hi {
		lo, hi = max(1, lo/2), hi*2
	}
	return uniqueInts(0, max(1, lo), mid, max(2, min(hi, maxBatch)))
}

func uniqueInts(v ...int) []int {
	slices.Sort(v)
	return slices.Compact(v)
}
