package realengine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"
)

// CalibrationGrid says which steps to measure: every combination of a prefill
// of PrefillTokens prompt tokens (one new sequence) with DecodeBatch
// sequences decoding at context Context, except the empty step.
type CalibrationGrid struct {
	PrefillTokens []int
	DecodeBatch   []int
	Context       []int
	// Warmup steps are run and discarded before Repeats measured ones.
	Warmup  int
	Repeats int
	// Seed draws the prompt tokens.
	Seed uint64
	// Vary measures the shapes a trace gives an engine rather than
	// repeating one: every prefill gets a prompt length not measured
	// before (P, P+1, P-1, P+2, ...), and the decoding sequences' contexts
	// spread evenly over [C/2, 3C/2] instead of all being C. Engines that
	// build kernels or plans per shape (MLX on a GPU: ~45 ms for each new
	// prompt length on an H200) or batch equal lengths differently from
	// mixed ones then carry those costs into the profile; without Vary the
	// warm-up absorbs them. The fit uses the measured P and K.
	Vary bool
}

// DefaultGrid suits the cpu engine on the small preset: about a minute on
// two cores.
func DefaultGrid() CalibrationGrid {
	return CalibrationGrid{
		PrefillTokens: []int{0, 16, 64, 256},
		DecodeBatch:   []int{0, 1, 4, 16, 32},
		Context:       []int{16, 128, 512},
		Warmup:        2,
		Repeats:       5,
		Seed:          1,
	}
}

func (g CalibrationGrid) validate() error {
	if len(g.PrefillTokens) == 0 || len(g.DecodeBatch) == 0 || len(g.Context) == 0 {
		return errors.New("calibration grid: prefill tokens, decode batch sizes and context lengths must each have a value")
	}
	for _, p := range g.PrefillTokens {
		if p < 0 {
			return fmt.Errorf("calibration grid: prefill tokens %d is negative", p)
		}
	}
	for _, d := range g.DecodeBatch {
		if d < 0 {
			return fmt.Errorf("calibration grid: decode batch %d is negative", d)
		}
	}
	for _, c := range g.Context {
		if c < 1 {
			return fmt.Errorf("calibration grid: context %d must be at least 1", c)
		}
	}
	if g.Warmup < 0 || g.Repeats < 2 {
		return fmt.Errorf("calibration grid: need warmup >= 0 and repeats >= 2 (for jitter), got %d and %d", g.Warmup, g.Repeats)
	}
	return nil
}

// CalibrationPoint is one measured grid point.
type CalibrationPoint struct {
	PrefillTokens int // nominal; Prefill is what was measured
	DecodeSeqs    int
	Context       int // nominal context of the decoding sequences
	// Prefill is the prompt tokens prefilled by the repeats that make
	// MedianMs (see atMedian): the nominal PrefillTokens unless the grid
	// varies shapes.
	Prefill float64
	// KVTokens is the mean over repeats of the cached tokens the decoding
	// sequences attended to: contexts grow by one per step, so it drifts a
	// little above DecodeSeqs*Context, and the fit uses the true value.
	KVTokens float64
	Samples  []time.Duration
	MeanMs   float64
	// MedianMs is what the fit uses: on a shared machine one repeat that
	// lost its core for a while moves the mean far more than the median.
	MedianMs float64
	CV       float64 // sample standard deviation over mean
	// Filled by the fit.
	PredictedMs float64
	RelErr      float64 // |predicted - median| / median
}

// StepCost is the simulator's step-cost model: a step that prefills one
// prompt of P tokens (none when P is 0) and decodes D sequences attending
// to K cached tokens in total takes BaseMs + PerPrefillSeqMs*[P>0] +
// PerPrefillTokenMs*P + PerPrefillTokenSqMs*P² + PerDecodeSeqMs*D +
// PerKVTokenMs*K.
type StepCost struct {
	BaseMs              float64
	PerPrefillSeqMs     float64
	PerPrefillTokenMs   float64
	PerPrefillTokenSqMs float64
	PerDecodeSeqMs      float64
	PerKVTokenMs        float64
}

// PredictMs evaluates the model for a step with at most one prompt, as
// calibration measures.
func (c StepCost) PredictMs(prefill, decode int, kv float64) float64 {
	p := float64(prefill)
	ms := c.BaseMs + c.PerPrefillTokenMs*p + c.PerPrefillTokenSqMs*p*p + c.PerDecodeSeqMs*float64(decode) + c.PerKVTokenMs*kv
	if prefill > 0 {
		ms += c.PerPrefillSeqMs
	}
	return ms
}

// Fit says how well a StepCost explains the points.
type Fit struct {
	Cost         StepCost
	R2           float64 // on the point medians, unweighted
	MaxRelErr    float64
	MedianRelErr float64
	// Dropped names coefficients forced to zero because the unconstrained
	// fit made them negative (a negative cost would let the simulator
	// predict negative step times).
	Dropped []string
}

// Calibration is the outcome of Calibrate: everything replay needs to write a
// simulator profile with provenance.
type Calibration struct {
	Engine Info
	Grid   CalibrationGrid
	Points []CalibrationPoint
	Fit    Fit
	// JitterCV is the median over points of the repeat spread (CV), the
	// simulator's multiplicative step-time noise.
	JitterCV float64
	Started  time.Time
	Elapsed  time.Duration
}

// Calibrate measures step times over grid on an idle engine and fits the
// step-cost model. progress, if not nil, is called after each point.
func Calibrate(ctx context.Context, e Engine, grid CalibrationGrid, progress func(done, total int)) (*Calibration, error) {
	if err := grid.validate(); err != nil {
		return nil, err
	}
	if st := e.Stats(); st.Sequences != 0 {
		return nil, fmt.Errorf("calibration needs an idle engine, this one holds %d sequences", st.Sequences)
	}
	info := e.Info()
	vocab := info.Config.VocabSize
	r := rand.New(rand.NewPCG(grid.Seed, 0xca11b))
	prompt := func(n int) []int32 {
		p := make([]int32, n)
		for i := range p {
			p[i] = int32(r.IntN(vocab))
		}
		return p
	}
	cal := &Calibration{Engine: info, Grid: grid, Started: time.Now()}
	prefills := uniqueSorted(grid.PrefillTokens)
	decodes := uniqueSorted(grid.DecodeBatch)
	contexts := uniqueSorted(grid.Context)
	// The empty step is skipped, and with no decoding sequences the context
	// is meaningless, so those points are measured once.
	total := 0
	for _, d := range decodes {
		n := len(prefills)
		if d == 0 && prefills[0] == 0 {
			n--
		}
		if d > 0 {
			n *= len(contexts)
		}
		total += n
	}
	// promptLen is the length of the next measured prompt of nominal
	// length p: p itself, or with Vary one not used before.
	used := map[int]int{}
	promptLen := func(p int) int {
		if !grid.Vary {
			return p
		}
		for {
			n := used[p]
			used[p]++
			l := p - (n+1)/2 // p, p+1, p-1, p+2, p-2, ...
			if n%2 == 1 {
				l = p + (n+1)/2
			}
			if l >= 1 {
				return l
			}
		}
	}
	// contextOf is the context of decoding sequence i of d at nominal c.
	contextOf := func(i, d, c int) int {
		if !grid.Vary || d < 2 {
			return c
		}
		return max(1, c/2+i*c/(d-1))
	}
	var nextID SeqID = 1 << 40 // far from ids a caller might reuse later
	var live []SeqID
	cleanup := func() {
		for _, id := range live {
			_ = e.Retire(id)
		}
		live = live[:0]
	}
	defer cleanup()
	step := func() (StepResult, error) {
		res, err := e.Step(ctx)
		if err != nil {
			return res, err
		}
		for _, o := range res.Outputs {
			if o.Err != nil {
				return res, fmt.Errorf("calibration step: %w", o.Err)
			}
		}
		return res, nil
	}
	for _, d := range decodes {
		ctxs := contexts
		if d == 0 {
			ctxs = contexts[:1]
		}
		for _, c := range ctxs {
			// Bring d sequences to context c; this prefill is not measured.
			cleanup()
			for i := 0; i < d; i++ {
				nextID++
				if err := e.Admit(Sequence{ID: nextID, Prompt: prompt(contextOf(i, d, c)), MaxNewTokens: (grid.Warmup + grid.Repeats) * (len(prefills) + decodeSettle)}); err != nil {
					return nil, fmt.Errorf("calibration at context %d: %w", c, err)
				}
				live = append(live, nextID)
			}
			if d > 0 {
				if _, err := step(); err != nil {
					return nil, err
				}
			}
			// Repeats go round the prefill sizes, so a burst of load from
			// elsewhere on the machine spreads over several points instead
			// of spoiling one.
			var group []CalibrationPoint
			var kv []float64
			pre := make([][]float64, 0, len(prefills))
			for _, p := range prefills {
				if p == 0 && d == 0 {
					continue
				}
				pt := CalibrationPoint{PrefillTokens: p, DecodeSeqs: d, Context: c}
				if d == 0 {
					pt.Context = 0
				}
				group = append(group, pt)
				kv = append(kv, 0)
				pre = append(pre, nil)
			}
			for rep := 0; rep < grid.Warmup+grid.Repeats; rep++ {
				for i := range group {
					pt := &group[i]
					p := pt.PrefillTokens
					var pid SeqID
					if p == 0 {
						// A pure decode step right after a prefill runs up to
						// twice as slow as one in a stream of decode steps (on
						// the cpu engine, small preset: 3.7-4.2 ms for the
						// first 4-5 steps, then 1.3-2.2 ms). Serving decodes
						// in streams, so measure a settled stream: settling 10
						// steps put replay's seed-workload latency within 4 %
						// of the prediction, 5 steps left it 6-19 % high.
						for i := 0; i < decodeSettle; i++ {
							if _, err := step(); err != nil {
								return nil, err
							}
						}
					}
					if p > 0 {
						nextID++
						pid = nextID
						if err := e.Admit(Sequence{ID: pid, Prompt: prompt(promptLen(p)), MaxNewTokens: 1}); err != nil {
							return nil, fmt.Errorf("calibration with prefill %d: %w", p, err)
						}
					}
					res, err := step()
					if p > 0 {
						if rerr := e.Retire(pid); rerr != nil && err == nil {
							err = rerr
						}
					}
					if err != nil {
						return nil, err
					}
					if rep >= grid.Warmup {
						pt.Samples = append(pt.Samples, res.Wall)
						kv[i] += float64(res.KVTokens)
						pre[i] = append(pre[i], float64(res.PrefillTokens))
					}
				}
			}
			for i := range group {
				pt := &group[i]
				pt.KVTokens = kv[i] / float64(grid.Repeats)
				ms := make([]float64, len(pt.Samples))
				for i, s := range pt.Samples {
					ms[i] = float64(s) / float64(time.Millisecond)
				}
				mean, std := stat.MeanStdDev(ms, nil)
				pt.MeanMs = mean
				pt.MedianMs = median(ms)
				pt.Prefill = atMedian(ms, pre[i])
				if mean > 0 {
					pt.CV = std / mean
				}
				cal.Points = append(cal.Points, *pt)
				if progress != nil {
					progress(len(cal.Points), total)
				}
			}
		}
	}
	cleanup()
	cal.Elapsed = time.Since(cal.Started)
	fit, err := FitStepCost(cal.Points)
	if err != nil {
		return nil, err
	}
	cal.Fit = fit
	// With Vary a prefill point's repeats differ in length on purpose;
	// that spread is not noise, so jitter then comes from the pure-decode
	// points, whose shapes repeat (when the grid has any).
	var cvs []float64
	for _, p := range cal.Points {
		if !grid.Vary || p.PrefillTokens == 0 {
			cvs = append(cvs, p.CV)
		}
	}
	if len(cvs) == 0 {
		for _, p := range cal.Points {
			cvs = append(cvs, p.CV)
		}
	}
	cal.JitterCV = median(cvs)
	return cal, nil
}

func uniqueSorted(v []int) []int {
	out := slices.Clone(v)
	slices.Sort(out)
	return slices.Compact(out)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// atMedian is the mean of x over the samples that make the median of y
// (the middle one, or the middle two): with Vary the prompt length differs
// between repeats, and the fit pairs the median time with the length that
// produced it rather than with the mean length.
func atMedian(y, x []float64) float64 {
	idx := make([]int, len(y))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(y[a], y[b]) })
	n := len(idx)
	if n%2 == 1 {
		return x[idx[n/2]]
	}
	return (x[idx[n/2-1]] + x[idx[n/2]]) / 2
}

// decodeSettle is how many unmeasured decode steps precede each measured
// pure-decode step of a calibration (see Calibrate).
const decodeSettle = 10

var costNames = [6]string{"base_ms", "per_prefill_token_ms", "per_decode_seq_ms", "per_kv_token_ms", "per_prefill_seq_ms", "per_prefill_token_sq_ms"}

// FitStepCost fits StepCost to the points' medians by least squares on the
// relative error (each row weighted by 1/median), because the simulator needs
// short decode steps as accurate as long prefills, and an unweighted fit
// would sacrifice the former. Coefficients the fit makes negative are fixed
// at zero and the rest refitted. It fills the points' PredictedMs and RelErr.
func FitStepCost(points []CalibrationPoint) (Fit, error) {
	feature := func(p CalibrationPoint) [6]float64 {
		prefill := p.Prefill
		if prefill == 0 {
			prefill = float64(p.PrefillTokens) // points made without Prefill
		}
		seq := 0.0
		if prefill > 0 {
			seq = 1
		}
		return [6]float64{1, prefill, float64(p.DecodeSeqs), p.KVTokens, seq, prefill * prefill}
	}
	// A prompt's cost has up to three terms (per prompt, per token, per
	// token squared): a grid with fewer distinct prompt lengths cannot
	// tell them apart.
	lengths := map[int]bool{}
	for _, p := range points {
		if p.PrefillTokens > 0 {
			lengths[p.PrefillTokens] = true
		}
	}
	for i, p := range points {
		if !(p.MedianMs > 0) {
			return Fit{}, fmt.Errorf("step-cost fit: point %d has mean %g ms", i, p.MedianMs)
		}
	}
	active := []int{0, 1, 2, 3, 4, 5}
	var coef [6]float64
	var dropped []string
	for {
		// A column that is zero in every point (say no prefill in the grid)
		// cannot be fitted, nor the per-prompt one when every point has a
		// prompt (it is then the base), nor more prompt terms than prompt
		// lengths; drop them rather than fail on a singular system.
		active = slices.DeleteFunc(active, func(j int) bool {
			zero, ones := true, true
			for _, p := range points {
				f := feature(p)[j]
				zero = zero && f == 0
				ones = ones && f == 1
			}
			if zero || j == 4 && (ones || len(lengths) < 2) || j == 5 && len(lengths) < 3 {
				dropped = append(dropped, costNames[j])
				return true
			}
			return false
		})
		if len(active) == 0 {
			return Fit{}, errors.New("step-cost fit: nothing left to fit")
		}
		if len(points) < len(active) {
			return Fit{}, fmt.Errorf("step-cost fit: %d points for %d coefficients", len(points), len(active))
		}
		a := mat.NewDense(len(points), len(active), nil)
		b := mat.NewVecDense(len(points), nil)
		for i, p := range points {
			f := feature(p)
			for k, j := range active {
				a.Set(i, k, f[j]/p.MedianMs)
			}
			b.SetVec(i, 1)
		}
		var x mat.VecDense
		if err := x.SolveVec(a, b); err != nil {
			return Fit{}, fmt.Errorf("step-cost fit: %w (is the grid varied enough?)", err)
		}
		coef = [6]float64{}
		worst, worstVal := -1, 0.0
		for k, j := range active {
			coef[j] = x.AtVec(k)
			if coef[j] < worstVal {
				worst, worstVal = k, coef[j]
			}
		}
		if worst < 0 {
			break
		}
		dropped = append(dropped, costNames[active[worst]])
		active = slices.Delete(active, worst, worst+1)
	}
	fit := Fit{Cost: StepCost{BaseMs: coef[0], PerPrefillTokenMs: coef[1], PerDecodeSeqMs: coef[2], PerKVTokenMs: coef[3], PerPrefillSeqMs: coef[4], PerPrefillTokenSqMs: coef[5]}, Dropped: dropped}
	ys := make([]float64, len(points))
	rel := make([]float64, len(points))
	var ssRes float64
	for i := range points {
		p := &points[i]
		p.PredictedMs = fit.Cost.PredictMs(p.PrefillTokens, p.DecodeSeqs, p.KVTokens)
		p.RelErr = math.Abs(p.PredictedMs-p.MedianMs) / p.MedianMs
		rel[i] = p.RelErr
		ys[i] = p.MedianMs
		ssRes += (p.PredictedMs - p.MedianMs) * (p.PredictedMs - p.MedianMs)
	}
	mean := stat.Mean(ys, nil)
	var ssTot float64
	for _, y := range ys {
		ssTot += (y - mean) * (y - mean)
	}
	if ssTot > 0 {
		fit.R2 = 1 - ssRes/ssTot
	}
	fit.MaxRelErr = slices.Max(rel)
	fit.MedianRelErr = median(rel)
	return fit, nil
}
