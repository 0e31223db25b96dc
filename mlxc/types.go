package mlxc

import (
	"errors"
	"fmt"
)

// ErrNoMLX is returned by every call of a build without the mlx tag (or
// without cgo).
var ErrNoMLX = errors.New("mlxc: built without MLX; rebuild with -tags mlx")

// ErrClosed is returned when a closed Array or Stream is used.
var ErrClosed = errors.New("mlxc: use of a closed handle")

// DType is an MLX element type; the values follow mlx-c's mlx_dtype.
type DType int

const (
	Bool DType = iota
	Uint8
	Uint16
	Uint32
	Uint64
	Int8
	Int16
	Int32
	Int64
	Float16
	Float32
	Float64
	BFloat16
	Complex64
)

var dtypeNames = [...]string{"bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "bfloat16", "complex64"}
var dtypeSizes = [...]int{1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 2, 8}

func (d DType) String() string {
	if d < 0 || int(d) >= len(dtypeNames) {
		return fmt.Sprintf("dtype(%d)", int(d))
	}
	return dtypeNames[d]
}

// Size is the element size in bytes, 0 for an unknown dtype.
func (d DType) Size() int {
	if d < 0 || int(d) >= len(dtypeSizes) {
		return 0
	}
	return dtypeSizes[d]
}

// MemoryStats are MLX's allocator counters, in bytes.
type MemoryStats struct {
	Active int64 // held by live arrays
	Peak   int64 // highest Active since start or ResetPeakMemory
	Cache  int64 // freed buffers kept for reuse
}

// RoPE configures Stream.RoPE (mlx.fast.rope).
type RoPE struct {
	Dims        int     // leading features of the last axis to rotate (head_dim for Llama)
	Traditional bool    // false: rotate pairs (i, i+dims/2), the Hugging Face Llama layout
	Base        float32 // theta; ignored when Freqs is set
	Scale       float32 // position scale, 1 for Llama
	Offset      int     // position of the first row along axis -2
	Freqs       *Array  // optional [dims/2], replaces Base; MLX wants periods 1/inv_freq (e.g. 1/Config.RopeInvFreq() with llama3 scaling)
}

// Mask selects the attention mask of Stream.SDPA.
type Mask struct {
	// Causal masks key j for query i when j > i + (kv_len - q_len): the
	// queries are the last q_len positions of the keys, as with a KV cache.
	Causal bool
	// Array, when set (and Causal is false), is a boolean mask (true keeps)
	// or an additive float mask broadcastable to [B, heads, q_len, kv_len].
	Array *Array
}

// Linear is a projection in the Hugging Face [out, in] layout, y = x·Wᵀ:
// dense when Scales is nil, else MLX affine-quantised (W packed uint32,
// Scales and Biases per group of GroupSize inputs, Bits per weight).
type Linear struct {
	W, Scales, Biases *Array
	GroupSize, Bits   int
	// Transposed (dense only): W already holds the [in, out] transpose, so
	// y = x·W and no transpose node is built per call. A transposed view
	// made once at load costs no copy.
	Transposed bool
}

// BlockWeights are one Llama decoder layer's tensors.
type BlockWeights struct {
	AttnNorm, MLPNorm          *Array // [hidden]
	Q, K, V, O, Gate, Up, Down Linear
}

// BlockConfig is the shape of a Llama decoder layer.
type BlockConfig struct {
	Heads, KVHeads, HeadDim int
	Eps                     float32
	RopeBase                float32
	RopeFreqs               *Array // optional [head_dim/2] periods 1/inv_freq, as RoPE.Freqs; overrides RopeBase
}

// BlockOutput is the result of Stream.Block: the layer output and the
// layer's KV cache extended by the new tokens, [B, kv_heads, T, head_dim].
type BlockOutput struct {
	Out, K, V *Array
}

// Close frees the three arrays.
func (o BlockOutput) Close() error {
	return errors.Join(o.Out.Close(), o.K.Close(), o.V.Close())
}

// PaddedOutput is the result of Stream.BlockPadded: the layer output
// [B, 1, hidden] and each row's cache extended by its new token.
type PaddedOutput struct {
	Out  *Array
	K, V []*Array
}

// Close frees every array.
func (o PaddedOutput) Close() error {
	errs := []error{o.Out.Close()}
	for i := range o.K {
		errs = append(errs, o.K[i].Close(), o.V[i].Close())
	}
	return errors.Join(errs...)
}

// SlotOutput is a SlotFunc step's result: Toks [B] uint32, Logits
// [B, vocab], and per layer the updated slot caches.
type SlotOutput struct {
	Toks, Logits *Array
	K, V         []*Array
}

// Close frees every array.
func (o SlotOutput) Close() error {
	errs := []error{o.Toks.Close(), o.Logits.Close()}
	for i := range o.K {
		errs = append(errs, o.K[i].Close(), o.V[i].Close())
	}
	return errors.Join(errs...)
}
