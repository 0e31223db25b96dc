package stats

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sort"
)

// DefaultResamples caps bootstrap work: 1000 resamples put the Monte Carlo
// error of a 95 % percentile bound at a few percent of the interval's width
// and keep a 100k-request comparison near a second per metric on one core.
const DefaultResamples = 1000

// newRand gives every bootstrap its own stream derived from the caller's
// seed only, so results are byte-identical across runs and machines.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
}

// Resampler draws bootstrap index sets of a fixed sample: with replacement,
// n indices into [0, n). `--runs N` on a fixed trace uses one resample per
// run.
type Resampler struct {
	n   int
	rng *rand.Rand
}

// NewResampler returns a seeded resampler over a sample of size n (n ≥ 1).
func NewResampler(n int, seed uint64) *Resampler {
	if n < 1 {
		panic("stats: NewResampler needs n ≥ 1")
	}
	return &Resampler{n: n, rng: newRand(seed)}
}

// Next fills dst (grown or reused) with n indices drawn with replacement.
func (r *Resampler) Next(dst []int) []int {
	dst = slices.Grow(dst[:0], r.n)[:r.n]
	for i := range dst {
		dst[i] = r.rng.IntN(r.n)
	}
	return dst
}

// counts draws multinomial resample weights: w[i] is how often element i
// appears in one bootstrap resample. Working with weights over a presorted
// order lets every quantile of a resample be read in one O(n) walk, with no
// sorting per resample.
func (r *Resampler) counts(w []int32) {
	clear(w)
	// Multiply-high maps a 64-bit draw onto [0, n) with bias below n/2⁶⁴,
	// cheaper than IntN's rejection loop in this hot path.
	n := uint64(r.n)
	for range r.n {
		hi, _ := bits.Mul64(r.rng.Uint64(), n)
		w[hi]++
	}
}

// weightedQuantiles writes into out the type-7 quantiles qs of the resample
// described by weights w over the order perm (indices into xs sorted by xs).
// qs must be ascending.
func weightedQuantiles(xs []float64, perm []int32, w []int32, qs []float64, out []float64) {
	n := 0
	for _, c := range w {
		n += int(c)
	}
	cum := 0 // count of resample values strictly before position p in perm
	p := 0
	// seek advances the walk to the element holding 0-based rank k. Only
	// the lower rank of each quantile seeks, and those ranks are
	// non-decreasing, so the walk never needs to go back.
	seek := func(k int) {
		for k >= cum+int(w[perm[p]]) {
			cum += int(w[perm[p]])
			p++
		}
	}
	// peek returns the value of rank k ≥ the current one without moving.
	peek := func(k int) float64 {
		c, j := cum, p
		for k >= c+int(w[perm[j]]) {
			c += int(w[perm[j]])
			j++
		}
		return xs[perm[j]]
	}
	for qi, q := range qs {
		h := float64(n-1) * q
		k := int(math.Floor(h))
		if k >= n-1 {
			k = n - 1
		}
		seek(k)
		lo := xs[perm[p]]
		if k == n-1 {
			out[qi] = lo
			continue
		}
		hi := peek(k + 1)
		out[qi] = lo + (h-float64(k))*(hi-lo)
	}
}

func identityPerm(n int) []int32 {
	perm := make([]int32, n)
	for i := range perm {
		perm[i] = int32(i)
	}
	return perm
}

func sortPerm(xs []float64) []int32 {
	perm := make([]int32, len(xs))
	for i := range perm {
		perm[i] = int32(i)
	}
	sort.SliceStable(perm, func(i, j int) bool { return xs[perm[i]] < xs[perm[j]] })
	return perm
}

func weightedMean(xs []float64, w []int32) float64 {
	var s float64
	n := 0
	// Branch-free: most weights are 0 or 1 in no pattern, so a test
	// mispredicts constantly.
	for i, c := range w {
		s += float64(c) * xs[i]
		n += int(c)
	}
	return s / float64(n)
}

// percentileInterval turns bootstrap replicates into a percentile interval
// around est. reps is sorted in place.
func percentileInterval(est float64, reps []float64, level float64, method string) Interval {
	slices.Sort(reps)
	a := (1 - level) / 2
	return Interval{Est: est, Lo: Quantile(reps, a), Hi: Quantile(reps, 1-a), Level: level, Method: method}
}

// BootstrapOptions configures a bootstrap. Zero values mean
// DefaultResamples and seed 0.
type BootstrapOptions struct {
	Resamples int
	Seed      uint64
}

func (o BootstrapOptions) resamples() int {
	if o.Resamples <= 0 {
		return DefaultResamples
	}
	return o.Resamples
}

// BootstrapCI is the general percentile bootstrap for a statistic of n
// items that has no closed-form interval (throughput = tokens / span,
// ratios, anything computed from several columns). stat receives the
// resampled indices; est is stat of the identity resample.
func BootstrapCI(n int, stat func(idx []int) float64, level float64, opt BootstrapOptions) (Interval, []string) {
	checkLevel(level)
	if n < 2 {
		return Interval{Est: math.NaN(), Lo: math.Inf(-1), Hi: math.Inf(1), Level: level, Method: MethodBootstrap},
			[]string{"need ≥ 2 samples for a bootstrap CI"}
	}
	id := make([]int, n)
	for i := range id {
		id[i] = i
	}
	est := stat(id)
	r := NewResampler(n, opt.Seed)
	reps := make([]float64, opt.resamples())
	var idx []int
	for i := range reps {
		idx = r.Next(idx)
		reps[i] = stat(idx)
	}
	return percentileInterval(est, reps, level, MethodBootstrap), smallBootstrapWarning(n)
}

func smallBootstrapWarning(n int) []string {
	if n < 20 {
		return []string{"bootstrap intervals of fewer than 20 samples are too narrow; read them as rough"}
	}
	return nil
}

// QuantileDiffs holds bootstrap intervals for B−A of the mean and of each
// requested quantile.
type QuantileDiffs struct {
	Mean      Interval
	Quantiles []Interval // same order as the qs argument
	// MeanP and QuantileP are two-sided bootstrap p-values for "no
	// difference": twice the share of replicates on the far side of zero.
	MeanP     float64
	QuantileP []float64
	// MeanSE and QuantileSE are bootstrap standard errors (SD of the
	// replicates), which NPerArmFromSE turns into sample-size guidance.
	MeanSE     float64
	QuantileSE []float64
}

// bootP inverts the percentile interval: the smallest two-sided level at
// which zero would sit outside it. Floored at 1/(R+1) so it never reads as
// an exact zero.
func bootP(reps []float64) float64 {
	var le, ge int
	for _, x := range reps {
		if x <= 0 {
			le++
		}
		if x >= 0 {
			ge++
		}
	}
	p := 2 * float64(min(le, ge)+1) / float64(len(reps)+1)
	return math.Min(p, 1)
}

// BootstrapDiff bootstraps the differences B−A of the mean and of the
// quantiles qs (ascending). Paired resamples request pairs (a[i], b[i])
// together, so per-request noise shared by both arms cancels; unpaired
// resamples each arm on its own. Work is O(resamples·n) with no per-resample
// sorting.
func BootstrapDiff(a, b []float64, qs []float64, paired bool, level float64, opt BootstrapOptions) QuantileDiffs {
	checkLevel(level)
	if !slices.IsSorted(qs) {
		panic("stats: BootstrapDiff quantiles must be ascending")
	}
	if paired && len(a) != len(b) {
		panic("stats: paired BootstrapDiff needs equal lengths")
	}
	method := MethodBootstrap
	if paired {
		method = MethodPairedBootstrap
	}
	nq := len(qs)
	res := QuantileDiffs{Quantiles: make([]Interval, nq), MeanP: 1, QuantileP: make([]float64, nq),
		MeanSE: math.NaN(), QuantileSE: make([]float64, nq)}
	for i := range res.QuantileP {
		res.QuantileP[i] = 1
		res.QuantileSE[i] = math.NaN()
	}
	sa, sb := slices.Clone(a), slices.Clone(b)
	slices.Sort(sa)
	slices.Sort(sb)
	estMean := Mean(b) - Mean(a)
	estQ := make([]float64, nq)
	for i, q := range qs {
		estQ[i] = Quantile(sb, q) - Quantile(sa, q)
	}
	if len(a) < 2 || len(b) < 2 {
		res.Mean = Interval{Est: estMean, Lo: math.Inf(-1), Hi: math.Inf(1), Level: level, Method: method}
		for i := range qs {
			res.Quantiles[i] = Interval{Est: estQ[i], Lo: math.Inf(-1), Hi: math.Inf(1), Level: level, Method: method}
		}
		return res
	}
	// Reorder so that A is ascending (pairs move together): A's walk is then
	// sequential in memory, and so is B's when unpaired.
	pa := sortPerm(a)
	a2, b2 := make([]float64, len(a)), b
	for i, j := range pa {
		a2[i] = a[j]
	}
	if paired {
		b2 = make([]float64, len(b))
		for i, j := range pa {
			b2[i] = b[j]
		}
	} else {
		b2 = sb
	}
	a, b = a2, b2
	pa, pb := identityPerm(len(a)), sortPerm(b)
	R := opt.resamples()
	repMean := make([]float64, R)
	repQ := make([][]float64, nq)
	for i := range repQ {
		repQ[i] = make([]float64, R)
	}
	ra := NewResampler(len(a), opt.Seed)
	rb := ra
	if !paired {
		rb = NewResampler(len(b), opt.Seed^0x5bd1e995)
	}
	wa := make([]int32, len(a))
	wb := wa
	if !paired {
		wb = make([]int32, len(b))
	}
	qa, qb := make([]float64, nq), make([]float64, nq)
	for r := range R {
		ra.counts(wa)
		if !paired {
			rb.counts(wb)
		}
		repMean[r] = weightedMean(b, wb) - weightedMean(a, wa)
		weightedQuantiles(a, pa, wa, qs, qa)
		weightedQuantiles(b, pb, wb, qs, qb)
		for i := range qs {
			repQ[i][r] = qb[i] - qa[i]
		}
	}
	res.MeanP = bootP(repMean)
	res.MeanSE = StdDev(repMean)
	res.Mean = percentileInterval(estMean, repMean, level, method)
	for i := range qs {
		res.QuantileP[i] = bootP(repQ[i])
		res.QuantileSE[i] = StdDev(repQ[i])
		res.Quantiles[i] = percentileInterval(estQ[i], repQ[i], level, method)
	}
	return res
}
