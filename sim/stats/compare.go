package stats

import (
	"fmt"
	"math"
	"slices"
	"time"

	"golang.org/x/perf/benchmath"
)

// WelchDiff returns B−A of the means with a Welch t interval and its
// two-sided p-value, for two independent samples.
func WelchDiff(a, b []float64, level float64) (Interval, float64, []string) {
	return WelchFromSummary(Mean(a), StdDev(a), len(a), Mean(b), StdDev(b), len(b), level)
}

// WelchFromSummary is WelchDiff from summary statistics alone (mean, SD, n
// per arm), for reports that publish only those.
func WelchFromSummary(meanA, sdA float64, nA int, meanB, sdB float64, nB int, level float64) (Interval, float64, []string) {
	checkLevel(level)
	iv := Interval{Est: meanB - meanA, Lo: math.Inf(-1), Hi: math.Inf(1), Level: level, Method: MethodWelch}
	if nA < 2 || nB < 2 {
		return iv, 1, []string{fmt.Sprintf("need ≥ 2 samples per arm for a %s CI of the difference; have %d and %d", pct(level), nA, nB)}
	}
	va, vb := sdA*sdA/float64(nA), sdB*sdB/float64(nB)
	se := math.Sqrt(va + vb)
	if se == 0 {
		iv.Lo, iv.Hi = iv.Est, iv.Est
		p := 1.0
		if iv.Est != 0 {
			p = 0
		}
		return iv, p, []string{"both arms have zero spread"}
	}
	df := (va + vb) * (va + vb) / (va*va/float64(nA-1) + vb*vb/float64(nB-1))
	half := tQuantile(1-(1-level)/2, df) * se
	iv.Lo, iv.Hi = iv.Est-half, iv.Est+half
	p := 2 * tCDF(-math.Abs(iv.Est)/se, df)
	return iv, p, nil
}

// PairedDiff returns the mean of b[i]−a[i] with a t interval on the
// differences and its two-sided p-value. a and b must be matched per
// request (see PairByID).
func PairedDiff(a, b []float64, level float64) (Interval, float64, []string) {
	checkLevel(level)
	if len(a) != len(b) {
		panic("stats: PairedDiff needs equal lengths")
	}
	d := make([]float64, len(a))
	for i := range a {
		d[i] = b[i] - a[i]
	}
	iv, warns := MeanCI(d, level)
	iv.Method = MethodPairedT
	if len(d) < 2 {
		return iv, 1, warns
	}
	se := StdDev(d) / math.Sqrt(float64(len(d)))
	if se == 0 {
		p := 1.0
		if iv.Est != 0 {
			p = 0
		}
		return iv, p, append(warns, "per-request differences have zero spread")
	}
	return iv, 2 * tCDF(-math.Abs(iv.Est)/se, float64(len(d)-1)), warns
}

// MannWhitneyP returns the two-sided Mann–Whitney U p-value that a and b
// come from the same distribution, via benchmath (exact for small samples,
// normal approximation with tie correction for large ones), with
// benchmath's own warnings.
func MannWhitneyP(a, b []float64) (float64, []string) {
	th := benchmath.DefaultThresholds
	// NewSample sorts in place; the caller's order (request pairing) must
	// survive.
	sa := benchmath.NewSample(slices.Clone(a), &th)
	sb := benchmath.NewSample(slices.Clone(b), &th)
	c := benchmath.AssumeNothing.Compare(sa, sb)
	var warns []string
	for _, w := range c.Warnings {
		warns = append(warns, w.Error())
	}
	return c.P, warns
}

// PairByID matches two runs per request id and returns aligned values with
// the number of ids present in only one run. Duplicate ids within a run are
// an error: pairing them would be a guess.
func PairByID[K comparable](idsA []K, a []float64, idsB []K, b []float64) (pa, pb []float64, unmatched int, err error) {
	if len(idsA) != len(a) || len(idsB) != len(b) {
		return nil, nil, 0, fmt.Errorf("pair by id: %d ids for %d values in A, %d for %d in B", len(idsA), len(a), len(idsB), len(b))
	}
	pos := make(map[K]int, len(idsB))
	for i, id := range idsB {
		if _, dup := pos[id]; dup {
			return nil, nil, 0, fmt.Errorf("pair by id: duplicate id %v in B (row %d)", id, i)
		}
		pos[id] = i
	}
	seen := make(map[K]struct{}, len(idsA))
	for i, id := range idsA {
		if _, dup := seen[id]; dup {
			return nil, nil, 0, fmt.Errorf("pair by id: duplicate id %v in A (row %d)", id, i)
		}
		seen[id] = struct{}{}
		if j, ok := pos[id]; ok {
			pa = append(pa, a[i])
			pb = append(pb, b[j])
		}
	}
	unmatched = len(a) + len(b) - 2*len(pa)
	return pa, pb, unmatched, nil
}

// MetricSamples is one metric measured in two runs.
type MetricSamples struct {
	Metric string // e.g. "latency_ms"
	// Unit is the duration of 1.0 in the values (time.Millisecond for
	// values in ms); 0 for metrics that are not times (tok/s), for which
	// only relative effects apply.
	Unit time.Duration
	A, B []float64
	// Paired means A[i] and B[i] are the same request (PairByID).
	Paired bool
}

// CompareOptions configures Compare. Zero values take the defaults noted.
type CompareOptions struct {
	Level     float64   // confidence level; default 0.95
	Power     float64   // for n_needed; default DefaultPower (0.8)
	Quantiles []float64 // default 0.5, 0.95, 0.99
	Bootstrap BootstrapOptions
	Detect    Effect // optional effect to size samples for
}

func (o CompareOptions) withDefaults() CompareOptions {
	if o.Level == 0 {
		o.Level = 0.95
	}
	if o.Power == 0 {
		o.Power = DefaultPower
	}
	if o.Quantiles == nil {
		o.Quantiles = []float64{0.5, 0.95, 0.99}
	}
	return o
}

// Row is one statistic of one metric compared between runs A and B. It is
// also the JSON form.
type Row struct {
	Metric      string     `json:"metric"`
	Stat        string     `json:"stat"` // "mean", "p50", "p95", "p99"
	NA          int        `json:"n_a"`
	NB          int        `json:"n_b"`
	A           float64    `json:"a"`
	B           float64    `json:"b"`
	ACI         [2]float64 `json:"a_ci95"` // per-arm interval (method in ArmMethod)
	BCI         [2]float64 `json:"b_ci95"`
	ArmMethod   string     `json:"arm_method"`
	Delta       float64    `json:"delta"`     // B − A
	DeltaPct    float64    `json:"delta_pct"` // 100·(B−A)/A
	CI95        [2]float64 `json:"ci95"`      // interval for Delta
	PValue      float64    `json:"p_value"`
	Significant bool       `json:"significant"` // CI95 excludes zero (and not Undetermined)
	// Undetermined is set when a tail quantile has too few samples for
	// its own exact CI: the bootstrap of such a quantile is unreliable
	// (the bootstrap of a maximum is inconsistent), so no verdict is given.
	Undetermined bool   `json:"undetermined,omitempty"`
	Method       string `json:"method"` // how CI95 and PValue were made
	Paired       bool   `json:"paired"`
	NNeeded      *int   `json:"n_needed,omitempty"` // per arm, for CompareOptions.Detect
	Effect       string `json:"effect,omitempty"`
}

// Comparison is the result of Compare: rows in metric order (mean first,
// then quantiles) and plain-language warnings for footnotes.
type Comparison struct {
	NameA    string   `json:"a_name"`
	NameB    string   `json:"b_name"`
	Level    float64  `json:"level"`
	Seed     uint64   `json:"seed"`
	Rows     []Row    `json:"metrics"`
	Warnings []string `json:"warnings"`
}

// Compare compares every metric between runs A and B: the mean by Welch t
// (unpaired) or paired t, quantiles by seeded bootstrap (paired resampling
// when the metric is paired) with a Mann–Whitney U p-value for unpaired
// quantile rows. A delta whose CI includes zero is not significant (shown
// as ~). With opt.Detect set, each row gets n_needed per arm.
func Compare(nameA, nameB string, metrics []MetricSamples, opt CompareOptions) (Comparison, error) {
	opt = opt.withDefaults()
	if !(opt.Level > 0 && opt.Level < 1) {
		return Comparison{}, fmt.Errorf("confidence level %v: must be in (0, 1)", opt.Level)
	}
	if !(opt.Power > 0 && opt.Power < 1) {
		return Comparison{}, fmt.Errorf("power %v: must be in (0, 1)", opt.Power)
	}
	qs := slices.Clone(opt.Quantiles)
	slices.Sort(qs)
	for _, q := range qs {
		if !(q > 0 && q < 1) {
			return Comparison{}, fmt.Errorf("quantile %v: must be in (0, 1)", q)
		}
	}
	c := Comparison{NameA: nameA, NameB: nameB, Level: opt.Level, Seed: opt.Bootstrap.Seed, Rows: []Row{}, Warnings: []string{}}
	warn := func(metric, s string) {
		if s == "" {
			return
		}
		w := metric + ": " + s
		if !slices.Contains(c.Warnings, w) {
			c.Warnings = append(c.Warnings, w)
		}
	}
	for _, m := range metrics {
		if err := checkValues(m); err != nil {
			return Comparison{}, err
		}
		if m.Paired && len(m.A) != len(m.B) {
			return Comparison{}, fmt.Errorf("metric %s: paired samples have %d and %d values", m.Metric, len(m.A), len(m.B))
		}
		rows, warns := compareMetric(m, qs, opt)
		c.Rows = append(c.Rows, rows...)
		for _, w := range warns {
			warn(m.Metric, w)
		}
	}
	return c, nil
}

func checkValues(m MetricSamples) error {
	for arm, xs := range map[string][]float64{"A": m.A, "B": m.B} {
		if len(xs) == 0 {
			return fmt.Errorf("metric %s: run %s has no values", m.Metric, arm)
		}
		for i, x := range xs {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("metric %s: run %s value %d is %v", m.Metric, arm, i, x)
			}
		}
	}
	return nil
}

func compareMetric(m MetricSamples, qs []float64, opt CompareOptions) ([]Row, []string) {
	var warns []string
	lv := opt.Level
	na, nb := len(m.A), len(m.B)
	base := Row{Metric: m.Metric, NA: na, NB: nb, Paired: m.Paired}

	// Mean row.
	ma, w1 := MeanCI(m.A, lv)
	mb, w2 := MeanCI(m.B, lv)
	warns = append(warns, w1...)
	warns = append(warns, w2...)
	var diff Interval
	var p float64
	var w3 []string
	if m.Paired {
		diff, p, w3 = PairedDiff(m.A, m.B, lv)
	} else {
		diff, p, w3 = WelchDiff(m.A, m.B, lv)
	}
	warns = append(warns, w3...)
	mean := base
	mean.Stat = "mean"
	fillRow(&mean, ma, mb, diff, p, diff.Method)
	rows := []Row{mean}

	// Quantile rows.
	boot := BootstrapDiff(m.A, m.B, qs, m.Paired, lv, opt.Bootstrap)
	if min(na, nb) < 20 {
		warns = append(warns, smallBootstrapWarning(min(na, nb))...)
	}
	var mwP float64
	if !m.Paired {
		var mw []string
		mwP, mw = MannWhitneyP(m.A, m.B)
		warns = append(warns, mw...)
	}
	sa, sb := slices.Clone(m.A), slices.Clone(m.B)
	slices.Sort(sa)
	slices.Sort(sb)
	for i, q := range qs {
		qa, wa := QuantileCISorted(sa, q, lv)
		qb, wb := QuantileCISorted(sb, q, lv)
		warns = append(warns, wa...)
		warns = append(warns, wb...)
		r := base
		r.Stat = QuantileName(q)
		if m.Paired {
			fillRow(&r, qa, qb, boot.Quantiles[i], boot.QuantileP[i], MethodPairedBootstrap)
		} else {
			fillRow(&r, qa, qb, boot.Quantiles[i], mwP, MethodBootstrap+"; p: "+MethodMannWhitney)
		}
		if need := MinSamplesQuantileCI(q, lv); min(na, nb) < need {
			r.Undetermined, r.Significant = true, false
			warns = append(warns, fmt.Sprintf("%s difference undetermined (?): bootstrapping a tail quantile needs ≥ %d samples per arm; have %d",
				r.Stat, need, min(na, nb)))
		}
		rows = append(rows, r)
	}

	if !opt.Detect.IsZero() {
		for i := range rows {
			r := &rows[i]
			delta, err := opt.Detect.Size(r.A, m.Unit)
			if err != nil {
				warns = append(warns, err.Error())
				continue
			}
			var n int
			if r.Stat == "mean" {
				sd := pooledSD(m.A, m.B)
				if m.Paired {
					d := make([]float64, na)
					for j := range d {
						d[j] = m.B[j] - m.A[j]
					}
					sd = StdDev(d)
				}
				n = NPerArmMean(sd, delta, m.Paired, lv, opt.Power)
			} else {
				n = NPerArmFromSE(boot.QuantileSE[i-1], na, nb, delta, lv, opt.Power)
				if tail := float64(min(na, nb)) * (1 - qs[i-1]); tail < 10 {
					warns = append(warns, fmt.Sprintf("%s sample size rests on %.0f tail samples per arm; treat it as an order of magnitude", r.Stat, tail))
				}
			}
			r.NNeeded = &n
			r.Effect = opt.Detect.String()
			warns = append(warns, EffectWarning(opt.Detect, r.Stat, n, min(na, nb)))
		}
	}
	return rows, warns
}

func pooledSD(a, b []float64) float64 {
	va, vb := StdDev(a), StdDev(b)
	return math.Sqrt((va*va + vb*vb) / 2)
}

func fillRow(r *Row, a, b, diff Interval, p float64, method string) {
	r.A, r.B = a.Est, b.Est
	r.ACI = [2]float64{a.Lo, a.Hi}
	r.BCI = [2]float64{b.Lo, b.Hi}
	r.ArmMethod = a.Method
	r.Delta = diff.Est
	if a.Est != 0 {
		r.DeltaPct = 100 * diff.Est / a.Est
	} else {
		r.DeltaPct = math.NaN()
	}
	r.CI95 = [2]float64{diff.Lo, diff.Hi}
	r.PValue = p
	r.Significant = diff.Finite() && (diff.Lo > 0 || diff.Hi < 0)
	r.Method = method
}
