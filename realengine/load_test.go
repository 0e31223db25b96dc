package realengine

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lastLogits prefills prompt on a fresh CPU engine and returns the logits of
// the first generated token.
func lastLogits(t *testing.T, c Config, w *Weights, prompt []int32) []float32 {
	t.Helper()
	e, err := NewCPU(c, w, CPUOptions{RecordLogits: true})
	require.NoError(t, err)
	require.NoError(t, e.Admit(Sequence{ID: 1, Prompt: prompt}))
	res, err := e.Step(context.Background())
	require.NoError(t, err)
	return res.Outputs[0].Logits
}

func TestSaveLoadRoundTrip(t *testing.T) {
	c, w := tinyModel(t, 11)
	untied := c
	untied.TieWordEmbeddings = false
	untied.RopeScaling = &RopeScaling{RopeType: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64}
	wu, err := RandomWeights(untied, 12)
	require.NoError(t, err)
	prompt := []int32{3, 1, 4, 1, 5, 9, 2, 6}
	tests := []struct {
		name  string
		c     Config
		w     *Weights
		opt   SaveOptions
		exact bool    // weights survive bit for bit
		tol   float64 // else: max relative logit difference
	}{
		{name: "f32 tied", c: c, w: w, opt: SaveOptions{DType: F32}, exact: true},
		{name: "f32 untied llama3", c: untied, w: wu, opt: SaveOptions{DType: F32}, exact: true},
		{name: "f64", c: c, w: w, opt: SaveOptions{DType: F64}, exact: true},
		{name: "f16", c: c, w: w, opt: SaveOptions{DType: F16}, tol: 5e-3},
		{name: "bf16", c: untied, w: wu, opt: SaveOptions{DType: BF16}, tol: 3e-2},
		{name: "q8", c: c, w: w, opt: SaveOptions{Bits: 8, GroupSize: 32}, tol: 3e-2},
		{name: "q4", c: untied, w: wu, opt: SaveOptions{Bits: 4, GroupSize: 64}, tol: 0.6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, SaveModel(dir, tt.c, tt.w, tt.opt))
			c2, w2, err := LoadModel(dir)
			require.NoError(t, err)
			want := tt.c
			if tt.opt.Bits != 0 {
				want.Quantization = &Quantization{GroupSize: tt.opt.GroupSize, Bits: tt.opt.Bits}
			}
			assert.Equal(t, want, c2)
			got := lastLogits(t, c2, w2, prompt)
			orig := lastLogits(t, tt.c, tt.w, prompt)
			if tt.exact {
				assert.Equal(t, tt.w, w2)
				assert.Equal(t, orig, got)
				return
			}
			ref := make([]float64, len(orig))
			for i, v := range orig {
				ref[i] = float64(v)
			}
			d := maxRelDiff(got, ref)
			assert.Less(t, d, tt.tol)
			assert.Positive(t, d, "lossy encoding changed nothing: is it applied?")
			if tt.opt.Bits != 0 {
				// Loading must give exactly the dequantised weights.
				packed, scales, biases, err := Quantize(tt.w.Layers[0].Wq, tt.c.QDim(), tt.c.HiddenSize, tt.opt.GroupSize, tt.opt.Bits)
				require.NoError(t, err)
				dq, err := Dequantize(packed, scales, biases, tt.c.QDim(), tt.c.HiddenSize, tt.opt.GroupSize, tt.opt.Bits)
				require.NoError(t, err)
				assert.Equal(t, dq, w2.Layers[0].Wq)
			}
		})
	}
}

func TestSaveModelRefusesOverwrite(t *testing.T) {
	c, w := tinyModel(t, 1)
	dir := t.TempDir()
	require.NoError(t, SaveModel(dir, c, w, SaveOptions{}))
	err := SaveModel(dir, c, w, SaveOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exists")
	require.NoError(t, SaveModel(dir, c, w, SaveOptions{Force: true}))
}

func TestDequantizeLayout(t *testing.T) {
	// One row of 16 4-bit values in two groups of 8: q_i = i; the first
	// element sits in the lowest nibble of the first word.
	packed := []uint32{0x76543210, 0xfedcba98}
	got, err := Dequantize(packed, []float32{2, 0.5}, []float32{-1, 10}, 1, 16, 8, 4)
	require.NoError(t, err)
	want := make([]float32, 16)
	for i := range want {
		if i < 8 {
			want[i] = 2*float32(i) - 1
		} else {
			want[i] = 0.5*float32(i) + 10
		}
	}
	assert.Equal(t, want, got)
	// 8-bit: four bytes per word, little end first.
	got, err = Dequantize([]uint32{0x04030201}, []float32{1}, []float32{0}, 1, 4, 4, 8)
	require.NoError(t, err)
	assert.Equal(t, []float32{1, 2, 3, 4}, got)

	_, err = Dequantize(packed, []float32{1}, []float32{0}, 1, 16, 8, 4)
	assert.Error(t, err)
	_, err = Dequantize(packed, []float32{1, 1}, []float32{0, 0}, 1, 16, 8, 3)
	assert.Error(t, err)
}

func TestQuantizeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	w := make([]float32, 4*128)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	for _, bits := range []int{4, 8} {
		packed, scales, biases, err := Quantize(w, 4, 128, 32, bits)
		require.NoError(t, err)
		dq, err := Dequantize(packed, scales, biases, 4, 128, 32, bits)
		require.NoError(t, err)
		for i := range w {
			g := i / 32
			assert.LessOrEqual(t, math.Abs(float64(dq[i]-w[i])), float64(scales[g])/2+1e-6, "bits %d element %d", bits, i)
		}
	}
}

func TestLoadModelErrors(t *testing.T) {
	c, w := tinyModel(t, 1)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"no config", func(t *testing.T, dir string) {}, "config.json"},
		{"bad json", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte("{"), 0o644))
		}, "config.json: unexpected end of JSON input"},
		{"bad field", func(t *testing.T, dir string) {
			require.NoError(t, SaveModel(dir, c, w, SaveOptions{}))
			rewrite(t, filepath.Join(dir, "config.json"), `"num_key_value_heads": 2`, `"num_key_value_heads": 3`)
		}, "config.json: field num_key_value_heads: 3 does not divide"},
		{"no safetensors", func(t *testing.T, dir string) {
			require.NoError(t, SaveModel(dir, c, w, SaveOptions{}))
			require.NoError(t, os.Remove(filepath.Join(dir, "model.safetensors")))
		}, "no *.safetensors"},
		{"wrong shape", func(t *testing.T, dir string) {
			require.NoError(t, SaveModel(dir, c, w, SaveOptions{}))
			rewrite(t, filepath.Join(dir, "config.json"), `"intermediate_size": 192`, `"intermediate_size": 96`)
		}, "tensor model.layers.0.mlp.gate_proj.weight: shape [192 64], want [96 64]"},
		{"quantised without block", func(t *testing.T, dir string) {
			require.NoError(t, SaveModel(dir, c, w, SaveOptions{Bits: 4, GroupSize: 32}))
			data, err := os.ReadFile(filepath.Join(dir, "config.json"))
			require.NoError(t, err)
			i := strings.Index(string(data), `,
  "quantization"`)
			require.Positive(t, i)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), append(data[:i:i], "}"...), 0o644))
		}, "no quantization block"},
		{"truncated file", func(t *testing.T, dir string) {
			require.NoError(t, SaveModel(dir, c, w, SaveOptions{}))
			p := filepath.Join(dir, "model.safetensors")
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(p, data[:len(data)-10], 0o644))
		}, "outside the"},
		{"missing tensor", func(t *testing.T, dir string) {
			u := c
			u.TieWordEmbeddings = false
			require.NoError(t, SaveModel(dir, c, w, SaveOptions{}))
			cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), bytes.Replace(cfg, []byte(`"tie_word_embeddings": true`), []byte(`"tie_word_embeddings": false`), 1), 0o644))
		}, "tensor lm_head.weight missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			_, _, err := LoadModel(dir)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(data), old)
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o644))
}

func TestLoadWeights(t *testing.T) {
	c, w, err := LoadWeights("tiny", 5)
	require.NoError(t, err)
	assert.Equal(t, 64, c.HiddenSize)
	_, w2, err := LoadWeights("tiny", 5)
	require.NoError(t, err)
	assert.Equal(t, w, w2, "same seed, same weights")
	_, w3, err := LoadWeights("tiny", 6)
	require.NoError(t, err)
	assert.NotEqual(t, w.Embed, w3.Embed)

	dir := t.TempDir()
	require.NoError(t, SaveModel(dir, c, w, SaveOptions{}))
	_, w4, err := LoadWeights(dir, 0)
	require.NoError(t, err)
	assert.Equal(t, w, w4)

	_, _, err = LoadWeights("no-such-model", 0)
	assert.ErrorContains(t, err, "neither a model directory nor a preset")
}

func TestSafetensorsRoundTrip(t *testing.T) {
	f16, err := FloatTensor([]float32{1, -2, 0.5, 65504, 1e-7, 0}, []int{2, 3}, F16)
	require.NoError(t, err)
	in := map[string]Tensor{
		"a":      {DType: F32, Shape: []int{2}, Data: []byte{0, 0, 128, 63, 0, 0, 0, 64}},
		"scalar": {DType: I64, Shape: []int{}, Data: make([]byte, 8)},
		"empty":  {DType: U8, Shape: []int{0, 4}, Data: []byte{}},
		"h":      f16,
	}
	var buf bytes.Buffer
	require.NoError(t, WriteSafetensors(&buf, in, map[string]string{"format": "pt"}))
	hdrLen := binary.LittleEndian.Uint64(buf.Bytes())
	assert.Zero(t, (8+hdrLen)%8, "data must start 8-byte aligned")
	out, meta, err := ReadSafetensors(buf.Bytes())
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"format": "pt"}, meta)
	require.Len(t, out, len(in))
	for n, t0 := range in {
		assert.Equal(t, t0.DType, out[n].DType, n)
		assert.Equal(t, t0.Shape, out[n].Shape, n)
		assert.Equal(t, t0.Data, out[n].Data, n)
	}
	vals, err := out["h"].Float32s()
	require.NoError(t, err)
	assert.Equal(t, []float32{1, -2, 0.5, 65504}, vals[:4])
	assert.InDelta(t, 1e-7, vals[4], 3e-8) // subnormal half
	var again bytes.Buffer
	require.NoError(t, WriteSafetensors(&again, out, meta))
	assert.Equal(t, buf.Bytes(), again.Bytes(), "writing is deterministic")
}

func TestHalfConversions(t *testing.T) {
	tests := []struct {
		in   float32
		f16  uint16
		bf16 uint16
	}{
		{0, 0, 0},
		{1, 0x3c00, 0x3f80},
		{-2, 0xc000, 0xc000},
		{65504, 0x7bff, 0x4780},
		{1e6, 0x7c00, 0x4974},
		{float32(math.Inf(-1)), 0xfc00, 0xff80},
		{5.960464477539063e-08, 0x0001, 0x3380},
		{1.0009765625, 0x3c01, 0x3f80}, // bf16 rounds to even
	}
	for _, tt := range tests {
		assert.Equal(t, tt.f16, float32ToHalf(tt.in), "f16 of %g", tt.in)
		assert.Equal(t, tt.bf16, float32ToBF16(tt.in), "bf16 of %g", tt.in)
		if !math.IsInf(float64(tt.in), 0) && tt.in < 65520 {
			assert.InEpsilon(t, float64(tt.in)+1e-30, float64(halfToFloat32(tt.f16))+1e-30, 1e-3, "f16 back of %g", tt.in)
		}
	}
	// Every finite half survives a round trip through float32.
	for h := uint32(0); h < 1<<16; h++ {
		if h&0x7c00 == 0x7c00 {
			continue
		}
		assert.Equal(t, uint16(h), float32ToHalf(halfToFloat32(uint16(h))), "half %#04x", h)
	}
}

func TestReadSafetensorsErrors(t *testing.T) {
	header := func(h string, body int) []byte {
		b := make([]byte, 8, 8+len(h)+body)
		binary.LittleEndian.PutUint64(b, uint64(len(h)))
		return append(append(b, h...), make([]byte, body)...)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"short", []byte{1, 2}, "no header length"},
		{"huge header", header("", 0)[:8:8], ""},
		{"bad json", header("{", 0), "header"},
		{"bad dtype", header(`{"a":{"dtype":"X9","shape":[1],"data_offsets":[0,1]}}`, 1), `unsupported dtype "X9"`},
		{"size mismatch", header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), "4 bytes for shape [2] of F32"},
		{"out of range", header(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, 2), "outside the 2 data bytes"},
		{"negative dim", header(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`, 0), "bad shape"},
		{"overlap", header(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, 3), "overlap"},
		{"bad metadata", header(`{"__metadata__":{"a":1}}`, 0), "__metadata__"},
	}
	tests[1].data = binary.LittleEndian.AppendUint64(nil, 1<<40)
	tests[1].want = "does not fit"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadSafetensors(tt.data)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func FuzzReadSafetensors(f *testing.F) {
	var buf bytes.Buffer
	tf, _ := FloatTensor([]float32{1, 2, 3}, []int{3}, BF16)
	_ = WriteSafetensors(&buf, map[string]Tensor{"x": tf, "q": Uint32Tensor([]uint32{7}, []int{1, 1})}, map[string]string{"k": "v"})
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, meta, err := ReadSafetensors(data)
		if err != nil {
			return
		}
		// Whatever parses must write back and parse to the same tensors.
		var out bytes.Buffer
		if err := WriteSafetensors(&out, ts, meta); err != nil {
			t.Fatalf("re-writing a parsed file: %v", err)
		}
		back, _, err := ReadSafetensors(out.Bytes())
		if err != nil {
			t.Fatalf("re-reading: %v", err)
		}
		for n, x := range ts {
			if !bytes.Equal(x.Data, back[n].Data) || x.DType != back[n].DType {
				t.Fatalf("tensor %q changed", n)
			}
			if x.DType != U32 && x.DType.Size() > 0 {
				_, _ = x.Float32s()
			}
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	for _, n := range PresetNames() {
		c, _ := Preset(n)
		data, _ := jsonMarshal(c)
		f.Add(data)
	}
	f.Add([]byte(`{"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":4,"max_position_embeddings":8,"rope_scaling":{"type":"llama3","factor":2,"low_freq_factor":1,"high_freq_factor":2,"original_max_position_embeddings":4}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted an invalid config: %v", err)
		}
		inv := c.RopeInvFreq()
		for _, f := range inv {
			if !(f > 0) {
				t.Fatalf("inverse frequency %g", f)
			}
		}
		again, err := jsonMarshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseConfig(again)
		if err != nil {
			t.Fatalf("re-parsing %s: %v", again, err)
		}
		if !assert.ObjectsAreEqual(c, c2) {
			t.Fatalf("round trip changed %+v to %+v", c, c2)
		}
	})
}

// TestLoadModelSharded splits a saved model over two files, as large
// checkpoints are, and over-shares one tensor to check duplicates are caught.
func TestLoadModelSharded(t *testing.T) {
	c, w := tinyModel(t, 8)
	dir := t.TempDir()
	require.NoError(t, SaveModel(dir, c, w, SaveOptions{DType: BF16}))
	single := filepath.Join(dir, "model.safetensors")
	data, err := os.ReadFile(single)
	require.NoError(t, err)
	all, meta, err := ReadSafetensors(data)
	require.NoError(t, err)
	shards := []map[string]Tensor{{}, {}}
	for name, ten := range all {
		i := 0
		if strings.Contains(name, "layers.1.") || strings.HasPrefix(name, "model.norm") {
			i = 1
		}
		shards[i][name] = ten
	}
	write := func(name string, ts map[string]Tensor) {
		var buf bytes.Buffer
		require.NoError(t, WriteSafetensors(&buf, ts, meta))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644))
	}
	require.NoError(t, os.Remove(single))
	write("model-00001-of-00002.safetensors", shards[0])
	write("model-00002-of-00002.safetensors", shards[1])
	_, w2, err := LoadModel(dir)
	require.NoError(t, err)
	assert.NotEqual(t, w.Layers[1].Wdown, roundBF16(w.Layers[1].Wdown), "bf16 must round something, or this test compares nothing")
	assert.Equal(t, roundBF16(w.Layers[1].Wdown), w2.Layers[1].Wdown)
	assert.Equal(t, roundBF16(w.Embed), w2.Embed)

	shards[1]["model.embed_tokens.weight"] = all["model.embed_tokens.weight"]
	write("model-00002-of-00002.safetensors", shards[1])
	_, _, err = LoadModel(dir)
	assert.ErrorContains(t, err, "tensor model.embed_tokens.weight also in")
}

func roundBF16(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = math.Float32frombits(uint32(float32ToBF16(x)) << 16)
	}
	return out
}
