package stats

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/stat/distuv"
)

func TestNPerArmMeanKnownValues(t *testing.T) {
	// Textbook: d = 0.5 SD, two-sided 5 %, 80 % power → 64 per arm with
	// the t correction (63 by the bare normal formula).
	assert.Equal(t, 64, NPerArmMean(1, 0.5, false, 0.95, 0.8))
	// Paired d = 0.5 SD of differences: 34 (normal formula 32).
	assert.Equal(t, 34, NPerArmMean(1, 0.5, true, 0.95, 0.8))
	assert.Equal(t, math.MaxInt, NPerArmMean(1, 0, false, 0.95, 0.8))
	assert.Equal(t, 2, NPerArmMean(0, 1, false, 0.95, 0.8))
}

// The formula's n must deliver ≈ 80 % power when tried: draw many
// experiments of that size with a true effect and count how often the 95 %
// CI excludes zero.
func TestNPerArmMeanPowerBySimulation(t *testing.T) {
	const trials = 1000
	for _, tc := range []struct {
		name   string
		paired bool
		sd, d  float64
	}{{"unpaired", false, 6.5, 2}, {"paired", true, 3, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			n := NPerArmMean(tc.sd, tc.d, tc.paired, 0.95, 0.8)
			r := rand.New(rand.NewPCG(20, 21))
			a, b := make([]float64, n), make([]float64, n)
			hits := 0
			for range trials {
				for i := range a {
					if tc.paired {
						a[i] = 400 + 10*r.NormFloat64()
						b[i] = a[i] + tc.d + tc.sd*r.NormFloat64()
					} else {
						a[i] = 400 + tc.sd*r.NormFloat64()
						b[i] = 400 + tc.d + tc.sd*r.NormFloat64()
					}
				}
				var iv Interval
				if tc.paired {
					iv, _, _ = PairedDiff(a, b, 0.95)
				} else {
					iv, _, _ = WelchDiff(a, b, 0.95)
				}
				if !iv.Contains(0) {
					hits++
				}
			}
			power := float64(hits) / trials
			assert.InDelta(t, 0.8, power, binomTol(0.8, trials), "n=%d power=%v", n, power)
		})
	}
}

// The asymptotic variance p(1−p)/(n f(q)²) that NPerArmQuantile relies on,
// checked against the simulated variance of the sample p99, and the KDE
// density against the true one.
func TestQuantileVarianceFormula(t *testing.T) {
	const n, trials, q = 2000, 600, 0.99
	r := rand.New(rand.NewPCG(22, 23))
	xs := make([]float64, n)
	est := make([]float64, trials)
	for i := range est {
		for j := range xs {
			xs[j] = r.NormFloat64()
		}
		slices.Sort(xs)
		est[i] = Quantile(xs, q)
	}
	sd := StdDev(est)
	f := distuv.UnitNormal.Prob(distuv.UnitNormal.Quantile(q))
	want := math.Sqrt(q * (1 - q) / (n * f * f))
	// An SD estimated from 600 draws is within ±12 % at 4 sigma.
	assert.InDelta(t, want, sd, 0.12*want, "simulated SD %v, formula %v", sd, want)

	kde := KDEDensity(xs, Quantile(xs, q))
	assert.InDelta(t, f, kde, 0.3*f, "KDE density %v, true %v", kde, f)
}

func TestNPerArmQuantile(t *testing.T) {
	r := rand.New(rand.NewPCG(24, 25))
	a, b := make([]float64, 5000), make([]float64, 5000)
	for i := range a {
		a[i] = r.NormFloat64()
		b[i] = a[i] + 0.3*r.NormFloat64()
	}
	// Unpaired from the true densities: n = (1.96+0.84)² · 2q(1−q)/f² / δ².
	q, d := 0.99, 0.25
	f := distuv.UnitNormal.Prob(distuv.UnitNormal.Quantile(q))
	z := distuv.UnitNormal.Quantile(0.975) + distuv.UnitNormal.Quantile(0.8)
	want := z * z * 2 * q * (1 - q) / (f * f) / (d * d)
	nu, w := NPerArmQuantile(a, b, q, d, false, 0.95, 0.8)
	assert.Empty(t, w)
	assert.InDelta(t, want, float64(nu), 0.35*want, "unpaired n %d vs %v", nu, want)
	np, _ := NPerArmQuantile(a, b, q, d, true, 0.95, 0.8)
	assert.Less(t, np, nu/2, "pairing strongly correlated arms must cut n: paired %d unpaired %d", np, nu)

	// The bootstrap-SE route agrees with the density route on unpaired data.
	boot := BootstrapDiff(a, b, []float64{q}, false, 0.95, BootstrapOptions{Resamples: 500, Seed: 3})
	nse := NPerArmFromSE(boot.QuantileSE[0], len(a), len(b), d, 0.95, 0.8)
	assert.InDelta(t, want, float64(nse), 0.35*want, "bootstrap-SE n %d vs %v", nse, want)
	bootP := BootstrapDiff(a, b, []float64{q}, true, 0.95, BootstrapOptions{Resamples: 500, Seed: 3})
	nsp := NPerArmFromSE(bootP.QuantileSE[0], len(a), len(b), d, 0.95, 0.8)
	assert.Less(t, nsp, nse/2, "paired bootstrap SE must cut n")

	_, w = NPerArmQuantile(a[:50], b[:50], q, d, false, 0.95, 0.8)
	require.Len(t, w, 1)
	assert.Contains(t, w[0], "order of magnitude")
}

// Pairing removes per-request variation shared by both arms: on data with a
// known small effect buried in large per-request spread, the paired design
// (same requests in both arms, paired t) finds it nearly always; two
// independent runs (Welch, Mann–Whitney) rarely do.
func TestPairedBeatsUnpairedPower(t *testing.T) {
	const trials, n, effect = 200, 100, 1.0
	r := rand.New(rand.NewPCG(26, 27))
	a, b := make([]float64, n), make([]float64, n)
	ia, ib := make([]float64, n), make([]float64, n)
	pairedHits, welchHits, mwHits, wrongHits := 0, 0, 0, 0
	for range trials {
		for i := range a {
			base := 400 + 10*r.NormFloat64() // prompt length etc., shared
			a[i] = base + 0.5*r.NormFloat64()
			b[i] = base + effect + 0.5*r.NormFloat64()
			ia[i] = 400 + 10*r.NormFloat64() + 0.5*r.NormFloat64()
			ib[i] = 400 + 10*r.NormFloat64() + effect + 0.5*r.NormFloat64()
		}
		if iv, _, _ := PairedDiff(a, b, 0.95); !iv.Contains(0) {
			pairedHits++
		}
		if iv, _, _ := WelchDiff(ia, ib, 0.95); !iv.Contains(0) {
			welchHits++
		}
		if p, _ := MannWhitneyP(ia, ib); p < 0.05 {
			mwHits++
		}
		// Paired data analysed as if independent: valid but wastes the
		// pairing (the shared spread inflates the standard error).
		if iv, _, _ := WelchDiff(a, b, 0.95); !iv.Contains(0) {
			wrongHits++
		}
	}
	assert.Greater(t, pairedHits, trials*95/100, "paired power")
	// Theory: δ/σ·√(n/2) ≈ 0.7 → about 11 % power for independent runs.
	assert.InDelta(t, 0.11, float64(welchHits)/trials, binomTol(0.11, trials), "Welch power")
	assert.Less(t, mwHits, trials*25/100, "Mann–Whitney power")
	assert.Less(t, wrongHits, trials*5/100, "unpaired analysis of paired data")
}
