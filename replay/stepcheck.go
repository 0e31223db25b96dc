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
	type agg struct {
		rank          int // decode kinds by batch size, then prompts
		n, meas, pred float64
	}
	byKind := map[string]*agg{}
	var kinds []string
	var all agg
	for _, st := range steps {
		k, rank := "decode 1", 1
		switch {
		case st.PrefillSeqs == 1:
			k, rank = "1 prompt", 1<<30
		case st.PrefillSeqs > 1:
			k, rank = "2+ prompts", 1<<30+1
		case st.DecodeSeqs > 1:
			rank = 1 << (bits.Len32(uint32(st.DecodeSeqs)) - 1)
			k = fmt.Sprintf("decode %d-%d", rank, 2*rank-1)
		}
		a := byKind[k]
		if a == nil {
			a = &agg{rank: rank}
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
	slices.SortFunc(kinds, func(a, b string) int { return cmp.Compare(byKind[a].rank, byKind[b].rank) })
	byKind["all"] = &all
	out := make([]StepCheck, 0, len(kinds)+1)
	for _, k := range append(kinds, "all") {
		a := byKind[k]
		out = append(out, StepCheck{Kind: k, Steps: int(a.n), MeasuredMS: a.meas / a.n, PredictedMS: a.pred / a.n})
	}
	return out
}
