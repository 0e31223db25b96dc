package replay

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"

	"github.com/batchkit/batchkit/sim"
)

// StepCheck holds a run's engine steps of one kind against what a step
// cost says they cost: where a prediction misses, it tells the engine's
// speed in that run (every kind off alike, as when a shared machine slows
// the engine) from the model's shape (one kind off).
type StepCheck struct {
	Kind        string  `json:"kind"`
	Steps       int     `json:"steps"`
	MeasuredMS  float64 `json:"measured_ms"`  // mean engine wall
	PredictedMS float64 `json:"predicted_ms"` // mean of the step cost on the same steps
}

// RelErr is (predicted − measured) / measured.
func (c StepCheck) RelErr() float64 { return (c.PredictedMS - c.MeasuredMS) / c.MeasuredMS }

// CheckSteps groups steps by kind (steps that only decode, by powers of
// two of the sequences decoding; steps with one prompt; with more) and
// holds each group against cost, ending with all steps together. Kinds
// with no step are left out.
func CheckSteps(steps []StepRecord, cost sim.StepCost) []StepCheck {
	type agg struct{ n, meas, pred float64 }
	byKind := map[string]*agg{}
	var kinds []string
	var all agg
	for _, st := range steps {
		var k string
		switch {
		case st.PrefillSeqs == 1:
			k = "1 prompt"
		case st.PrefillSeqs > 1:
			k = "2+ prompts"
		case st.DecodeSeqs <= 1:
			k = "decode 1"
		default:
			lo := 1 << (bits.Len32(uint32(st.DecodeSeqs)) - 1)
			k = fmt.Sprintf("decode %d-%d", lo, 2*lo-1)
		}
		a := byKind[k]
		if a == nil {
			a = &agg{}
			byKind[k] = a
			kinds = append(kinds, k)
		}
		meas := float64(st.WallNS) / 1e6
		pred := cost.StepMS(int(st.PrefillSeqs), st.PrefillTokens, st.PrefillSquares, int(st.DecodeSeqs), st.KVTokens)
		for _, x := range []*agg{a, &all} {
			x.n++
			x.meas += meas
			x.pred += pred
		}
	}
	if all.n == 0 {
		return nil
	}
	order := func(k string) int { // decode kinds by size, then prompts
		var lo int
		if _, err := fmt.Sscanf(k, "decode %d", &lo); err == nil {
			return lo
		}
		if k == "1 prompt" {
			return 1 << 30
		}
		return 1<<30 + 1
	}
	slices.SortFunc(kinds, func(a, b string) int { return cmp.Compare(order(a), order(b)) })
	out := make([]StepCheck, 0, len(kinds)+1)
	for _, k := range append(kinds, "all") {
		a := byKind[k]
		if k == "all" {
			a = &all
		}
		out = append(out, StepCheck{Kind: k, Steps: int(a.n), MeasuredMS: a.meas / a.n, PredictedMS: a.pred / a.n})
	}
	return out
}
