package plots

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// Point is one (x, y) pair of a drawn series.
type Point struct{ X, Y float64 }

// checkFinite reports the first NaN or infinite value of vs.
func checkFinite(what string, vs []float64) error {
	for i, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s: value %d is %v; values must be finite", what, i, v)
		}
	}
	return nil
}

// CDF returns the empirical distribution function of sample as the points
// of a post-step line: one point per distinct value x, with Y = (number of
// values ≤ x) / len(sample), computed exactly as a ratio of integer counts.
// The sample is not modified.
func CDF(sample []float64) ([]Point, error) {
	if len(sample) == 0 {
		return nil, fmt.Errorf("cdf: empty sample")
	}
	if err := checkFinite("cdf", sample); err != nil {
		return nil, err
	}
	sorted := slices.Clone(sample)
	slices.Sort(sorted)
	n := float64(len(sorted))
	distinct := 1
	for i := 1; i < len(sorted); i++ {
		if sorted[i] != sorted[i-1] {
			distinct++
		}
	}
	// Sized exactly: for 10 M requests, growing by appends costs more
	// memory than the sample itself.
	pts := make([]Point, 0, distinct)
	for i := 0; i < len(sorted); i++ {
		// Ties collapse onto their last index so each step is drawn once.
		if i+1 < len(sorted) && sorted[i+1] == sorted[i] {
			continue
		}
		pts = append(pts, Point{X: sorted[i], Y: float64(i+1) / n})
	}
	return pts, nil
}

// QuantileIndex returns the index of the CDF point that holds the q-quantile
// of the sample: the smallest x with F(x) ≥ q (the inverse of the empirical
// CDF, Hyndman–Fan type 1). q=0 gives the minimum, q=1 the maximum.
func QuantileIndex(cdf []Point, q float64) int {
	i := sort.Search(len(cdf), func(i int) bool { return cdf[i].Y >= q })
	return min(i, len(cdf)-1)
}

// DefaultQuantiles are the quantiles DownsampleCDF keeps when none are given.
var DefaultQuantiles = []float64{0.5, 0.9, 0.95, 0.99, 0.999, 0.9999}

// Downsample says how DownsampleCDF thins a CDF.
type Downsample struct {
	// Middle is how many points the body of the distribution keeps, spread
	// evenly in cumulative rank (default 2000).
	Middle int
	// Tail is the probability mass of each tail kept point by point: points
	// below the Tail-quantile and above the (1−Tail)-quantile (default 0.01).
	Tail float64
	// TailCap bounds the points kept in each tail; a longer tail is thinned
	// evenly in rank (default 2000).
	TailCap int
	// Quantiles are always kept exactly (default DefaultQuantiles).
	Quantiles []float64
}

func (d Downsample) withDefaults() (Downsample, error) {
	if d.Middle == 0 {
		d.Middle = 2000
	}
	if d.Tail == 0 {
		d.Tail = 0.01
	}
	if d.TailCap == 0 {
		d.TailCap = 2000
	}
	if d.Quantiles == nil {
		d.Quantiles = DefaultQuantiles
	}
	switch {
	case d.Middle < 1:
		return d, fmt.Errorf("downsample: middle points %d must be at least 1", d.Middle)
	case d.TailCap < 1:
		return d, fmt.Errorf("downsample: tail cap %d must be at least 1", d.TailCap)
	case !(d.Tail > 0 && d.Tail < 0.5):
		return d, fmt.Errorf("downsample: tail %v must be in (0, 0.5)", d.Tail)
	}
	for _, q := range d.Quantiles {
		if !(q >= 0 && q <= 1) {
			return d, fmt.Errorf("downsample: quantile %v must be in [0, 1]", q)
		}
	}
	return d, nil
}

// DownsampleCDF thins the points of CDF (as returned by CDF) for drawing.
// Every kept point is an original point, so the minimum, the maximum and
// every requested quantile stay exact: the first and last points, the
// quantile points, all tail points up to TailCap per tail, and Middle points
// evenly spaced in cumulative rank between the tails. A CDF already small
// enough is returned unchanged (not copied).
func DownsampleCDF(cdf []Point, d Downsample) ([]Point, error) {
	d, err := d.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(cdf) == 0 {
		return nil, fmt.Errorf("downsample: empty cdf")
	}
	for i := 1; i < len(cdf); i++ {
		if !(cdf[i].X > cdf[i-1].X) || !(cdf[i].Y > cdf[i-1].Y) {
			return nil, fmt.Errorf("downsample: cdf point %d (%v, %v) does not increase from point %d", i, cdf[i].X, cdf[i].Y, i-1)
		}
	}
	if len(cdf) <= d.Middle+2*d.TailCap+len(d.Quantiles)+2 {
		return cdf, nil
	}
	last := len(cdf) - 1
	lo := QuantileIndex(cdf, d.Tail)   // first point of the body
	hi := QuantileIndex(cdf, 1-d.Tail) // last point of the body
	keep := make([]int, 0, d.Middle+2*d.TailCap+len(d.Quantiles)+4)
	keep = append(keep, 0, last, lo, hi)
	keep = evenly(keep, 0, lo, d.TailCap)
	keep = evenly(keep, hi, last, d.TailCap)
	// The body is thinned by probability, not by index, so that heavily tied
	// values (many equal waits) do not crowd out the rest.
	ylo, yhi := cdf[lo].Y, cdf[hi].Y
	for j := 1; j < d.Middle; j++ {
		level := ylo + (yhi-ylo)*float64(j)/float64(d.Middle)
		keep = append(keep, QuantileIndex(cdf, level))
	}
	for _, q := range d.Quantiles {
		keep = append(keep, QuantileIndex(cdf, q))
	}
	slices.Sort(keep)
	keep = slices.Compact(keep)
	out := make([]Point, len(keep))
	for i, k := range keep {
		out[i] = cdf[k]
	}
	return out, nil
}

// evenly appends the indices of [from, to] to keep, all of them when there
// are at most n, else n of them evenly spaced including both ends.
func evenly(keep []int, from, to, n int) []int {
	count := to - from + 1
	if count <= n {
		for i := from; i <= to; i++ {
			keep = append(keep, i)
		}
		return keep
	}
	if n == 1 {
		return append(keep, from, to)
	}
	for j := 0; j < n; j++ {
		keep = append(keep, from+int(int64(j)*int64(to-from)/int64(n-1)))
	}
	return keep
}

// DecimateXY thins a time series with ascending x to at most about
// 4×buckets points for drawing: the x range is cut into buckets of equal
// index count and each keeps its first, minimum, maximum and last point in
// x order. Peaks such as the deepest queue therefore survive exactly. A
// series of at most 4×buckets points is returned as is.
func DecimateXY(x, y []float64, buckets int) ([]Point, error) {
	if err := checkXY("decimate", x, y); err != nil {
		return nil, err
	}
	if buckets < 1 {
		return nil, fmt.Errorf("decimate: buckets %d must be at least 1", buckets)
	}
	n := len(x)
	if n <= 4*buckets {
		out := make([]Point, n)
		for i := range x {
			out[i] = Point{x[i], y[i]}
		}
		return out, nil
	}
	out := make([]Point, 0, 4*buckets)
	idx := make([]int, 0, 4)
	for b := 0; b < buckets; b++ {
		from := int(int64(b) * int64(n) / int64(buckets))
		to := int(int64(b+1)*int64(n)/int64(buckets)) - 1
		imin, imax := from, from
		for i := from + 1; i <= to; i++ {
			if y[i] < y[imin] {
				imin = i
			}
			if y[i] > y[imax] {
				imax = i
			}
		}
		idx = append(idx[:0], from, imin, imax, to)
		slices.Sort(idx)
		idx = slices.Compact(idx)
		for _, i := range idx {
			out = append(out, Point{x[i], y[i]})
		}
	}
	return out, nil
}

func checkXY(what string, x, y []float64) error {
	if len(x) == 0 {
		return fmt.Errorf("%s: empty series", what)
	}
	if len(x) != len(y) {
		return fmt.Errorf("%s: %d x values but %d y values", what, len(x), len(y))
	}
	if err := checkFinite(what+" x", x); err != nil {
		return err
	}
	if err := checkFinite(what+" y", y); err != nil {
		return err
	}
	for i := 1; i < len(x); i++ {
		if x[i] < x[i-1] {
			return fmt.Errorf("%s: x value %d (%v) is smaller than value %d (%v); x must be ascending", what, i, x[i], i-1, x[i-1])
		}
	}
	return nil
}

// ErrorBar is the extent of one error bar below and above its centre.
type ErrorBar struct{ Low, High float64 }

// ErrorBars turns confidence-interval bounds into error-bar extents around
// centre: Low = centre − lo, High = hi − centre. Each interval must contain
// its centre.
func ErrorBars(centre, lo, hi []float64) ([]ErrorBar, error) {
	if len(centre) != len(lo) || len(centre) != len(hi) {
		return nil, fmt.Errorf("error bars: %d centres but %d lower and %d upper bounds", len(centre), len(lo), len(hi))
	}
	for _, s := range []struct {
		name string
		v    []float64
	}{{"centre", centre}, {"lower bound", lo}, {"upper bound", hi}} {
		if err := checkFinite("error bars "+s.name, s.v); err != nil {
			return nil, err
		}
	}
	out := make([]ErrorBar, len(centre))
	for i, c := range centre {
		if lo[i] > c || hi[i] < c {
			return nil, fmt.Errorf("error bars: point %d: interval [%v, %v] does not contain %v", i, lo[i], hi[i], c)
		}
		out[i] = ErrorBar{Low: c - lo[i], High: hi[i] - c}
	}
	return out, nil
}

// Bin is one bar of a histogram: values v with Lo ≤ v < Hi.
type Bin struct {
	Lo, Hi   float64
	Count    int
	Fraction float64 // Count / total
}

// BatchHistogram counts batch sizes (non-negative integers) into bins of
// equal integer width, at most maxBins of them, starting at the smallest
// size. Width 1 — one bar per size — is used whenever it fits, so small
// batch sizes are never merged.
func BatchHistogram(sizes []float64, maxBins int) ([]Bin, error) {
	if len(sizes) == 0 {
		return nil, fmt.Errorf("histogram: no batch sizes")
	}
	if maxBins < 1 {
		return nil, fmt.Errorf("histogram: max bins %d must be at least 1", maxBins)
	}
	if err := checkFinite("histogram", sizes); err != nil {
		return nil, err
	}
	lo, hi := sizes[0], sizes[0]
	for i, s := range sizes {
		if s < 0 || s != math.Trunc(s) {
			return nil, fmt.Errorf("histogram: batch size %d is %v; sizes must be non-negative integers", i, s)
		}
		lo, hi = min(lo, s), max(hi, s)
	}
	span := int(hi-lo) + 1
	width := (span + maxBins - 1) / maxBins
	nbins := (span + width - 1) / width
	bins := make([]Bin, nbins)
	for i := range bins {
		bins[i].Lo = lo + float64(i*width)
		bins[i].Hi = bins[i].Lo + float64(width)
	}
	for _, s := range sizes {
		bins[int(s-lo)/width].Count++
	}
	n := float64(len(sizes))
	for i := range bins {
		bins[i].Fraction = float64(bins[i].Count) / n
	}
	return bins, nil
}
