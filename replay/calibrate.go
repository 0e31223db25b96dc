package replay

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/batchkit/batchkit/realengine"
	"github.com/batchkit/batchkit/sim"
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
			BaseMS: round(c.Fit.Cost.BaseMs), PerPrefillTokenMS: round(c.Fit.Cost.PerPrefillTokenMs),
			PerDecodeSeqMS: round(c.Fit.Cost.PerDecodeSeqMs), PerKVTokenMS: round(c.Fit.Cost.PerKVTokenMs),
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
