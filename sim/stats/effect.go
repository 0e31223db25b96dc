package stats

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Effect is a difference the user wants to be able to detect: absolute
// (a duration such as 1ms) or relative to the baseline (0.5%).
type Effect struct {
	Abs      time.Duration // > 0 for an absolute effect
	Relative float64       // fraction (0.005 for 0.5%) for a relative effect
	Text     string        // as the user wrote it, for messages
}

// ParseEffect parses "1ms", "250us", "1.5s" or "0.5%". Errors are one line
// and say what was expected.
func ParseEffect(s string) (Effect, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Effect{}, fmt.Errorf("effect: empty; want a duration like 1ms or a percentage like 0.5%%")
	}
	if num, ok := strings.CutSuffix(t, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return Effect{}, fmt.Errorf("effect %q: %q is not a number; want a percentage like 0.5%%", s, num)
		}
		if v <= 0 || v >= 1000 {
			return Effect{}, fmt.Errorf("effect %q: percentage must be in (0, 1000)", s)
		}
		return Effect{Relative: v / 100, Text: t}, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return Effect{}, fmt.Errorf("effect %q: want a duration like 1ms or 250us, or a percentage like 0.5%%", s)
	}
	if d <= 0 {
		return Effect{}, fmt.Errorf("effect %q: must be positive", s)
	}
	return Effect{Abs: d, Text: t}, nil
}

// String renders the effect as the user wrote it (or canonically).
func (e Effect) String() string {
	if e.Text != "" {
		return e.Text
	}
	if e.Abs > 0 {
		return e.Abs.String()
	}
	return trimFloat(e.Relative*100) + "%"
}

// IsZero reports whether no effect was given.
func (e Effect) IsZero() bool { return e.Abs <= 0 && e.Relative <= 0 }

// Size converts the effect into the metric's units. unit is the duration of
// 1.0 in the metric's values (time.Millisecond for values in ms; 0 for
// metrics that are not times, such as tok/s). baseline is the value a
// relative effect is taken of (the A arm's statistic).
func (e Effect) Size(baseline float64, unit time.Duration) (float64, error) {
	switch {
	case e.Relative > 0:
		v := math.Abs(baseline) * e.Relative
		if v == 0 || math.IsNaN(v) {
			return 0, fmt.Errorf("relative effect %s of a zero baseline is zero", e)
		}
		return v, nil
	case e.Abs > 0:
		if unit <= 0 {
			return 0, fmt.Errorf("effect %s is a duration but the metric is not a time", e)
		}
		return float64(e.Abs) / float64(unit), nil
	}
	return 0, fmt.Errorf("no effect given")
}
