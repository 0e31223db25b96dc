// Package plots draws comparison figures for batching experiments: CDF
// overlays, sweep curves, run timelines, batch-size histograms and a 2×2
// panel combining them, as PNG, SVG or PDF (gonum.org/v1/plot).
//
// It takes plain series — slices of float64 with a group name and a
// Predicted/Measured flag — and owns the data transforms that make large
// runs plottable without losing what matters (exact CDF steps, downsampling
// that keeps extremes and quantiles, error-bar values from CI bounds).
//
// Every series of one group is drawn in the same colour; predicted series
// are dashed and measured series solid, so a simulator prediction and the
// replay measurement of the same policy read as a pair.
//
// The package must not import any other project package (simulator,
// replay, trace): commands convert their results into these series. It
// does no statistics beyond what drawing needs; confidence intervals
// arrive as bounds computed elsewhere.
package plots
