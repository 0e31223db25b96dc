//go:build !mlx || !cgo

package mlxc

// Array is an MLX array handle; in this build every operation fails with
// ErrNoMLX.
type Array struct{ _ int }

// Close is a no-op here.
func (a *Array) Close() error { return nil }

func FromFloat32(data []float32, shape ...int) (*Array, error)    { return nil, ErrNoMLX }
func FromInt32(data []int32, shape ...int) (*Array, error)        { return nil, ErrNoMLX }
func FromUint32(data []uint32, shape ...int) (*Array, error)      { return nil, ErrNoMLX }
func FromFloat16Bits(bits []uint16, shape ...int) (*Array, error) { return nil, ErrNoMLX }
func FromBFloat16Bits(bits []uint16, shape ...int) (*Array, error) {
	return nil, ErrNoMLX
}

func (a *Array) Float32() ([]float32, error)     { return nil, ErrNoMLX }
func (a *Array) Int32() ([]int32, error)         { return nil, ErrNoMLX }
func (a *Array) Uint32() ([]uint32, error)       { return nil, ErrNoMLX }
func (a *Array) Float16Bits() ([]uint16, error)  { return nil, ErrNoMLX }
func (a *Array) BFloat16Bits() ([]uint16, error) { return nil, ErrNoMLX }
func (a *Array) DType() DType                    { return -1 }
func (a *Array) Shape() []int                    { return nil }
func (a *Array) Size() int                       { return 0 }

func Eval(arrs ...*Array) error      { return ErrNoMLX }
func AsyncEval(arrs ...*Array) error { return ErrNoMLX }

// Stream is an MLX stream handle; in this build none can be made.
type Stream struct{ _ int }

func GPUAvailable() (bool, error)                      { return false, ErrNoMLX }
func DefaultGPU() (bool, error)                        { return false, ErrNoMLX }
func DefaultStream() (*Stream, error)                  { return nil, ErrNoMLX }
func GPUStream() (*Stream, error)                      { return nil, ErrNoMLX }
func CPUStream() (*Stream, error)                      { return nil, ErrNoMLX }
func (s *Stream) GPU() bool                            { return false }
func (s *Stream) String() string                       { return "Stream(no MLX)" }
func (s *Stream) Close() error                         { return nil }
func (s *Stream) Synchronize() error                   { return ErrNoMLX }
func (s *Stream) Matmul(a, b *Array) (*Array, error)   { return nil, ErrNoMLX }
func (s *Stream) Add(a, b *Array) (*Array, error)      { return nil, ErrNoMLX }
func (s *Stream) Multiply(a, b *Array) (*Array, error) { return nil, ErrNoMLX }
func (s *Stream) Reshape(a *Array, shape ...int) (*Array, error) {
	return nil, ErrNoMLX
}
func (s *Stream) Transpose(a *Array, axes ...int) (*Array, error) { return nil, ErrNoMLX }
func (s *Stream) Concatenate(axis int, arrs ...*Array) (*Array, error) {
	return nil, ErrNoMLX
}
func (s *Stream) Slice(a *Array, start, stop []int) (*Array, error) { return nil, ErrNoMLX }
func (s *Stream) Take(a, indices *Array, axis int) (*Array, error)  { return nil, ErrNoMLX }
func (s *Stream) Softmax(a *Array, axis int) (*Array, error)        { return nil, ErrNoMLX }
func (s *Stream) Argmax(a *Array, axis int, keepDims bool) (*Array, error) {
	return nil, ErrNoMLX
}
func (s *Stream) AsType(a *Array, d DType) (*Array, error)              { return nil, ErrNoMLX }
func (s *Stream) RMSNorm(x, weight *Array, eps float32) (*Array, error) { return nil, ErrNoMLX }
func (s *Stream) RoPE(x *Array, o RoPE) (*Array, error)                 { return nil, ErrNoMLX }
func (s *Stream) SDPA(q, k, v *Array, scale float32, mask Mask) (*Array, error) {
	return nil, ErrNoMLX
}
func (s *Stream) Quantize(w *Array, groupSize, bits int) (wq, scales, biases *Array, err error) {
	return nil, nil, nil, ErrNoMLX
}
func (s *Stream) Dequantize(wq, scales, biases *Array, groupSize, bits int) (*Array, error) {
	return nil, ErrNoMLX
}
func (s *Stream) QuantizedMatmul(x, wq, scales, biases *Array, transpose bool, groupSize, bits int) (*Array, error) {
	return nil, ErrNoMLX
}
func RandomKey(seed uint64) (*Array, error) { return nil, ErrNoMLX }
func (s *Stream) RandomUniform(key *Array, d DType, lo, hi float32, shape ...int) (*Array, error) {
	return nil, ErrNoMLX
}
func (s *Stream) RandomNormal(key *Array, d DType, loc, scale float32, shape ...int) (*Array, error) {
	return nil, ErrNoMLX
}
func Memory() (MemoryStats, error)             { return MemoryStats{}, ErrNoMLX }
func ResetPeakMemory() error                   { return ErrNoMLX }
func ClearCache() error                        { return ErrNoMLX }
func SetCacheLimit(bytes int64) (int64, error) { return 0, ErrNoMLX }
func Version() (string, error)                 { return "", ErrNoMLX }
func SaveSafetensors(path string, arrays map[string]*Array, metadata map[string]string) error {
	return ErrNoMLX
}
func LoadSafetensors(path string, s *Stream) (map[string]*Array, map[string]string, error) {
	return nil, nil, ErrNoMLX
}
func (s *Stream) Block(cfg BlockConfig, w *BlockWeights, x, kCache, vCache *Array, offset int, eval bool) (BlockOutput, error) {
	return BlockOutput{}, ErrNoMLX
}
func (s *Stream) BlockPadded(cfg BlockConfig, w *BlockWeights, x *Array, kCaches, vCaches []*Array, lens []int) (PaddedOutput, error) {
	return PaddedOutput{}, ErrNoMLX
}

// SlotStep holds a slot-cache decode step's inputs; see the mlx build.
type SlotStep struct{ _ int }

func NewSlotStep(lens []int, width int) (*SlotStep, error) { return nil, ErrNoMLX }

// Close is a no-op here.
func (st *SlotStep) Close() error { return nil }
func (s *Stream) BlockSlots(cfg BlockConfig, w *BlockWeights, x, kCache, vCache *Array, st *SlotStep) (BlockOutput, error) {
	return BlockOutput{}, ErrNoMLX
}
func (s *Stream) SliceUpdate(a, update *Array, start, stop []int) (*Array, error) {
	return nil, ErrNoMLX
}
func (s *Stream) PadEnd(a *Array, high ...int) (*Array, error) { return nil, ErrNoMLX }

// SlotFunc is a compiled slot decode step; see the mlx build.
type SlotFunc struct{ _ int }

func (s *Stream) NewSlotFunc(cfg BlockConfig, layers []BlockWeights, embed, head Linear, norm *Array, compiled bool) (*SlotFunc, error) {
	return nil, ErrNoMLX
}
func (f *SlotFunc) Apply(ids *Array, lens []int, k, v []*Array) (SlotOutput, error) {
	return SlotOutput{}, ErrNoMLX
}

// Traces is 0 here.
func (f *SlotFunc) Traces() int { return 0 }

// Forget is a no-op here.
func (f *SlotFunc) Forget() error { return nil }

// Close is a no-op here.
func (f *SlotFunc) Close() error { return nil }
