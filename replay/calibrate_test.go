package replay

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/realengine"
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
