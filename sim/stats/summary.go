package stats

import (
	"slices"
)

// Summary is one sample (one metric of one run) with intervals on every
// statistic a report prints: the mean (t) and each quantile (exact order
// statistic).
type Summary struct {
	N         int
	Mean      Interval
	SD        float64
	Quantiles []Interval // same order as the qs argument of Summarize
	Warnings  []string
}

// Summarize computes a Summary at the given level; xs is not modified.
func Summarize(xs []float64, qs []float64, level float64) Summary {
	s := Summary{N: len(xs), SD: StdDev(xs), Quantiles: make([]Interval, len(qs))}
	var w []string
	s.Mean, w = MeanCI(xs, level)
	s.Warnings = append(s.Warnings, w...)
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	for i, q := range qs {
		s.Quantiles[i], w = QuantileCISorted(sorted, q, level)
		for _, x := range w {
			if !slices.Contains(s.Warnings, x) {
				s.Warnings = append(s.Warnings, x)
			}
		}
	}
	return s
}
