package realengine

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func jsonMarshal(c Config) ([]byte, error) { return json.Marshal(c) }

// A trimmed copy of meta-llama/Llama-3.2-1B's config.json.
const llama32Config = `{
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "vocab_size": 128256
}`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(llama32Config))
	require.NoError(t, err)
	p, err := Preset("llama-3.2-1b")
	require.NoError(t, err)
	assert.Equal(t, p, c)
	assert.InEpsilon(t, 1.236e9, float64(c.NumParams()), 0.01)

	// Defaults: head_dim, num_key_value_heads, tie_word_embeddings, quantization.
	c, err = ParseConfig([]byte(`{"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,
		"vocab_size":100,"max_position_embeddings":512,"rms_norm_eps":1e-6,"rope_theta":10000,
		"quantization":{"group_size":64,"bits":4}}`))
	require.NoError(t, err)
	assert.Equal(t, 16, c.HeadDim)
	assert.Equal(t, 4, c.NumKeyValueHeads)
	assert.True(t, c.TieWordEmbeddings)
	assert.Equal(t, &Quantization{GroupSize: 64, Bits: 4}, c.Quantization)
	assert.Nil(t, c.RopeScaling)

	bad := []struct {
		name, json, want string
	}{
		{"bits", `{"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,"max_position_embeddings":512,"quantization":{"group_size":64,"bits":3}}`, "field quantization.bits"},
		{"zero layers", `{"hidden_size":64,"intermediate_size":128,"num_hidden_layers":0,"num_attention_heads":4,"vocab_size":100,"max_position_embeddings":512}`, "field num_hidden_layers"},
		{"rope type", `{"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,"max_position_embeddings":512,"rope_scaling":{"rope_type":"yarn","factor":4}}`, "field rope_scaling.rope_type"},
		{"odd head dim", `{"hidden_size":60,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"head_dim":15,"vocab_size":100,"max_position_embeddings":512}`, "field head_dim"},
		{"wrong type", `{"hidden_size":"big"}`, "config.json"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.json))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestPresets(t *testing.T) {
	for _, n := range PresetNames() {
		c, err := Preset(n)
		require.NoError(t, err, n)
		require.NoError(t, c.Validate(), n)
	}
	_, err := Preset("huge")
	assert.ErrorContains(t, err, "known: llama-3.2-1b, llama-3.2-3b, small, tiny")
	// Presets are copies: changing one does not change the table.
	a, _ := Preset("llama-3.2-3b")
	a.RopeScaling.Factor = 1
	b, _ := Preset("llama-3.2-3b")
	assert.Equal(t, 32.0, b.RopeScaling.Factor)
}

func TestRopeInvFreqLlama3(t *testing.T) {
	c, err := Preset("llama-3.2-1b")
	require.NoError(t, err)
	inv := c.RopeInvFreq()
	plain := c
	plain.RopeScaling = nil
	base := plain.RopeInvFreq()
	require.Len(t, inv, 32)
	// High frequencies (short wavelengths) untouched, the lowest divided by
	// the factor, the band between strictly in between.
	assert.Equal(t, base[0], inv[0])
	assert.InEpsilon(t, base[31]/32, inv[31], 1e-12)
	sawBand := false
	for i := range inv {
		wl := 2 * math.Pi / base[i]
		if wl > 8192/4.0 && wl < 8192 {
			sawBand = true
			assert.Less(t, inv[i], base[i])
			assert.Greater(t, inv[i], base[i]/32)
		}
	}
	assert.True(t, sawBand)
}
