package stats

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"
)

// DefaultPower is the chance of detecting a real effect of the stated size
// that sample-size guidance aims for.
const DefaultPower = 0.8

// NPerArmMean returns how many requests per arm a two-sided test at the
// given level needs to detect a difference of means of size delta with the
// given power. sd is the standard deviation of one arm (unpaired: pooled
// across arms) or of the per-request differences (paired).
//
// It starts from the normal approximation n = k·(z₁₋α/₂ + z_power)²·sd²/δ²
// (k = 2 unpaired, 1 paired) and then replaces z by Student t quantiles at
// the implied degrees of freedom until n settles, which corrects the
// normal formula's optimism for small n.
func NPerArmMean(sd, delta float64, paired bool, level, power float64) int {
	checkLevel(level)
	checkLevel(power)
	if !(delta > 0) || math.IsNaN(sd) {
		return math.MaxInt
	}
	if sd == 0 {
		return 2
	}
	k := 2.0
	if paired {
		k = 1
	}
	r := sd / delta
	za, zb := distuv.UnitNormal.Quantile(1-(1-level)/2), distuv.UnitNormal.Quantile(power)
	n := math.Max(2, math.Ceil(k*(za+zb)*(za+zb)*r*r))
	for range 50 {
		if n > 1e12 {
			return math.MaxInt
		}
		df := 2*n - 2
		if paired {
			df = n - 1
		}
		ta, tb := tQuantile(1-(1-level)/2, df), tQuantile(power, df)
		next := math.Max(2, math.Ceil(k*(ta+tb)*(ta+tb)*r*r))
		if next == n {
			break
		}
		n = next
	}
	return int(n)
}

// KDEDensity estimates the density of xs at x with a Gaussian kernel and
// Silverman's rule-of-thumb bandwidth, 0.9·min(sd, IQR/1.34)·n^(−1/5).
func KDEDensity(sorted []float64, x float64) float64 {
	n := len(sorted)
	if n < 2 {
		return math.NaN()
	}
	sd := StdDev(sorted)
	spread := sd
	if iqr := (Quantile(sorted, 0.75) - Quantile(sorted, 0.25)) / 1.34; iqr > 0 && iqr < spread {
		spread = iqr
	}
	h := 0.9 * spread * math.Pow(float64(n), -0.2)
	if h == 0 {
		return math.Inf(1)
	}
	var s float64
	for _, v := range sorted {
		z := (x - v) / h
		if z > -8 && z < 8 {
			s += math.Exp(-0.5 * z * z)
		}
	}
	return s / (float64(n) * h * math.Sqrt(2*math.Pi))
}

// NPerArmQuantile returns how many requests per arm are needed to detect a
// difference of delta in the q-quantile (p99 and the like), from the
// asymptotic variance of a sample quantile, q(1−q)/(n·f(ξ)²), with f
// estimated by KDEDensity at each arm's sample quantile. For paired arms the
// covariance of the two sample quantiles, (P(A≤ξa, B≤ξb) − q²)/(n·fa·fb),
// is estimated from the pairs and subtracted. This is a large-sample
// approximation with a normal test, less trustworthy than the mean's: tail
// densities are estimated from few points, so treat the answer as an order
// of magnitude; warnings say when the sample is too small to estimate them.
func NPerArmQuantile(a, b []float64, q, delta float64, paired bool, level, power float64) (int, []string) {
	checkLevel(level)
	checkLevel(power)
	if paired && len(a) != len(b) {
		panic("stats: paired NPerArmQuantile needs equal lengths")
	}
	var warns []string
	if len(a) < 2 || len(b) < 2 || !(delta > 0) {
		return math.MaxInt, []string{"need ≥ 2 samples per arm and a positive effect to estimate a sample size"}
	}
	sa, sb := slices.Clone(a), slices.Clone(b)
	slices.Sort(sa)
	slices.Sort(sb)
	xa, xb := Quantile(sa, q), Quantile(sb, q)
	fa, fb := KDEDensity(sa, xa), KDEDensity(sb, xb)
	if tail := math.Min(float64(len(a)), float64(len(b))) * (1 - q); tail < 10 {
		warns = append(warns, fmt.Sprintf("%s sample size rests on a density estimate from %.0f tail samples; treat it as an order of magnitude",
			QuantileName(q), math.Max(tail, 0)))
	}
	if math.IsInf(fa, 1) || math.IsInf(fb, 1) {
		return 2, append(warns, "no spread around the quantile; any effect is visible")
	}
	v := q*(1-q)/(fa*fa) + q*(1-q)/(fb*fb)
	if paired {
		var both int
		for i := range a {
			if a[i] <= xa && b[i] <= xb {
				both++
			}
		}
		cov := (float64(both)/float64(len(a)) - q*q) / (fa * fb)
		v -= 2 * cov
		if v <= 0 {
			v = math.SmallestNonzeroFloat64
		}
	}
	z := distuv.UnitNormal.Quantile(1-(1-level)/2) + distuv.UnitNormal.Quantile(power)
	n := math.Ceil(z * z * v / (delta * delta))
	if n > 1e12 {
		return math.MaxInt, warns
	}
	return int(math.Max(n, 2)), warns
}

// NPerArmFromSE turns an observed standard error of a difference (here the
// bootstrap SE of a quantile difference, paired or not) into the n per arm
// at which a two-sided test at level detects delta with the given power,
// assuming the SE shrinks as 1/√n: n = (z₁₋α/₂ + z_power)²·SE²·n̄/δ², with n̄
// the observed n (paired) or the harmonic mean of the arm sizes (unpaired).
// Unlike NPerArmQuantile it needs no density estimate and captures pairing
// directly, so Compare uses it for quantiles; it is as good as the bootstrap
// SE, which is poor for tail quantiles of small samples (Compare warns).
func NPerArmFromSE(se float64, nA, nB int, delta, level, power float64) int {
	checkLevel(level)
	checkLevel(power)
	if !(delta > 0) || math.IsNaN(se) || nA < 1 || nB < 1 {
		return math.MaxInt
	}
	nbar := 2 / (1/float64(nA) + 1/float64(nB))
	z := distuv.UnitNormal.Quantile(1-(1-level)/2) + distuv.UnitNormal.Quantile(power)
	n := math.Ceil(z * z * se * se * nbar / (delta * delta))
	if n > 1e12 {
		return math.MaxInt
	}
	return int(math.Max(n, 2))
}

// EffectWarning says in words whether a sample of n per arm can show an
// effect that needs need per arm.
func EffectWarning(e Effect, what string, need, have int) string {
	if need <= have {
		return ""
	}
	return fmt.Sprintf("a %s effect on %s needs ≈ %s requests per arm; this sample has %d", e, what, fmtCount(need), have)
}

func fmtCount(n int) string {
	if n == math.MaxInt {
		return "∞"
	}
	return fmt.Sprint(n)
}
