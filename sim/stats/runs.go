package stats

import (
	"math"
	"slices"
)

// RunSummary summarises one statistic measured once per run over N repeated
// runs (different seeds, or bootstrap resamples of a fixed trace): the
// run-to-run spread is the noise a single run hides.
type RunSummary struct {
	N        int      `json:"n"`
	Mean     float64  `json:"mean"`
	SD       float64  `json:"sd"`
	Min      float64  `json:"min"`
	Max      float64  `json:"max"`
	CV       float64  `json:"cv"` // SD / |Mean|
	CI       Interval `json:"ci"` // t interval for the mean across runs
	Warnings []string `json:"warnings,omitempty"`
}

// SummarizeRuns summarises run-level values at the given confidence level.
func SummarizeRuns(values []float64, level float64) RunSummary {
	ci, warns := MeanCI(values, level)
	s := RunSummary{N: len(values), Mean: ci.Est, SD: StdDev(values), CI: ci, Warnings: warns,
		Min: math.NaN(), Max: math.NaN(), CV: math.NaN()}
	if len(values) > 0 {
		s.Min, s.Max = slices.Min(values), slices.Max(values)
	}
	if s.Mean != 0 && !math.IsNaN(s.SD) {
		s.CV = s.SD / math.Abs(s.Mean)
	}
	if len(values) > 0 && len(values) < 5 {
		s.Warnings = append(s.Warnings, "fewer than 5 runs: the spread itself is poorly known")
	}
	return s
}

// RunSeeds derives n well-separated seeds from one base seed (splitmix64),
// so `--runs N` gives each run its own stream while the whole set stays
// reproducible from the single seed the user passed.
func RunSeeds(base uint64, n int) []uint64 {
	seeds := make([]uint64, n)
	x := base
	for i := range seeds {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		seeds[i] = z ^ (z >> 31)
	}
	return seeds
}
