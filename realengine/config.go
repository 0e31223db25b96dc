package realengine

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Config is the shape of a Llama-architecture decoder, with the field names
// of a Hugging Face config.json.
type Config struct {
	HiddenSize            int           `json:"hidden_size"`
	IntermediateSize      int           `json:"intermediate_size"`
	NumHiddenLayers       int           `json:"num_hidden_layers"`
	NumAttentionHeads     int           `json:"num_attention_heads"`
	NumKeyValueHeads      int           `json:"num_key_value_heads"`
	HeadDim               int           `json:"head_dim"`
	VocabSize             int           `json:"vocab_size"`
	RMSNormEps            float64       `json:"rms_norm_eps"`
	RopeTheta             float64       `json:"rope_theta"`
	RopeScaling           *RopeScaling  `json:"rope_scaling,omitempty"`
	TieWordEmbeddings     bool          `json:"tie_word_embeddings"`
	MaxPositionEmbeddings int           `json:"max_position_embeddings"`
	Quantization          *Quantization `json:"quantization,omitempty"`
}

// RopeScaling is the "llama3" rope_scaling block of Llama 3.1/3.2 configs:
// low frequencies are divided by Factor, high ones kept, and the band in
// between interpolated.
type RopeScaling struct {
	RopeType                      string  `json:"rope_type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
}

// Quantization is the MLX quantisation block of an mlx-community config.json.
type Quantization struct {
	GroupSize int `json:"group_size"`
	Bits      int `json:"bits"`
}

// Derived sizes, so callers never recompute them differently.
func (c Config) QDim() int  { return c.NumAttentionHeads * c.HeadDim }
func (c Config) KVDim() int { return c.NumKeyValueHeads * c.HeadDim }

// ParseConfig reads a Hugging Face config.json. Missing head_dim defaults to
// hidden_size/num_attention_heads and missing num_key_value_heads to
// num_attention_heads, as transformers does. The result is validated.
func ParseConfig(data []byte) (Config, error) {
	var raw struct {
		Config
		RopeScalingRaw json.RawMessage `json:"rope_scaling"`
		TieRaw         *bool           `json:"tie_word_embeddings"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("config.json: %w", err)
	}
	c := raw.Config
	c.RopeScaling = nil
	if len(raw.RopeScalingRaw) > 0 && string(raw.RopeScalingRaw) != "null" {
		// Older configs spell rope_type as "type".
		var rs struct {
			RopeScaling
			Type string `json:"type"`
		}
		if err := json.Unmarshal(raw.RopeScalingRaw, &rs); err != nil {
			return Config{}, fmt.Errorf("config.json: field rope_scaling: %w", err)
		}
		if rs.RopeType == "" {
			rs.RopeType = rs.Type
		}
		c.RopeScaling = &rs.RopeScaling
	}
	// transformers' PretrainedConfig default is a tied head.
	c.TieWordEmbeddings = raw.TieRaw == nil || *raw.TieRaw
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config.json: %w", err)
	}
	return c, nil
}

// Validate reports the first field that makes the shape unusable.
func (c Config) Validate() error {
	positive := []struct {
		name string
		v    int
	}{
		{"hidden_size", c.HiddenSize},
		{"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads},
		{"num_key_value_heads", c.NumKeyValueHeads},
		{"head_dim", c.HeadDim},
		{"vocab_size", c.VocabSize},
		{"max_position_embeddings", c.MaxPositionEmbeddings},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("field %s: must be positive, got %d", p.name, p.v)
		}
		// Bounds keep products of sizes far from int overflow and reject
		// nonsense before anything is allocated.
		if p.v > 1<<24 {
			return fmt.Errorf("field %s: %d is implausibly large", p.name, p.v)
		}
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("field head_dim: RoPE needs an even head_dim, got %d", c.HeadDim)
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return fmt.Errorf("field num_key_value_heads: %d does not divide num_attention_heads %d", c.NumKeyValueHeads, c.NumAttentionHeads)
	}
	if !(c.RMSNormEps > 0) || math.IsInf(c.RMSNormEps, 0) {
		return fmt.Errorf("field rms_norm_eps: must be positive, got %g", c.RMSNormEps)
	}
	if !(c.RopeTheta > 1) || math.IsInf(c.RopeTheta, 0) {
		return fmt.Errorf("field rope_theta: must be > 1, got %g", c.RopeTheta)
	}
	if rs := c.RopeScaling; rs != nil {
		switch rs.RopeType {
		case "llama3":
			if !(rs.Factor >= 1) || !(rs.LowFreqFactor > 0) || !(rs.HighFreqFactor > rs.LowFreqFactor) || rs.OriginalMaxPositionEmbeddings <= 0 ||
				math.IsInf(rs.Factor, 0) || math.IsInf(rs.HighFreqFactor, 0) {
				return errors.New("field rope_scaling: llama3 needs factor >= 1, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0")
			}
		case "default", "":
		default:
			return fmt.Errorf("field rope_scaling.rope_type: %q is not supported (only llama3)", rs.RopeType)
		}
	}
	if q := c.Quantization; q != nil {
		if q.Bits != 4 && q.Bits != 8 {
			return fmt.Errorf("field quantization.bits: only 4 and 8 are supported, got %d", q.Bits)
		}
		if q.GroupSize <= 0 || 32%q.Bits != 0 || q.GroupSize%(32/q.Bits) != 0 {
			return fmt.Errorf("field quantization.group_size: %d must be positive and a multiple of %d", q.GroupSize, 32/q.Bits)
		}
	}
	return nil
}

// NumParams is the number of weights, counting a tied head once.
func (c Config) NumParams() int64 {
	h, i := int64(c.HiddenSize), int64(c.IntermediateSize)
	layer := h*int64(c.QDim())*2 + h*int64(c.KVDim())*2 + 3*h*i + 2*h
	n := int64(c.NumHiddenLayers)*layer + int64(c.VocabSize)*h + h
	if !c.TieWordEmbeddings {
		n += int64(c.VocabSize) * h
	}
	return n
}

var llama3Scaling = RopeScaling{
	RopeType:                      "llama3",
	Factor:                        32,
	LowFreqFactor:                 1,
	HighFreqFactor:                4,
	OriginalMaxPositionEmbeddings: 8192,
}

// presets are the named shapes. The llama-3.2 ones are the published
// shapes; tiny and small are sized for tests and CPU runs on a small machine:
// small takes a few milliseconds per decode step at batch 1 in pure Go.
var presets = map[string]Config{
	"tiny": {
		HiddenSize: 64, IntermediateSize: 192, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 16, VocabSize: 256,
		RMSNormEps: 1e-5, RopeTheta: 500000, TieWordEmbeddings: true,
		MaxPositionEmbeddings: 2048,
	},
	"small": {
		HiddenSize: 384, IntermediateSize: 1152, NumHiddenLayers: 4,
		NumAttentionHeads: 6, NumKeyValueHeads: 2, HeadDim: 64, VocabSize: 2048,
		RMSNormEps: 1e-5, RopeTheta: 500000, TieWordEmbeddings: false,
		MaxPositionEmbeddings: 8192,
	},
	"llama-3.2-1b": {
		HiddenSize: 2048, IntermediateSize: 8192, NumHiddenLayers: 16,
		NumAttentionHeads: 32, NumKeyValueHeads: 8, HeadDim: 64, VocabSize: 128256,
		RMSNormEps: 1e-5, RopeTheta: 500000, RopeScaling: &llama3Scaling,
		TieWordEmbeddings: true, MaxPositionEmbeddings: 131072,
	},
	"llama-3.2-3b": {
		HiddenSize: 3072, IntermediateSize: 8192, NumHiddenLayers: 28,
		NumAttentionHeads: 24, NumKeyValueHeads: 8, HeadDim: 128, VocabSize: 128256,
		RMSNormEps: 1e-5, RopeTheta: 500000, RopeScaling: &llama3Scaling,
		TieWordEmbeddings: true, MaxPositionEmbeddings: 131072,
	},
}

// Preset returns the named shape (see PresetNames).
func Preset(name string) (Config, error) {
	c, ok := presets[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown model preset %q (known: %s)", name, strings.Join(PresetNames(), ", "))
	}
	if c.RopeScaling != nil {
		rs := *c.RopeScaling
		c.RopeScaling = &rs
	}
	return c, nil
}

// PresetNames lists the presets in sorted order.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// RopeInvFreq returns the inverse frequencies of the head_dim/2 rotary pairs,
// with llama3 rope_scaling applied when the config has it. Computed in
// float64 so every engine and the reference share one definition.
func (c Config) RopeInvFreq() []float64 {
	half := c.HeadDim / 2
	inv := make([]float64, half)
	for i := range inv {
		inv[i] = 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim))
	}
	rs := c.RopeScaling
	if rs == nil || rs.RopeType != "llama3" {
		return inv
	}
	// Follows transformers' _compute_llama3_parameters.
	old := float64(rs.OriginalMaxPositionEmbeddings)
	lowWavelen := old / rs.LowFreqFactor
	highWavelen := old / rs.HighFreqFactor
	for i, f := range inv {
		wavelen := 2 * math.Pi / f
		switch {
		case wavelen < highWavelen:
		case wavelen > lowWavelen:
			inv[i] = f / rs.Factor
		default:
			smooth := (old/wavelen - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
			inv[i] = (1-smooth)*f/rs.Factor + smooth*f
		}
	}
	return inv
}
