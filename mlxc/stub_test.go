//go:build !mlx || !cgo

package mlxc

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStubReturnsErrNoMLX(t *testing.T) {
	var s *Stream
	var a *Array
	calls := map[string]func() error{
		"FromFloat32":      func() error { _, err := FromFloat32([]float32{1}, 1); return err },
		"FromInt32":        func() error { _, err := FromInt32([]int32{1}, 1); return err },
		"FromUint32":       func() error { _, err := FromUint32([]uint32{1}, 1); return err },
		"FromFloat16Bits":  func() error { _, err := FromFloat16Bits([]uint16{1}, 1); return err },
		"FromBFloat16Bits": func() error { _, err := FromBFloat16Bits([]uint16{1}, 1); return err },
		"Float32":          func() error { _, err := a.Float32(); return err },
		"Eval":             func() error { return Eval(a) },
		"AsyncEval":        func() error { return AsyncEval(a) },
		"DefaultStream":    func() error { _, err := DefaultStream(); return err },
		"CPUStream":        func() error { _, err := CPUStream(); return err },
		"GPUAvailable":     func() error { _, err := GPUAvailable(); return err },
		"DefaultGPU":       func() error { _, err := DefaultGPU(); return err },
		"GPUStream":        func() error { _, err := GPUStream(); return err },
		"RandomUniform":    func() error { _, err := s.RandomUniform(a, Float32, 0, 1, 2); return err },
		"Synchronize":      func() error { return s.Synchronize() },
		"Matmul":           func() error { _, err := s.Matmul(a, a); return err },
		"SDPA":             func() error { _, err := s.SDPA(a, a, a, 1, Mask{Causal: true}); return err },
		"Quantize":         func() error { _, _, _, err := s.Quantize(a, 64, 4); return err },
		"QuantizedMatmul":  func() error { _, err := s.QuantizedMatmul(a, a, a, a, true, 64, 4); return err },
		"RandomKey":        func() error { _, err := RandomKey(1); return err },
		"Memory":           func() error { _, err := Memory(); return err },
		"SetCacheLimit":    func() error { _, err := SetCacheLimit(1); return err },
		"Version":          func() error { _, err := Version(); return err },
		"SaveSafetensors":  func() error { return SaveSafetensors("x", nil, nil) },
		"LoadSafetensors":  func() error { _, _, err := LoadSafetensors("x", s); return err },
		"Block":            func() error { _, err := s.Block(BlockConfig{}, &BlockWeights{}, a, nil, nil, 0, true); return err },
		"NewSlotStep":      func() error { _, err := NewSlotStep([]int{1}, 2); return err },
		"BlockSlots":       func() error { _, err := s.BlockSlots(BlockConfig{}, &BlockWeights{}, a, a, a, nil); return err },
		"SliceUpdate":      func() error { _, err := s.SliceUpdate(a, a, nil, nil); return err },
		"PadEnd":           func() error { _, err := s.PadEnd(a, 1); return err },
		"NewSlotFunc": func() error {
			_, err := s.NewSlotFunc(BlockConfig{}, []BlockWeights{{}}, Linear{}, Linear{}, a, true)
			return err
		},
		"SlotFunc.Apply": func() error { _, err := (&SlotFunc{}).Apply(a, []int{1}, nil, nil); return err },
	}
	for name, call := range calls {
		assert.ErrorIs(t, call(), ErrNoMLX, name)
	}
	assert.EqualError(t, ErrNoMLX, "mlxc: built without MLX; rebuild with -tags mlx")
	assert.NoError(t, a.Close(), "Close is safe without MLX")
	var f *SlotFunc
	assert.NoError(t, f.Forget())
	assert.NoError(t, f.Close())
	assert.Zero(t, f.Traces())
}

func TestDType(t *testing.T) {
	tests := []struct {
		d    DType
		name string
		size int
	}{{Float32, "float32", 4}, {BFloat16, "bfloat16", 2}, {Uint32, "uint32", 4}, {DType(99), "dtype(99)", 0}}
	for _, tt := range tests {
		assert.Equal(t, tt.name, tt.d.String())
		assert.Equal(t, tt.size, tt.d.Size())
	}
}
