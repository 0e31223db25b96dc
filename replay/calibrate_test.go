package replay

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/realengine"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/trace"
)

func TestParseGrid(t *testing.T) {
	base := realengine.DefaultGrid()
	withVary := base
	withVary.Vary = true
	some := base
	some.PrefillTokens, some.Context, some.Repeats = []int{0, 32}, []int{64}, 4
	tests := []struct {
		spec string
		want realengine.CalibrationGrid
		err  string
	}{
		{spec: "default", want: base},
		{spec: "", want: base},
		{spec: "small", want: SmallGrid()},
		{spec: "vary=true", want: withVary},
		{spec: " vary = 1 ; ", want: withVary},
		{spec: "vary=false", want: base},
		{spec: "prefill=0,32;context=64;repeats=4", want: some},
		{spec: "vary=yes", err: `grid key vary: "yes" is not true or false`},
		{spec: "prefill=0,-1", err: `grid key prefill: "-1" is not a non-negative integer`},
		{spec: "warmup=two", err: `grid key warmup: "two" is not a non-negative integer`},
		{spec: "prefill", err: `grid "prefill": "prefill" is not key=value`},
		{spec: "trace", err: `grid "trace" is drawn from the requests replayed`},
		{spec: "batch=4", err: `unknown key "batch" (want prefill, decode, context, warmup, repeats, seed, vary)`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			g, err := ParseGrid(tt.spec, base)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, g)
			// The provenance string reads back as the same grid.
			back, err := ParseGrid(FormatGrid(g), realengine.CalibrationGrid{})
			require.NoError(t, err)
			assert.Equal(t, g, back)
		})
	}
	assert.NotContains(t, FormatGrid(base), "vary", "grids without vary keep their old provenance")
	assert.Contains(t, FormatGrid(withVary), ";vary=true")
}

func TestTraceGrid(t *testing.T) {
	var reqs []trace.Request
	for i := 100; i >= 1; i-- { // order does not matter
		reqs = append(reqs, trace.Request{InputTokens: int32(i), OutputTokens: 10})
	}
	g := TraceGrid(reqs, 8)
	assert.Equal(t, []int{0, 25, 50, 90, 100}, g.PrefillTokens)
	assert.Equal(t, []int{30, 80}, g.Context, "prompt + output/2 at the 25th and 75th percentiles")
	assert.Equal(t, []int{0, 1, 2, 4, 8}, g.DecodeBatch)
	assert.Equal(t, []int{0, 1, 2, 4, 8, 16, 32}, TraceGrid(reqs, 64).DecodeBatch, "at most 32")
	assert.Equal(t, []int{0, 1}, TraceGrid(reqs, 1).DecodeBatch)
	// One request: every percentile is that request.
	one := TraceGrid([]trace.Request{{InputTokens: 7, OutputTokens: 4}}, 4)
	assert.Equal(t, []int{0, 7}, one.PrefillTokens)
	assert.Equal(t, []int{9}, one.Context)
	// The grid is a valid calibration grid that reads back from its string.
	back, err := ParseGrid(FormatGrid(g), realengine.CalibrationGrid{})
	require.NoError(t, err)
	assert.Equal(t, g, back)
}

func TestLoadDecode(t *testing.T) {
	ms := int64(time.Millisecond)
	res := func(first, finish int64) sim.Result {
		return sim.Result{Status: sim.StatusOK, FirstTokenNS: first * ms, FinishNS: finish * ms}
	}
	// One sequence decoding for 10 ms, then three for 80 ms, then two for
	// 10 ms: 10 % of the time at 1, 80 % at 3, 10 % at 2.
	got := LoadDecode([]sim.Result{res(0, 100), res(10, 90), res(10, 100), {Status: sim.StatusRejected}}, 32)
	assert.Equal(t, []int{0, 1, 3}, got, "10th percentile 1, median and 90th 3")
	// Always the same concurrency: widen so that a slope can be fitted.
	four := []sim.Result{res(0, 10), res(0, 10), res(0, 10), res(0, 10)}
	assert.Equal(t, []int{0, 2, 4, 8}, LoadDecode(four, 32))
	assert.Equal(t, []int{0, 2, 4}, LoadDecode(four, 4), "not above the batch cap")
	assert.Equal(t, []int{0, 1, 2}, LoadDecode([]sim.Result{res(0, 10)}, 1), "two sizes to fit a slope")
	assert.Nil(t, LoadDecode([]sim.Result{{Status: sim.StatusRejected}}, 32))
}
