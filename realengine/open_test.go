package realengine

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpen(t *testing.T) {
	e, err := Open("cpu", Options{Model: "tiny", Seed: 3, MaxContext: 64})
	require.NoError(t, err)
	defer e.Close()
	info := e.Info()
	assert.Equal(t, "cpu", info.Engine)
	assert.Equal(t, "tiny", info.Model)
	assert.Equal(t, 64, info.Config.HiddenSize)
	require.NoError(t, e.Admit(Sequence{ID: 1, Prompt: make([]int32, 10)}))
	res, err := e.Step(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 10, res.PrefillTokens)

	tests := []struct {
		name   string
		engine string
		opt    Options
		want   string
	}{
		{"unknown engine", "tpu", Options{Model: "tiny"}, `unknown engine "tpu" (known: cpu, mlx)`},
		{"bad device", "cpu", Options{Model: "tiny", Device: "gpu"}, `device "gpu" not supported`},
		{"bad model", "cpu", Options{Model: "gpt-5"}, "neither a model directory nor a preset"},
		{"unknown dtype", "mlx", Options{Model: "tiny", DType: "int8"}, `engine mlx: dtype "int8" not supported (float32, float16, bfloat16)`},
		{"bad bits", "mlx", Options{Model: "tiny", Quantize: 3}, "engine mlx: quantize 3 not supported (4 or 8 bits"},
		{"cpu bfloat16", "cpu", Options{Model: "tiny", DType: "bfloat16"}, `engine cpu: dtype "bfloat16" not supported (only float32`},
		{"cpu quantize", "cpu", Options{Model: "tiny", Quantize: 4}, "engine cpu: quantize 4 not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.engine, tt.opt)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}
