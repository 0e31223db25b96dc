package stats

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"gonum.org/v1/gonum/stat/distuv"
)

// Method names, shown next to every interval so a reader knows what
// produced it.
const (
	MethodT               = "t"                // Student t interval for a mean
	MethodWelch           = "welch-t"          // Welch t interval for a difference of means
	MethodPairedT         = "paired-t"         // t interval on per-request differences
	MethodOrderStat       = "order-stat"       // exact binomial order-statistic interval
	MethodBootstrap       = "bootstrap"        // seeded percentile bootstrap
	MethodPairedBootstrap = "paired-bootstrap" // bootstrap resampling request pairs
	MethodMannWhitney     = "mann-whitney-u"   // Mann–Whitney U test (benchmath)
)

// Interval is an estimate with a two-sided confidence interval.
type Interval struct {
	Est    float64 // point estimate
	Lo, Hi float64 // bounds; ±Inf when the sample is too small for a finite bound
	// Level is the confidence the method guarantees or targets; the exact
	// order-statistic interval reports its achieved (≥ requested) level.
	Level  float64
	Method string
}

// Contains reports whether x lies inside the closed interval.
func (iv Interval) Contains(x float64) bool { return iv.Lo <= x && x <= iv.Hi }

// Finite reports whether both bounds are finite numbers.
func (iv Interval) Finite() bool {
	return !math.IsInf(iv.Lo, 0) && !math.IsInf(iv.Hi, 0) && !math.IsNaN(iv.Lo) && !math.IsNaN(iv.Hi)
}

// Mean returns the arithmetic mean (NaN for an empty slice).
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// StdDev returns the sample standard deviation (n−1 denominator); NaN for
// fewer than two values.
func StdDev(xs []float64) float64 {
	if len(xs) < 2 {
		return math.NaN()
	}
	m := Mean(xs)
	var ss float64
	for _, x := range xs {
		d := x - m
		ss += d * d
	}
	return math.Sqrt(ss / float64(len(xs)-1))
}

// Quantile returns the q-quantile of an ascending slice by linear
// interpolation between order statistics (R type 7, numpy's default), so
// p50/p95/p99 match what other tools print for the same data.
func Quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	h := float64(n-1) * q
	k := int(math.Floor(h))
	if k >= n-1 {
		return sorted[n-1]
	}
	if k < 0 {
		return sorted[0]
	}
	f := h - float64(k)
	return sorted[k] + f*(sorted[k+1]-sorted[k])
}

// tQuantiles caches tQuantile: inverting the incomplete beta function
// costs tens of µs, more than a whole small summary, and callers ask for
// the same few (level, df) pairs again and again.
var tQuantiles struct {
	sync.Mutex
	m map[[2]float64]float64
}

func tQuantile(p, df float64) float64 {
	if math.IsInf(df, 1) || df > 1e7 {
		return distuv.UnitNormal.Quantile(p)
	}
	k := [2]float64{p, df}
	tQuantiles.Lock()
	v, ok := tQuantiles.m[k]
	tQuantiles.Unlock()
	if ok {
		return v
	}
	v = distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}.Quantile(p)
	tQuantiles.Lock()
	if tQuantiles.m == nil || len(tQuantiles.m) > 4096 {
		tQuantiles.m = map[[2]float64]float64{}
	}
	tQuantiles.m[k] = v
	tQuantiles.Unlock()
	return v
}

func tCDF(x, df float64) float64 {
	if math.IsInf(df, 1) || df > 1e7 {
		return distuv.UnitNormal.CDF(x)
	}
	return distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}.CDF(x)
}

// checkLevel rejects confidence levels outside (0,1): a caller bug, not
// user input, hence a panic.
func checkLevel(level float64) {
	if !(level > 0 && level < 1) {
		panic(fmt.Sprintf("stats: confidence level %v outside (0,1)", level))
	}
}

// MeanCI returns the mean with a Student t interval. Fewer than two values
// give an infinite interval and a warning.
func MeanCI(xs []float64, level float64) (Interval, []string) {
	return MeanCIMoments(len(xs), Mean(xs), StdDev(xs), level)
}

// QuantileCI returns the q-quantile with an exact, distribution-free
// order-statistic interval; xs need not be sorted and is not modified.
func QuantileCI(xs []float64, q, level float64) (Interval, []string) {
	s := slices.Clone(xs)
	slices.Sort(s)
	return QuantileCISorted(s, q, level)
}

// QuantileCISorted is QuantileCI for an ascending slice, avoiding a copy.
// The bounds are the order statistics QuantileCIRanks picks; the achieved
// level is reported in Level.
func QuantileCISorted(sorted []float64, q, level float64) (Interval, []string) {
	checkLevel(level)
	n := len(sorted)
	iv := Interval{Est: Quantile(sorted, q), Lo: math.Inf(-1), Hi: math.Inf(1), Level: 1, Method: MethodOrderStat}
	var warns []string
	if n == 0 {
		return iv, []string{"no samples"}
	}
	if w := quantileWarning(n, q, level); w != "" {
		warns = append(warns, w)
	}
	lo, hi, achieved := QuantileCIRanks(n, q, level)
	if lo >= 0 {
		iv.Lo = sorted[lo]
	}
	if hi < n {
		iv.Hi = sorted[hi]
	}
	iv.Level = achieved
	return iv, warns
}

// QuantileCIRanks gives the 0-based order statistics that bound the exact
// interval of the q-quantile of n samples, for callers that keep their
// samples in another form than a sorted slice (the simulator's
// summaries): [X(lo), X(hi)] in 0-based ranks. lo = −1 means no finite
// lower bound, hi = n no finite upper bound. achieved is the interval's
// coverage, at least level when both bounds are finite.
//
// The number of samples below the true q-quantile is Binomial(n, q), so
// [X(l), X(u)] (1-based) covers it with probability F(u−1) − F(l−1). We take
// the equal-tailed choice: l the largest order with F(l−1) ≤ α/2, u the
// smallest with F(u−1) ≥ 1−α/2.
func QuantileCIRanks(n int, q, level float64) (lo, hi int, achieved float64) {
	checkLevel(level)
	if n <= 0 {
		return -1, n, 1
	}
	alpha := 1 - level
	bin := distuv.Binomial{N: float64(n), P: q}
	cdf := func(k int) float64 { // P(B ≤ k)
		if k < 0 {
			return 0
		}
		if k >= n {
			return 1
		}
		return bin.CDF(float64(k))
	}
	// l in [0, n]: largest with cdf(l-1) ≤ α/2 (l = 0 means −∞).
	l := searchLast(0, n, func(l int) bool { return cdf(l-1) <= alpha/2 })
	// u in [1, n+1]: smallest with cdf(u-1) ≥ 1−α/2 (u = n+1 means +∞).
	u := searchFirst(1, n+1, func(u int) bool { return cdf(u-1) >= 1-alpha/2 })
	return l - 1, u - 1, cdf(u-1) - cdf(l-1)
}

// MeanCIMoments is MeanCI from a sample's size, mean and standard
// deviation, for callers that keep running sums instead of the values.
func MeanCIMoments(n int, mean, sd, level float64) (Interval, []string) {
	checkLevel(level)
	iv := Interval{Est: mean, Lo: math.Inf(-1), Hi: math.Inf(1), Level: level, Method: MethodT}
	if n < 2 || math.IsNaN(sd) {
		return iv, []string{fmt.Sprintf("need ≥ 2 samples for a %s CI of the mean; have %d", pct(level), n)}
	}
	half := tQuantile(1-(1-level)/2, float64(n-1)) * sd / math.Sqrt(float64(n))
	iv.Lo, iv.Hi = mean-half, mean+half
	return iv, nil
}

// QuantileWarning explains, in words, when the q-quantile of n samples says
// little ("p99 of 50 samples is the maximum; need ≥ 368 samples for a 95 %
// CI"); "" when it is fine.
func QuantileWarning(n int, q, level float64) string { return quantileWarning(n, q, level) }

// searchFirst returns the smallest x in [lo, hi] with ok(x), assuming ok is
// monotone false→true; hi if none.
func searchFirst(lo, hi int, ok func(int) bool) int {
	for lo < hi {
		m := lo + (hi-lo)/2
		if ok(m) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// searchLast returns the largest x in [lo, hi] with ok(x), assuming ok is
// monotone true→false; lo if none.
func searchLast(lo, hi int, ok func(int) bool) int {
	for lo < hi {
		m := lo + (hi-lo+1)/2
		if ok(m) {
			lo = m
		} else {
			hi = m - 1
		}
	}
	return lo
}

// MinSamplesQuantileCI is the smallest n for which the exact order-statistic
// interval of the q-quantile has both bounds finite at the given level:
// both qⁿ and (1−q)ⁿ must fall to α/2. For the median at 95 % that is 6;
// for p99 it is 368.
func MinSamplesQuantileCI(q, level float64) int {
	checkLevel(level)
	a := (1 - level) / 2
	m := math.Max(q, 1-q)
	if m >= 1 {
		return math.MaxInt
	}
	return int(math.Ceil(math.Log(a) / math.Log(m)))
}

// quantileWarning explains, in words, when a quantile of n samples says
// little: too few samples for a finite interval, or a tail quantile that is
// just the largest value.
func quantileWarning(n int, q, level float64) string {
	name := QuantileName(q)
	need := MinSamplesQuantileCI(q, level)
	switch {
	case float64(n)*(1-q) < 1 && q > 0.5:
		return fmt.Sprintf("%s of %d samples is the maximum; need ≥ %d samples for a %s CI", name, n, need, pct(level))
	case n < need:
		return fmt.Sprintf("need ≥ %d samples for a %s CI of %s; have %d", need, pct(level), name, n)
	}
	return ""
}

// QuantileName renders 0.99 as "p99", 0.5 as "p50", 0.999 as "p99.9".
func QuantileName(q float64) string {
	return "p" + trimFloat(q*100)
}

func trimFloat(x float64) string {
	return fmt.Sprintf("%.6g", math.Round(x*1e6)/1e6)
}

// pct renders a level such as 0.95 as "95 %".
func pct(level float64) string { return trimFloat(level*100) + " %" }
