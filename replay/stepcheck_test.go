package replay

import (
	"testing"

	"github.com/batchkit/batchkit/sim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckSteps(t *testing.T) {
	cost := sim.StepCost{BaseMS: 1, PerPrefillSeqMS: 2, PerPrefillTokenMS: 0.01, PerPrefillTokenSqMS: 1e-4, PerDecodeSeqMS: 0.5, PerKVTokenMS: 0.001}
	ms := func(x float64) int64 { return int64(x * 1e6) }
	steps := []StepRecord{
		{WallNS: ms(2), DecodeSeqs: 1, KVTokens: 100},                                             // pred 1.6
		{WallNS: ms(4), DecodeSeqs: 5, KVTokens: 1000},                                            // pred 4.5
		{WallNS: ms(5), DecodeSeqs: 7, KVTokens: 1000},                                            // pred 5.5
		{WallNS: ms(4), PrefillSeqs: 1, PrefillTokens: 100, PrefillSquares: 10000, DecodeSeqs: 2}, // pred 1+2+1+1+1 = 6
		{WallNS: ms(9), PrefillSeqs: 2, PrefillTokens: 200, PrefillSquares: 20000, DecodeSeqs: 0}, // pred 1+4+2+2 = 9
		{WallNS: ms(3), DecodeSeqs: 3, KVTokens: 0},                                               // pred 2.5
	}
	got := CheckSteps(steps, cost)
	require.Len(t, got, 6)
	want := []StepCheck{
		{Kind: "decode 1", Steps: 1, MeasuredMS: 2, PredictedMS: 1.6},
		{Kind: "decode 2-3", Steps: 1, MeasuredMS: 3, PredictedMS: 2.5},
		{Kind: "decode 4-7", Steps: 2, MeasuredMS: 4.5, PredictedMS: 5},
		{Kind: "1 prompt", Steps: 1, MeasuredMS: 4, PredictedMS: 6},
		{Kind: "2+ prompts", Steps: 1, MeasuredMS: 9, PredictedMS: 9},
		{Kind: "all", Steps: 6, MeasuredMS: 27.0 / 6, PredictedMS: 29.1 / 6},
	}
	for i := range want {
		assert.Equal(t, want[i].Kind, got[i].Kind)
		assert.Equal(t, want[i].Steps, got[i].Steps, want[i].Kind)
		assert.InDelta(t, want[i].MeasuredMS, got[i].MeasuredMS, 1e-9, want[i].Kind)
		assert.InDelta(t, want[i].PredictedMS, got[i].PredictedMS, 1e-9, want[i].Kind)
	}
	assert.InDelta(t, 0.5, got[3].RelErr(), 1e-9)
	assert.Nil(t, CheckSteps(nil, cost))
}
