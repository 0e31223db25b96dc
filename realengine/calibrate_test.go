package realengine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// costEngine is a fake Engine whose step time is a known StepCost, times a
// deterministic jitter, so calibration can be checked exactly.
type costEngine struct {
	cost    StepCost
	jitter  []float64 // multiplicative, cycled
	steps   int
	seqs    map[SeqID]int // context; -len(prompt) while pending
	order   []SeqID
	maxSeqs int
	admits  []Sequence
}

func (f *costEngine) Info() Info {
	c, _ := Preset("tiny")
	return Info{Engine: "fake", Model: "tiny", Config: c}
}
func (f *costEngine) Admit(s Sequence) error {
	if _, ok := f.seqs[s.ID]; ok {
		return fmt.Errorf("duplicate %d", s.ID)
	}
	f.seqs[s.ID] = -len(s.Prompt)
	f.order = append(f.order, s.ID)
	f.admits = append(f.admits, s)
	f.maxSeqs = max(f.maxSeqs, len(f.seqs))
	return nil
}
func (f *costEngine) Step(ctx context.Context) (StepResult, error) {
	var res StepResult
	for _, id := range f.order {
		n := f.seqs[id]
		if n < 0 {
			res.PrefillTokens += -n
			f.seqs[id] = -n
		} else {
			res.DecodeSeqs++
			res.KVTokens += n
			f.seqs[id] = n + 1
		}
		res.Outputs = append(res.Outputs, SeqOutput{ID: id})
	}
	ms := f.cost.PredictMs(res.PrefillTokens, res.DecodeSeqs, float64(res.KVTokens))
	if len(f.jitter) > 0 {
		ms *= f.jitter[f.steps%len(f.jitter)]
	}
	f.steps++
	res.Wall = time.Duration(ms * float64(time.Millisecond))
	return res, nil
}
func (f *costEngine) Retire(id SeqID) error {
	if _, ok := f.seqs[id]; !ok {
		return ErrUnknownSequence
	}
	delete(f.seqs, id)
	for i, o := range f.order {
		if o == id {
			f.order = append(f.order[:i], f.order[i+1:]...)
			break
		}
	}
	return nil
}
func (f *costEngine) Stats() Stats { return Stats{Sequences: len(f.seqs)} }
func (f *costEngine) Close() error { return nil }

func TestCalibrateRecoversKnownCost(t *testing.T) {
	truth := StepCost{BaseMs: 2, PerPrefillSeqMs: 1.5, PerPrefillTokenMs: 0.05, PerPrefillTokenSqMs: 0.0004, PerDecodeSeqMs: 0.3, PerKVTokenMs: 0.001}
	f := &costEngine{cost: truth, seqs: map[SeqID]int{}}
	grid := CalibrationGrid{PrefillTokens: []int{0, 8, 32, 64}, DecodeBatch: []int{0, 2, 6}, Context: []int{10, 50}, Warmup: 1, Repeats: 3}
	var calls []int
	cal, err := Calibrate(context.Background(), f, grid, func(done, total int) {
		calls = append(calls, done)
		assert.Equal(t, 19, total) // 3 prefill-only + 2 decodes x 4 prefills x 2 contexts
	})
	require.NoError(t, err)
	require.Len(t, cal.Points, 19)
	assert.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, calls)
	// Step times pass through whole nanoseconds, hence the tolerances.
	assert.InEpsilon(t, truth.BaseMs, cal.Fit.Cost.BaseMs, 1e-5)
	assert.InEpsilon(t, truth.PerPrefillSeqMs, cal.Fit.Cost.PerPrefillSeqMs, 1e-5)
	assert.InEpsilon(t, truth.PerPrefillTokenSqMs, cal.Fit.Cost.PerPrefillTokenSqMs, 1e-4)
	assert.InEpsilon(t, truth.PerPrefillTokenMs, cal.Fit.Cost.PerPrefillTokenMs, 1e-5)
	assert.InEpsilon(t, truth.PerDecodeSeqMs, cal.Fit.Cost.PerDecodeSeqMs, 1e-5)
	assert.InEpsilon(t, truth.PerKVTokenMs, cal.Fit.Cost.PerKVTokenMs, 1e-5)
	assert.InDelta(t, 1, cal.Fit.R2, 1e-9)
	assert.Less(t, cal.Fit.MaxRelErr, 1e-6)
	// Only the context drift between repeats varies the time.
	assert.Less(t, cal.JitterCV, 0.01)
	assert.Empty(t, cal.Fit.Dropped)
	assert.Zero(t, len(f.seqs), "calibration retires everything it admitted")
	assert.Equal(t, 6, f.maxSeqs-1, "never more than the largest batch plus the prefill")
	for _, p := range cal.Points {
		assert.Len(t, p.Samples, 3)
		// Contexts drift by one per step; the recorded KV is the true mean.
		if p.DecodeSeqs > 0 {
			assert.GreaterOrEqual(t, p.KVTokens, float64(p.DecodeSeqs*p.Context))
		}
	}
}

// With Vary every prefill probe has a new prompt length and the decoding
// sequences spread over [C/2, 3C/2]; the fit still recovers the cost
// because it uses the measured mean prefill, not the nominal one (the
// probes of nominal 4 cannot go below 1 token, so their mean is above 4).
func TestCalibrateVary(t *testing.T) {
	truth := StepCost{BaseMs: 2, PerPrefillTokenMs: 0.05, PerDecodeSeqMs: 0.3, PerKVTokenMs: 0.001}
	grid := CalibrationGrid{PrefillTokens: []int{0, 4, 100}, DecodeBatch: []int{0, 3}, Context: []int{10, 40}, Warmup: 1, Repeats: 4}
	probes := func(vary bool) (*Calibration, []int, []int) {
		f := &costEngine{cost: truth, seqs: map[SeqID]int{}}
		g := grid
		g.Vary = vary
		cal, err := Calibrate(context.Background(), f, g, nil)
		require.NoError(t, err)
		var probe, decode []int
		for _, s := range f.admits {
			if s.MaxNewTokens == 1 {
				probe = append(probe, len(s.Prompt))
			} else {
				decode = append(decode, len(s.Prompt))
			}
		}
		return cal, probe, decode
	}

	cal, probe, decode := probes(true)
	assert.Len(t, probe, 2*3*5, "two prefill sizes; no decoding, or 3 at two contexts; five runs each")
	seen := map[int]bool{}
	for _, l := range probe {
		assert.False(t, seen[l], "prompt length %d measured twice", l)
		assert.GreaterOrEqual(t, l, 1)
		seen[l] = true
	}
	assert.Equal(t, []int{5, 10, 15, 20, 40, 60}, decode)
	assert.InEpsilon(t, truth.BaseMs, cal.Fit.Cost.BaseMs, 1e-5)
	assert.InEpsilon(t, truth.PerPrefillTokenMs, cal.Fit.Cost.PerPrefillTokenMs, 1e-5)
	assert.InEpsilon(t, truth.PerDecodeSeqMs, cal.Fit.Cost.PerDecodeSeqMs, 1e-5)
	assert.InEpsilon(t, truth.PerKVTokenMs, cal.Fit.Cost.PerKVTokenMs, 1e-5)
	var above bool
	for _, p := range cal.Points {
		above = above || p.PrefillTokens == 4 && p.Prefill > 4
	}
	assert.True(t, above, "the probes of nominal 4 run out of shorter lengths")

	cal, probe, decode = probes(false)
	for _, l := range probe {
		assert.Contains(t, []int{4, 100}, l)
	}
	assert.Equal(t, []int{10, 10, 10, 40, 40, 40}, decode)
	for _, p := range cal.Points {
		assert.Equal(t, float64(p.PrefillTokens), p.Prefill)
	}
}

func TestCalibrateJitter(t *testing.T) {
	// Jitter cycling x0.9, x1.0, x1.1 with four points per round: each point
	// meets each factor once in three repeats, so every point's CV is 0.1 and
	// its median is the true time.
	f := &costEngine{cost: StepCost{BaseMs: 5, PerPrefillTokenMs: 0.1}, jitter: []float64{0.9, 1, 1.1}, seqs: map[SeqID]int{}}
	grid := CalibrationGrid{PrefillTokens: []int{4, 8, 16, 32}, DecodeBatch: []int{0}, Context: []int{1}, Repeats: 3}
	cal, err := Calibrate(context.Background(), f, grid, nil)
	require.NoError(t, err)
	assert.InDelta(t, 0.1, cal.JitterCV, 1e-6)
	// No decoding in the grid: those coefficients cannot be fitted, nor a
	// per-prompt cost when every point has a prompt. (The squared term,
	// 0 here, may come out a hair negative and go too.)
	assert.Equal(t, []string{"per_decode_seq_ms", "per_kv_token_ms", "per_prefill_seq_ms"}, cal.Fit.Dropped[:3])
	assert.InEpsilon(t, 0.1, cal.Fit.Cost.PerPrefillTokenMs, 1e-6)
}

func TestFitStepCost(t *testing.T) {
	truth := StepCost{BaseMs: 1, PerPrefillSeqMs: 3, PerPrefillTokenMs: 0.02, PerPrefillTokenSqMs: 2e-5, PerDecodeSeqMs: 0.5, PerKVTokenMs: 0}
	r := rand.New(rand.NewPCG(3, 3))
	var pts []CalibrationPoint
	for i := 0; i < 40; i++ {
		p := CalibrationPoint{PrefillTokens: r.IntN(300), DecodeSeqs: r.IntN(30), KVTokens: float64(r.IntN(5000))}
		if i%3 == 0 {
			p.PrefillTokens = 0 // decode-only steps tell the per-prompt cost from the base
		}
		// Noise that, unconstrained, makes the zero KV coefficient negative
		// half the time: here it anti-correlates with KV.
		p.MedianMs = truth.PredictMs(p.PrefillTokens, p.DecodeSeqs, p.KVTokens) * (1 - 0.02*p.KVTokens/5000)
		pts = append(pts, p)
	}
	fit, err := FitStepCost(pts)
	require.NoError(t, err)
	assert.Equal(t, []string{"per_kv_token_ms"}, fit.Dropped)
	assert.Zero(t, fit.Cost.PerKVTokenMs)
	assert.InEpsilon(t, truth.PerDecodeSeqMs, fit.Cost.PerDecodeSeqMs, 0.05)
	assert.InEpsilon(t, truth.PerPrefillSeqMs, fit.Cost.PerPrefillSeqMs, 0.1)
	assert.InEpsilon(t, truth.PerPrefillTokenSqMs, fit.Cost.PerPrefillTokenSqMs, 0.2)
	assert.Greater(t, fit.R2, 0.99)
	assert.Less(t, fit.MaxRelErr, 0.05)
	assert.LessOrEqual(t, fit.MedianRelErr, fit.MaxRelErr)
	for _, p := range pts {
		assert.Positive(t, p.PredictedMs)
	}
	// Two prompt lengths cannot tell three prompt terms apart: the square
	// goes, the per-prompt and per-token costs stay.
	for i := range pts {
		pts[i].PrefillTokens = []int{0, 100, 200}[i%3]
		pts[i].MedianMs = truth.PredictMs(pts[i].PrefillTokens, pts[i].DecodeSeqs, pts[i].KVTokens)
	}
	fit, err = FitStepCost(pts)
	require.NoError(t, err)
	assert.Contains(t, fit.Dropped, "per_prefill_token_sq_ms")
	assert.NotContains(t, fit.Dropped, "per_prefill_seq_ms")
	assert.Zero(t, fit.Cost.PerPrefillTokenSqMs)

	_, err = FitStepCost(pts[:3])
	assert.ErrorContains(t, err, "3 points")
	bad := append([]CalibrationPoint(nil), pts...)
	bad[5].MedianMs = 0
	_, err = FitStepCost(bad)
	assert.ErrorContains(t, err, "point 5")
}

func TestCalibrateGridErrors(t *testing.T) {
	f := &costEngine{seqs: map[SeqID]int{}}
	tests := []struct {
		name string
		grid CalibrationGrid
		want string
	}{
		{"empty", CalibrationGrid{Repeats: 2}, "must each have a value"},
		{"negative", CalibrationGrid{PrefillTokens: []int{-1}, DecodeBatch: []int{1}, Context: []int{1}, Repeats: 2}, "negative"},
		{"context", CalibrationGrid{PrefillTokens: []int{1}, DecodeBatch: []int{1}, Context: []int{0}, Repeats: 2}, "at least 1"},
		{"repeats", CalibrationGrid{PrefillTokens: []int{1}, DecodeBatch: []int{1}, Context: []int{1}, Repeats: 1}, "repeats >= 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Calibrate(context.Background(), f, tt.grid, nil)
			assert.ErrorContains(t, err, tt.want)
		})
	}
	require.NoError(t, f.Admit(Sequence{ID: 1, Prompt: []int32{1}}))
	_, err := Calibrate(context.Background(), f, DefaultGrid(), nil)
	assert.ErrorContains(t, err, "idle engine")
}

// TestCalibrateCPU is a smoke test on the real engine: structure only, since
// tests never assert on wall-clock speed.
func TestCalibrateCPU(t *testing.T) {
	c, w := tinyModel(t, 1)
	e, err := NewCPU(c, w, CPUOptions{Model: "tiny"})
	require.NoError(t, err)
	grid := CalibrationGrid{PrefillTokens: []int{0, 8, 32}, DecodeBatch: []int{0, 1, 4}, Context: []int{8, 64}, Warmup: 1, Repeats: 2}
	cal, err := Calibrate(context.Background(), e, grid, nil)
	require.NoError(t, err)
	assert.Len(t, cal.Points, 14)
	assert.Equal(t, Stats{}, e.Stats())
	assert.Equal(t, "cpu", cal.Engine.Engine)
	for _, p := range cal.Points {
		assert.Positive(t, p.MeanMs)
		assert.Positive(t, p.MedianMs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Calibrate(ctx, e, grid, nil)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, Stats{}, e.Stats(), "a cancelled calibration retires what it admitted")
}
