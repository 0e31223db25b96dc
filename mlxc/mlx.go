//go:build mlx && cgo

package mlxc

/*
#cgo LDFLAGS: -lmlxc -lmlx -lm
#include "mlxc.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

var installOnce sync.Once

func install() { installOnce.Do(func() { C.mlxc_install_error_handler() }) }

func init() { install() }

// cerr turns a helper's result into a Go error, freeing the message.
func cerr(op string, m *C.char) error {
	if m == nil {
		return nil
	}
	s := C.GoString(m)
	C.free(unsafe.Pointer(m))
	return fmt.Errorf("mlxc: %s: %s", op, trimLocation(s))
}

// trimLocation drops the " at /path/ops.cpp:123" mlx-c appends, which names
// mlx-c's source, not the caller's.
func trimLocation(s string) string {
	i := strings.LastIndex(s, " at ")
	if i < 0 {
		return s
	}
	loc := s[i+4:]
	j := strings.LastIndexByte(loc, ':')
	if j < 0 || j == len(loc)-1 || strings.ContainsAny(loc, " \n") {
		return s
	}
	for _, c := range loc[j+1:] {
		if c < '0' || c > '9' {
			return s
		}
	}
	return s[:i]
}

// Array is an MLX array handle. Arrays are lazy: operations build a graph
// that runs on Eval or when data is read.
//
// An Array may be handed from one goroutine to another but is used by one
// at a time; Close must not race with any other use.
type Array struct {
	c       C.mlx_array
	cleanup runtime.Cleanup
}

func wrap(c C.mlx_array) *Array {
	a := &Array{c: c}
	// Safety net only: callers should Close.
	a.cleanup = runtime.AddCleanup(a, func(h unsafe.Pointer) { C.mlx_array_free(C.mlx_array{ctx: h}) }, c.ctx)
	return a
}

// Close frees the handle; safe to call twice and on nil.
func (a *Array) Close() error {
	if a == nil || a.c.ctx == nil {
		return nil
	}
	a.cleanup.Stop()
	err := cerr("free", C.mlxc_free_array(a.c))
	a.c.ctx = nil
	return err
}

func (a *Array) handle() (C.mlx_array, error) {
	if a == nil || a.c.ctx == nil {
		return C.mlx_array{}, ErrClosed
	}
	return a.c, nil
}

// optional returns a NULL handle for a nil array.
func optional(a *Array) (C.mlx_array, error) {
	if a == nil {
		return C.mlx_array{}, nil
	}
	return a.handle()
}

// result wraps a helper's output array or frees it on error.
func result(op string, res C.mlx_array, m *C.char) (*Array, error) {
	if err := cerr(op, m); err != nil {
		if res.ctx != nil {
			C.mlx_array_free(res)
		}
		return nil, err
	}
	return wrap(res), nil
}

func cints(v []int) ([]C.int, error) {
	out := make([]C.int, len(v))
	for i, x := range v {
		if x < math.MinInt32 || x > math.MaxInt32 {
			return nil, fmt.Errorf("mlxc: %d does not fit a C int", x)
		}
		out[i] = C.int(x)
	}
	return out, nil
}

func ptr(v []C.int) *C.int {
	if len(v) == 0 {
		return nil
	}
	return &v[0]
}

func elems(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("mlxc: negative dimension in shape %v", shape)
		}
		n *= d
	}
	return n, nil
}

func newArray[T float32 | int32 | uint32 | uint16](data []T, shape []int, storage, view DType, s *Stream) (*Array, error) {
	n, err := elems(shape)
	if err != nil {
		return nil, err
	}
	if n != len(data) {
		return nil, fmt.Errorf("mlxc: %d values for shape %v (%d elements)", len(data), shape, n)
	}
	cs, err := cints(shape)
	if err != nil {
		return nil, err
	}
	sh, err := s.handle()
	if err != nil {
		return nil, err
	}
	var p unsafe.Pointer
	var zero [1]T // MLX copies from data; an empty array still needs a valid pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	} else {
		p = unsafe.Pointer(&zero[0])
	}
	var res C.mlx_array
	m := C.mlxc_new_array(&res, p, ptr(cs), C.int(len(cs)), C.mlx_dtype(storage), C.mlx_dtype(view), sh)
	runtime.KeepAlive(data)
	runtime.KeepAlive(s)
	return result("new array", res, m)
}

// FromFloat32 copies data into a new float32 array of the given shape.
func FromFloat32(data []float32, shape ...int) (*Array, error) {
	return newArray(data, shape, Float32, Float32, cpuStream())
}

// FromInt32 copies data into a new int32 array.
func FromInt32(data []int32, shape ...int) (*Array, error) {
	return newArray(data, shape, Int32, Int32, cpuStream())
}

// FromUint32 copies data into a new uint32 array (e.g. packed quantised weights).
func FromUint32(data []uint32, shape ...int) (*Array, error) {
	return newArray(data, shape, Uint32, Uint32, cpuStream())
}

// FromFloat16Bits makes a float16 array from IEEE half-precision bit patterns.
func FromFloat16Bits(bits []uint16, shape ...int) (*Array, error) {
	return newArray(bits, shape, Uint16, Float16, cpuStream())
}

// FromBFloat16Bits makes a bfloat16 array from bfloat16 bit patterns (the
// top 16 bits of a float32), as stored in safetensors files.
func FromBFloat16Bits(bits []uint16, shape ...int) (*Array, error) {
	return newArray(bits, shape, Uint16, BFloat16, cpuStream())
}

func read[T float32 | int32 | uint32 | uint16](a *Array, as, storage DType) ([]T, error) {
	h, err := a.handle()
	if err != nil {
		return nil, err
	}
	n := a.Size()
	out := make([]T, n)
	var zero [1]T
	p := unsafe.Pointer(&zero[0])
	if n > 0 {
		p = unsafe.Pointer(&out[0])
	}
	s := cpuStream()
	m := C.mlxc_read(h, C.mlx_dtype(as), C.mlx_dtype(storage), s.c, p, C.size_t(n*storage.Size()))
	runtime.KeepAlive(a)
	if err := cerr("read "+as.String(), m); err != nil {
		return nil, err
	}
	return out, nil
}

// Float32 evaluates a and returns its elements in row-major order,
// converted to float32.
func (a *Array) Float32() ([]float32, error) { return read[float32](a, Float32, Float32) }

// Int32 evaluates a and returns its elements converted to int32.
func (a *Array) Int32() ([]int32, error) { return read[int32](a, Int32, Int32) }

// Uint32 evaluates a and returns its elements converted to uint32.
func (a *Array) Uint32() ([]uint32, error) { return read[uint32](a, Uint32, Uint32) }

// Float16Bits evaluates a, converts it to float16 and returns the bit patterns.
func (a *Array) Float16Bits() ([]uint16, error) { return read[uint16](a, Float16, Uint16) }

// BFloat16Bits evaluates a, converts it to bfloat16 and returns the bit patterns.
func (a *Array) BFloat16Bits() ([]uint16, error) { return read[uint16](a, BFloat16, Uint16) }

// DType is the element type; -1 for a closed array.
func (a *Array) DType() DType {
	if a == nil || a.c.ctx == nil {
		return -1
	}
	d := DType(C.mlx_array_dtype(a.c))
	runtime.KeepAlive(a)
	return d
}

// Shape is the array's shape; nil for a closed array.
func (a *Array) Shape() []int {
	if a == nil || a.c.ctx == nil {
		return nil
	}
	var buf [16]C.int
	var nd C.int
	if m := C.mlxc_shape(a.c, &nd, &buf[0], C.int(len(buf))); m != nil {
		C.free(unsafe.Pointer(m))
		return nil
	}
	runtime.KeepAlive(a)
	if int(nd) > len(buf) {
		big := make([]C.int, nd)
		C.mlxc_shape(a.c, &nd, &big[0], nd)
		runtime.KeepAlive(a)
		return goInts(big)
	}
	return goInts(buf[:nd])
}

func goInts(v []C.int) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// Size is the number of elements; 0 for a closed array.
func (a *Array) Size() int {
	if a == nil || a.c.ctx == nil {
		return 0
	}
	n := int(C.mlx_array_size(a.c))
	runtime.KeepAlive(a)
	return n
}

func handles(arrs []*Array) ([]C.mlx_array, error) {
	hs := make([]C.mlx_array, len(arrs))
	for i, a := range arrs {
		h, err := a.handle()
		if err != nil {
			return nil, fmt.Errorf("mlxc: array %d: %w", i, err)
		}
		hs[i] = h
	}
	return hs, nil
}

func evalArrays(async bool, arrs []*Array) error {
	if len(arrs) == 0 {
		return nil
	}
	hs, err := handles(arrs)
	if err != nil {
		return err
	}
	flag := C.int(0)
	if async {
		flag = 1
	}
	m := C.mlxc_eval(&hs[0], C.size_t(len(hs)), flag)
	runtime.KeepAlive(arrs)
	return cerr("eval", m)
}

// Eval computes the arrays and waits for them.
func Eval(arrs ...*Array) error { return evalArrays(false, arrs) }

// AsyncEval schedules the arrays' computation and returns at once; reading
// data, Eval or Stream.Synchronize waits for it.
func AsyncEval(arrs ...*Array) error { return evalArrays(true, arrs) }

// Stream is an MLX stream: a queue of work on one device. A Stream and the
// arrays built on it are used by one goroutine at a time (MLX does not
// promise thread-safe graph building).
type Stream struct {
	c       C.mlx_stream
	gpu     bool
	cleanup runtime.Cleanup
}

func newStream(gpu bool) (*Stream, error) {
	var c C.mlx_stream
	flag := C.int(0)
	if gpu {
		flag = 1
	}
	if err := cerr("default stream", C.mlxc_default_stream(&c, flag)); err != nil {
		return nil, err
	}
	s := &Stream{c: c, gpu: gpu}
	s.cleanup = runtime.AddCleanup(s, func(h unsafe.Pointer) { C.mlx_stream_free(C.mlx_stream{ctx: h}) }, c.ctx)
	return s, nil
}

var (
	cpuOnce sync.Once
	cpuDef  *Stream
)

// cpuStream backs array construction and reads, which run on the CPU.
func cpuStream() *Stream {
	cpuOnce.Do(func() {
		s, err := newStream(false)
		if err != nil {
			panic("mlxc: MLX has no CPU stream: " + err.Error())
		}
		cpuDef = s
	})
	return cpuDef
}

// GPUAvailable reports whether this MLX build has a GPU device (Metal or CUDA).
func GPUAvailable() (bool, error) {
	var n C.int
	if err := cerr("device count", C.mlxc_gpu_available(&n)); err != nil {
		return false, err
	}
	return n != 0, nil
}

// DefaultGPU reports whether MLX's default device is a GPU: MLX picks the
// GPU whenever the build has a usable one (Metal on a Mac, CUDA on Linux).
func DefaultGPU() (bool, error) {
	var n C.int
	if err := cerr("default device", C.mlxc_default_device_gpu(&n)); err != nil {
		return false, err
	}
	return n != 0, nil
}

// DefaultStream returns a handle on the default stream of MLX's default
// device: the GPU when the build has a usable one, else the CPU. Close it
// when done.
func DefaultStream() (*Stream, error) {
	gpu, err := DefaultGPU()
	if err != nil {
		return nil, err
	}
	return newStream(gpu)
}

// GPUStream returns a handle on the GPU's default stream, or an error when
// this MLX build or machine has no GPU.
func GPUStream() (*Stream, error) {
	gpu, err := GPUAvailable()
	if err != nil {
		return nil, err
	}
	if !gpu {
		return nil, errors.New("mlxc: this MLX build or machine has no GPU")
	}
	return newStream(true)
}

// CPUStream returns a handle on the CPU's default stream.
func CPUStream() (*Stream, error) { return newStream(false) }

// GPU reports whether the stream runs on a GPU.
func (s *Stream) GPU() bool { return s != nil && s.gpu }

// String describes the stream, e.g. "Stream(cpu, 0)".
func (s *Stream) String() string {
	if s == nil || s.c.ctx == nil {
		return "Stream(closed)"
	}
	var out *C.char
	if m := C.mlxc_stream_string(s.c, &out); m != nil {
		C.free(unsafe.Pointer(m))
		return "Stream(?)"
	}
	runtime.KeepAlive(s)
	str := C.GoString(out)
	C.free(unsafe.Pointer(out))
	return str
}

func (s *Stream) handle() (C.mlx_stream, error) {
	if s == nil || s.c.ctx == nil {
		return C.mlx_stream{}, ErrClosed
	}
	return s.c, nil
}

// Close frees the handle (the stream itself lives on); safe twice.
func (s *Stream) Close() error {
	if s == nil || s.c.ctx == nil {
		return nil
	}
	s.cleanup.Stop()
	C.mlx_stream_free(s.c)
	s.c.ctx = nil
	return nil
}

// Synchronize waits for all work queued on the stream.
func (s *Stream) Synchronize() error {
	h, err := s.handle()
	if err != nil {
		return err
	}
	m := C.mlxc_synchronize(h)
	runtime.KeepAlive(s)
	return cerr("synchronize", m)
}

// op2 runs a binary helper.
func (s *Stream) op2(name string, a, b *Array, f func(*C.mlx_array, C.mlx_array, C.mlx_array, C.mlx_stream) *C.char) (*Array, error) {
	sh, err := s.handle()
	if err != nil {
		return nil, err
	}
	ha, err := a.handle()
	if err != nil {
		return nil, err
	}
	hb, err := b.handle()
	if err != nil {
		return nil, err
	}
	var res C.mlx_array
	m := f(&res, ha, hb, sh)
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(s)
	return result(name, res, m)
}

// op1 runs a unary helper.
func (s *Stream) op1(name string, a *Array, f func(*C.mlx_array, C.mlx_array, C.mlx_stream) *C.char) (*Array, error) {
	sh, err := s.handle()
	if err != nil {
		return nil, err
	}
	ha, err := a.handle()
	if err != nil {
		return nil, err
	}
	var res C.mlx_array
	m := f(&res, ha, sh)
	runtime.KeepAlive(a)
	runtime.KeepAlive(s)
	return result(name, res, m)
}

// Matmul is a·b with numpy broadcasting of the batch axes.
func (s *Stream) Matmul(a, b *Array) (*Array, error) {
	return s.op2("matmul", a, b, func(r *C.mlx_array, x, y C.mlx_array, st C.mlx_stream) *C.char { return C.mlxc_matmul(r, x, y, st) })
}

// Add is a+b with broadcasting.
func (s *Stream) Add(a, b *Array) (*Array, error) {
	return s.op2("add", a, b, func(r *C.mlx_array, x, y C.mlx_array, st C.mlx_stream) *C.char { return C.mlxc_add(r, x, y, st) })
}

// Multiply is a*b elementwise with broadcasting.
func (s *Stream) Multiply(a, b *Array) (*Array, error) {
	return s.op2("multiply", a, b, func(r *C.mlx_array, x, y C.mlx_array, st C.mlx_stream) *C.char {
		return C.mlxc_multiply(r, x, y, st)
	})
}

// Reshape gives a a new shape with the same number of elements; one
// dimension may be -1.
func (s *Stream) Reshape(a *Array, shape ...int) (*Array, error) {
	cs, err := cints(shape)
	if err != nil {
		return nil, err
	}
	return s.op1("reshape", a, func(r *C.mlx_array, x C.mlx_array, st C.mlx_stream) *C.char {
		return C.mlxc_reshape(r, x, ptr(cs), C.size_t(len(cs)), st)
	})
}

// Transpose permutes the axes; no axes reverses them.
func (s *Stream) Transpose(a *Array, axes ...int) (*Array, error) {
	cs, err := cints(axes)
	if err != nil {
		return nil, err
	}
	return s.op1("transpose", a, func(r *C.mlx_array, x C.mlx_array, st C.mlx_stream) *C.char {
		return C.mlxc_transpose(r, x, ptr(cs), C.size_t(len(cs)), st)
	})
}

// Concatenate joins arrays along axis (a KV cache grows along axis 2).
func (s *Stream) Concatenate(axis int, arrs ...*Array) (*Array, error) {
	sh, err := s.handle()
	if err != nil {
		return nil, err
	}
	if len(arrs) == 0 {
		return nil, errors.New("mlxc: concatenate: no arrays")
	}
	hs, err := handles(arrs)
	if err != nil {
		return nil, err
	}
	var res C.mlx_array
	m := C.mlxc_concatenate(&res, &hs[0], C.size_t(len(hs)), C.int(axis), sh)
	runtime.KeepAlive(arrs)
	runtime.KeepAlive(s)
	return result("concatenate", res, m)
}

// Slice takes a[start:stop] on every axis (one start and stop per axis),
// with unit strides.
func (s *Stream) Slice(a *Array, start, stop []int) (*Array, error) {
	cs, ce, err := bounds("slice", start, stop)
	if err != nil {
		return nil, err
	}
	st := make([]C.int, len(start))
	for i := range st {
		st[i] = 1
	}
	return s.op1("slice", a, func(r *C.mlx_array, x C.mlx_array, sm C.mlx_stream) *C.char {
		return C.mlxc_slice(r, x, ptr(cs), ptr(ce), ptr(st), C.size_t(len(cs)), sm)
	})
}

// bounds converts a slice's starts and stops, one of each per axis.
func bounds(op string, start, stop []int) (cs, ce []C.int, err error) {
	if len(start) != len(stop) {
		return nil, nil, fmt.Errorf("mlxc: %s: %d starts but %d stops", op, len(start), len(stop))
	}
	if cs, err = cints(start); err == nil {
		ce, err = cints(stop)
	}
	return cs, ce, err
}

// Take gathers the entries of a at indices along axis (embedding lookup).
func (s *Stream) Take(a, indices *Array, axis int) (*Array, error) {
	return s.op2("take", a, indices, func(r *C.mlx_array, x, y C.mlx_array, st C.mlx_stream) *C.char {
		return C.mlxc_take(r, x, y, C.int(axis), st)
	})
}

// Softmax normalises along axis, accumulating in float32.
func (s *Stream) Softmax(a *Array, axis int) (*Array, error) {
	return s.op1("softmax", a, func(r *C.mlx_array, x C.mlx_array, st C.mlx_stream) *C.char {
		return C.mlxc_softmax(r, x, C.int(axis), st)
	})
}

// Argmax returns the index of the largest entry along axis (uint32).
func (s *Stream) Argmax(a *Array, axis int, keepDims bool) (*Array, error) {
	k := C.int(0)
	if keepDims {
		k = 1
	}
	return s.op1("argmax", a, func(r *C.mlx_array, x C.mlx_array, st C.mlx_stream) *C.char {
		return C.mlxc_argmax(r, x, C.int(axis), k, st)
	})
}

// AsType converts a to dtype d.
func (s *Stream) AsType(a *Array, d DType) (*Array, error) {
	return s.op1("astype", a, func(r *C.mlx_array, x C.mlx_array, st C.mlx_stream) *C.char {
		return C.mlxc_astype(r, x, C.mlx_dtype(d), st)
	})
}

// RMSNorm is mlx.fast.rms_norm over the last axis: x/rms(x)·weight;
// weight may be nil.
func (s *Stream) RMSNorm(x, weight *Array, eps float32) (*Array, error) {
	hw, err := optional(weight)
	if err != nil {
		return nil, err
	}
	out, err := s.op1("rms_norm", x, func(r *C.mlx_array, a C.mlx_array, st C.mlx_stream) *C.char {
		return C.mlxc_rms_norm(r, a, hw, C.float(eps), st)
	})
	runtime.KeepAlive(weight)
	return out, err
}

// RoPE is mlx.fast.rope: rotary embedding of x [..., L, D], row i at
// position o.Offset+i.
func (s *Stream) RoPE(x *Array, o RoPE) (*Array, error) {
	hf, err := optional(o.Freqs)
	if err != nil {
		return nil, err
	}
	trad, hasBase := C.int(0), C.int(1)
	if o.Traditional {
		trad = 1
	}
	if o.Freqs != nil {
		hasBase = 0
	}
	scale := o.Scale
	if scale == 0 {
		scale = 1
	}
	out, err := s.op1("rope", x, func(r *C.mlx_array, a C.mlx_array, st C.mlx_stream) *C.char {
		return C.mlxc_rope(r, a, C.int(o.Dims), trad, hasBase, C.float(o.Base), C.float(scale), C.int(o.Offset), hf, st)
	})
	runtime.KeepAlive(o.Freqs)
	return out, err
}

// SDPA is mlx.fast.scaled_dot_product_attention: q [B, H, Lq, D], k and v
// [B, Hkv, Lkv, D] with H a multiple of Hkv (grouped-query attention).
func (s *Stream) SDPA(q, k, v *Array, scale float32, mask Mask) (*Array, error) {
	sh, err := s.handle()
	if err != nil {
		return nil, err
	}
	hs, err := handles([]*Array{q, k, v})
	if err != nil {
		return nil, err
	}
	mode := ""
	var hm C.mlx_array
	switch {
	case mask.Causal:
		mode = "causal"
	case mask.Array != nil:
		mode = "array"
		if hm, err = mask.Array.handle(); err != nil {
			return nil, err
		}
	}
	cmode := C.CString(mode)
	defer C.free(unsafe.Pointer(cmode))
	var res C.mlx_array
	m := C.mlxc_sdpa(&res, hs[0], hs[1], hs[2], C.float(scale), cmode, hm, sh)
	runtime.KeepAlive(q)
	runtime.KeepAlive(k)
	runtime.KeepAlive(v)
	runtime.KeepAlive(mask.Array)
	runtime.KeepAlive(s)
	return result("scaled_dot_product_attention", res, m)
}

// Quantize is MLX affine quantisation of w [rows, cols] along its last
// axis: packed uint32 weights, and per-group scales and biases.
func (s *Stream) Quantize(w *Array, groupSize, bits int) (wq, scales, biases *Array, err error) {
	sh, err := s.handle()
	if err != nil {
		return nil, nil, nil, err
	}
	hw, err := w.handle()
	if err != nil {
		return nil, nil, nil, err
	}
	var a, b, c C.mlx_array
	m := C.mlxc_quantize(&a, &b, &c, hw, C.int(groupSize), C.int(bits), sh)
	runtime.KeepAlive(w)
	runtime.KeepAlive(s)
	if err := cerr("quantize", m); err != nil {
		for _, h := range []C.mlx_array{a, b, c} {
			if h.ctx != nil {
				C.mlx_array_free(h)
			}
		}
		return nil, nil, nil, err
	}
	return wrap(a), wrap(b), wrap(c), nil
}

// Dequantize expands affine-quantised weights back to floating point.
func (s *Stream) Dequantize(wq, scales, biases *Array, groupSize, bits int) (*Array, error) {
	sh, err := s.handle()
	if err != nil {
		return nil, err
	}
	hs, err := handles([]*Array{wq, scales, biases})
	if err != nil {
		return nil, err
	}
	var res C.mlx_array
	m := C.mlxc_dequantize(&res, hs[0], hs[1], hs[2], C.int(groupSize), C.int(bits), sh)
	runtime.KeepAlive(wq)
	runtime.KeepAlive(scales)
	runtime.KeepAlive(biases)
	runtime.KeepAlive(s)
	return result("dequantize", res, m)
}

// QuantizedMatmul is x·Wᵀ (transpose true, the Linear layout) or x·W with
// W affine-quantised.
func (s *Stream) QuantizedMatmul(x, wq, scales, biases *Array, transpose bool, groupSize, bits int) (*Array, error) {
	sh, err := s.handle()
	if err != nil {
		return nil, err
	}
	hs, err := handles([]*Array{x, wq, scales, biases})
	if err != nil {
		return nil, err
	}
	t := C.int(0)
	if transpose {
		t = 1
	}
	var res C.mlx_array
	m := C.mlxc_quantized_matmul(&res, hs[0], hs[1], hs[2], hs[3], t, C.int(groupSize), C.int(bits), sh)
	runtime.KeepAlive(x)
	runtime.KeepAlive(wq)
	runtime.KeepAlive(scales)
	runtime.KeepAlive(biases)
	runtime.KeepAlive(s)
	return result("quantized_matmul", res, m)
}

// RandomKey makes an MLX PRNG key from seed.
func RandomKey(seed uint64) (*Array, error) {
	var res C.mlx_array
	m := C.mlxc_random_key(&res, C.uint64_t(seed))
	return result("random key", res, m)
}

// RandomUniform draws values uniform on [lo, hi) of the given shape and
// dtype from key; the same key gives the same values.
func (s *Stream) RandomUniform(key *Array, d DType, lo, hi float32, shape ...int) (*Array, error) {
	cs, err := cints(shape)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return nil, errors.New("mlxc: random uniform needs an explicit key")
	}
	return s.op1("random uniform", key, func(r *C.mlx_array, k C.mlx_array, st C.mlx_stream) *C.char {
		return C.mlxc_random_uniform(r, ptr(cs), C.size_t(len(cs)), C.mlx_dtype(d), C.float(lo), C.float(hi), k, st)
	})
}

// RandomNormal draws N(loc, scale²) values of the given shape and dtype
// from key; the same key gives the same values.
func (s *Stream) RandomNormal(key *Array, d DType, loc, scale float32, shape ...int) (*Array, error) {
	cs, err := cints(shape)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return nil, errors.New("mlxc: random normal needs an explicit key")
	}
	return s.op1("random normal", key, func(r *C.mlx_array, k C.mlx_array, st C.mlx_stream) *C.char {
		return C.mlxc_random_normal(r, ptr(cs), C.size_t(len(cs)), C.mlx_dtype(d), C.float(loc), C.float(scale), k, st)
	})
}

// Memory returns MLX's allocator counters.
func Memory() (MemoryStats, error) {
	var a, p, c C.size_t
	if err := cerr("memory", C.mlxc_memory(&a, &p, &c)); err != nil {
		return MemoryStats{}, err
	}
	return MemoryStats{Active: int64(a), Peak: int64(p), Cache: int64(c)}, nil
}

// ResetPeakMemory restarts the Peak counter.
func ResetPeakMemory() error { return cerr("reset peak memory", C.mlxc_reset_peak()) }

// ClearCache returns cached buffers to the system.
func ClearCache() error { return cerr("clear cache", C.mlxc_clear_cache()) }

// SetCacheLimit bounds the allocator's cache and returns the previous limit.
func SetCacheLimit(bytes int64) (int64, error) {
	if bytes < 0 {
		return 0, fmt.Errorf("mlxc: negative cache limit %d", bytes)
	}
	var prev C.size_t
	if err := cerr("set cache limit", C.mlxc_set_cache_limit(&prev, C.size_t(bytes))); err != nil {
		return 0, err
	}
	return int64(prev), nil
}

// Version is the MLX library version, e.g. "0.31.2".
func Version() (string, error) {
	var out *C.char
	if err := cerr("version", C.mlxc_version(&out)); err != nil {
		return "", err
	}
	v := C.GoString(out)
	C.free(unsafe.Pointer(out))
	return v, nil
}

// SaveSafetensors writes arrays and string metadata to path.
func SaveSafetensors(path string, arrays map[string]*Array, metadata map[string]string) error {
	var names []*C.char
	var hs []C.mlx_array
	defer func() {
		for _, n := range names {
			C.free(unsafe.Pointer(n))
		}
	}()
	for k, a := range arrays {
		h, err := a.handle()
		if err != nil {
			return fmt.Errorf("mlxc: save %s: tensor %q: %w", path, k, err)
		}
		names = append(names, C.CString(k))
		hs = append(hs, h)
	}
	var mk, mv []*C.char
	defer func() {
		for i := range mk {
			C.free(unsafe.Pointer(mk[i]))
			C.free(unsafe.Pointer(mv[i]))
		}
	}()
	for k, v := range metadata {
		mk = append(mk, C.CString(k))
		mv = append(mv, C.CString(v))
	}
	// The name and value arrays hold C pointers, so they may live in C
	// memory; copy them there to keep cgo's pointer rules simple.
	cn, cm, ck := cPtrs(names), cPtrs(mk), cPtrs(mv)
	defer C.free(unsafe.Pointer(cn))
	defer C.free(unsafe.Pointer(cm))
	defer C.free(unsafe.Pointer(ck))
	var hp *C.mlx_array
	if len(hs) > 0 {
		hp = &hs[0]
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	m := C.mlxc_save_safetensors(cpath, cn, hp, C.size_t(len(hs)), cm, ck, C.size_t(len(mk)))
	runtime.KeepAlive(arrays)
	return cerr("save "+path, m)
}

func cPtrs(v []*C.char) **C.char {
	n := len(v)
	if n == 0 {
		n = 1
	}
	p := (**C.char)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(uintptr(0)))))
	copy(unsafe.Slice(p, n), v)
	return p
}

// LoadSafetensors reads every tensor and the metadata of a safetensors
// file. The arrays load lazily on s's device; the caller closes them.
func LoadSafetensors(path string, s *Stream) (map[string]*Array, map[string]string, error) {
	sh, err := s.handle()
	if err != nil {
		return nil, nil, err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var st C.mlxc_st
	if err := cerr("load "+path, C.mlxc_load_safetensors(&st, cpath, sh)); err != nil {
		return nil, nil, err
	}
	runtime.KeepAlive(s)
	defer C.mlxc_st_free(&st)
	// A safetensors header is bounded by its file; grow until the map fits.
	capacity := 256
	for {
		names := (**C.char)(C.malloc(C.size_t(capacity) * C.size_t(unsafe.Sizeof(uintptr(0)))))
		arrs := (*C.mlx_array)(C.malloc(C.size_t(capacity) * C.size_t(unsafe.Sizeof(C.mlx_array{}))))
		var n C.size_t
		m := C.mlxc_st_arrays(&st, names, arrs, C.size_t(capacity), &n)
		ns, as := unsafe.Slice(names, capacity), unsafe.Slice(arrs, capacity)
		if m != nil {
			C.free(unsafe.Pointer(m))
			for i := 0; i < int(n); i++ {
				C.mlx_array_free(as[i])
			}
			C.free(unsafe.Pointer(names))
			C.free(unsafe.Pointer(arrs))
			capacity *= 4
			continue
		}
		out := make(map[string]*Array, int(n))
		for i := 0; i < int(n); i++ {
			out[C.GoString(ns[i])] = wrap(as[i])
		}
		C.free(unsafe.Pointer(names))
		C.free(unsafe.Pointer(arrs))
		meta, err := loadMeta(&st)
		if err != nil {
			for _, a := range out {
				a.Close()
			}
			return nil, nil, err
		}
		return out, meta, nil
	}
}

func loadMeta(st *C.mlxc_st) (map[string]string, error) {
	for capacity := 64; ; capacity *= 4 {
		keys := (**C.char)(C.malloc(C.size_t(capacity) * C.size_t(unsafe.Sizeof(uintptr(0)))))
		vals := (**C.char)(C.malloc(C.size_t(capacity) * C.size_t(unsafe.Sizeof(uintptr(0)))))
		var n C.size_t
		m := C.mlxc_st_meta(st, keys, vals, C.size_t(capacity), &n)
		ks, vs := unsafe.Slice(keys, capacity), unsafe.Slice(vals, capacity)
		var out map[string]string
		if int(n) < capacity {
			out = make(map[string]string, int(n))
			for i := 0; i < int(n); i++ {
				out[C.GoString(ks[i])] = C.GoString(vs[i])
			}
		}
		C.free(unsafe.Pointer(keys))
		C.free(unsafe.Pointer(vals))
		if err := cerr("safetensors metadata", m); err != nil {
			return nil, err
		}
		if out != nil {
			return out, nil
		}
	}
}

func linearC(l Linear) (C.mlxc_linear, error) {
	var c C.mlxc_linear
	var err error
	if c.w, err = l.W.handle(); err != nil {
		return c, err
	}
	if l.Scales != nil {
		if c.scales, err = l.Scales.handle(); err != nil {
			return c, err
		}
		if c.biases, err = l.Biases.handle(); err != nil {
			return c, err
		}
		c.group_size, c.bits = C.int(l.GroupSize), C.int(l.Bits)
	} else if l.Transposed {
		c.transposed = 1
	}
	return c, nil
}

func blockC(cfg BlockConfig, w *BlockWeights) (C.mlxc_block_weights, C.mlxc_block_cfg, error) {
	var cw C.mlxc_block_weights
	var cc C.mlxc_block_cfg
	var err error
	if cw.attn_norm, err = w.AttnNorm.handle(); err != nil {
		return cw, cc, fmt.Errorf("mlxc: block attn norm: %w", err)
	}
	if cw.mlp_norm, err = w.MLPNorm.handle(); err != nil {
		return cw, cc, fmt.Errorf("mlxc: block mlp norm: %w", err)
	}
	for _, p := range []struct {
		dst *C.mlxc_linear
		src Linear
		n   string
	}{{&cw.q, w.Q, "q"}, {&cw.k, w.K, "k"}, {&cw.v, w.V, "v"}, {&cw.o, w.O, "o"}, {&cw.gate, w.Gate, "gate"}, {&cw.up, w.Up, "up"}, {&cw.down, w.Down, "down"}} {
		if *p.dst, err = linearC(p.src); err != nil {
			return cw, cc, fmt.Errorf("mlxc: block %s projection: %w", p.n, err)
		}
	}
	cc = C.mlxc_block_cfg{n_heads: C.int(cfg.Heads), n_kv_heads: C.int(cfg.KVHeads), head_dim: C.int(cfg.HeadDim), eps: C.float(cfg.Eps), rope_base: C.float(cfg.RopeBase)}
	if cc.rope_freqs, err = optional(cfg.RopeFreqs); err != nil {
		return cw, cc, err
	}
	if cfg.Heads <= 0 || cfg.KVHeads <= 0 || cfg.HeadDim <= 0 || cfg.Heads%cfg.KVHeads != 0 {
		return cw, cc, fmt.Errorf("mlxc: block: bad heads %d / kv heads %d / head dim %d", cfg.Heads, cfg.KVHeads, cfg.HeadDim)
	}
	return cw, cc, nil
}

// Block runs one Llama decoder layer in a single cgo crossing:
// rms_norm → q/k/v projections → RoPE → attention (causal over the cache
// plus the new tokens) → output projection → residual → rms_norm → SwiGLU
// MLP → residual. x is [B, L, hidden]; kCache and vCache are the layer's
// cache [B, kv_heads, T, head_dim] or nil; offset is x's first position
// (T when a cache is given). All B rows share the offset: sequences with
// different lengths go in separate calls, or through BlockPadded. With eval
// the outputs are computed before Block returns; otherwise they stay lazy.
func (s *Stream) Block(cfg BlockConfig, w *BlockWeights, x, kCache, vCache *Array, offset int, eval bool) (BlockOutput, error) {
	sh, err := s.handle()
	if err != nil {
		return BlockOutput{}, err
	}
	if (kCache == nil) != (vCache == nil) {
		return BlockOutput{}, errors.New("mlxc: block: give both K and V caches or neither")
	}
	cw, cc, err := blockC(cfg, w)
	if err != nil {
		return BlockOutput{}, err
	}
	hx, err := x.handle()
	if err != nil {
		return BlockOutput{}, err
	}
	hk, err := optional(kCache)
	if err != nil {
		return BlockOutput{}, err
	}
	hv, err := optional(vCache)
	if err != nil {
		return BlockOutput{}, err
	}
	ev := C.int(0)
	if eval {
		ev = 1
	}
	var o, k, v C.mlx_array
	m := C.mlxc_llama_block(&o, &k, &v, hx, &cw, &cc, hk, hv, C.int(offset), ev, sh)
	runtime.KeepAlive(w)
	runtime.KeepAlive(cfg.RopeFreqs)
	runtime.KeepAlive(x)
	runtime.KeepAlive(kCache)
	runtime.KeepAlive(vCache)
	runtime.KeepAlive(s)
	return blockOutput("llama block", m, o, k, v)
}

// blockOutput wraps a block call's three outputs, or frees whichever the
// failed call made.
func blockOutput(op string, m *C.char, o, k, v C.mlx_array) (BlockOutput, error) {
	if err := cerr(op, m); err != nil {
		for _, h := range []C.mlx_array{o, k, v} {
			if h.ctx != nil {
				C.mlx_array_free(h)
			}
		}
		return BlockOutput{}, err
	}
	return BlockOutput{Out: wrap(o), K: wrap(k), V: wrap(v)}, nil
}

// BlockPadded runs one decoder layer for B decoding rows of different
// cached lengths in one cgo crossing and one batched graph: x is
// [B, 1, hidden], kCaches[i] and vCaches[i] row i's cache
// [1, kv_heads, lens[i], head_dim]. The caches are left-padded to the
// longest, padding is masked out of attention and RoPE takes per-row
// positions, so each row computes what Block would compute for it alone.
// The outputs are lazy.
func (s *Stream) BlockPadded(cfg BlockConfig, w *BlockWeights, x *Array, kCaches, vCaches []*Array, lens []int) (PaddedOutput, error) {
	sh, err := s.handle()
	if err != nil {
		return PaddedOutput{}, err
	}
	B := len(lens)
	if B == 0 || len(kCaches) != B || len(vCaches) != B {
		return PaddedOutput{}, fmt.Errorf("mlxc: padded block: %d lengths, %d K and %d V caches", B, len(kCaches), len(vCaches))
	}
	cw, cc, err := blockC(cfg, w)
	if err != nil {
		return PaddedOutput{}, err
	}
	hx, err := x.handle()
	if err != nil {
		return PaddedOutput{}, err
	}
	// The handle arrays are read by C during the call only; Go memory
	// holding C pointers is fine to pass (cgo checks Go pointers only).
	hk := make([]C.mlx_array, 2*B)
	hv := hk[B:]
	for i := 0; i < B; i++ {
		if hk[i], err = kCaches[i].handle(); err != nil {
			return PaddedOutput{}, fmt.Errorf("mlxc: padded block K cache %d: %w", i, err)
		}
		if hv[i], err = vCaches[i].handle(); err != nil {
			return PaddedOutput{}, fmt.Errorf("mlxc: padded block V cache %d: %w", i, err)
		}
	}
	cl, err := cints(lens)
	if err != nil {
		return PaddedOutput{}, err
	}
	ko := make([]C.mlx_array, 2*B)
	vo := ko[B:]
	var o C.mlx_array
	m := C.mlxc_llama_block_padded(&o, &ko[0], &vo[0], hx, &cw, &cc, &hk[0], &hv[0], &cl[0], sh)
	runtime.KeepAlive(w)
	runtime.KeepAlive(cfg.RopeFreqs)
	runtime.KeepAlive(x)
	runtime.KeepAlive(kCaches)
	runtime.KeepAlive(vCaches)
	runtime.KeepAlive(s)
	if err := cerr("llama padded block", m); err != nil {
		for _, h := range append(ko, o) {
			if h.ctx != nil {
				C.mlx_array_free(h)
			}
		}
		return PaddedOutput{}, err
	}
	out := PaddedOutput{Out: wrap(o), K: make([]*Array, B), V: make([]*Array, B)}
	for i := 0; i < B; i++ {
		out.K[i], out.V[i] = wrap(ko[i]), wrap(vo[i])
	}
	return out, nil
}

// SlotStep holds the inputs of one decode step over a slot cache that
// every layer's BlockSlots shares: row i holds lens[i] tokens at columns
// 0..lens[i]-1 and decodes its new token into column lens[i] at position
// lens[i]; attention covers columns 0..width-1, column j visible to row i
// iff j <= lens[i]. Close it after the step's graph is built.
type SlotStep struct {
	c      C.mlxc_slot_step
	rows   int
	width  int
	closed bool
}

// NewSlotStep makes a step's inputs; width must exceed every length.
func NewSlotStep(lens []int, width int) (*SlotStep, error) {
	install()
	if len(lens) == 0 {
		return nil, errors.New("mlxc: slot step: no rows")
	}
	for i, n := range lens {
		if n < 0 || n >= width {
			return nil, fmt.Errorf("mlxc: slot step: row %d has %d tokens, width %d", i, n, width)
		}
	}
	cl, err := cints(lens)
	if err != nil {
		return nil, err
	}
	st := &SlotStep{rows: len(lens), width: width}
	if err := cerr("slot step", C.mlxc_slot_step_new(&st.c, &cl[0], C.int(len(lens)), C.int(width))); err != nil {
		return nil, err
	}
	return st, nil
}

// Close frees the step's arrays; closing twice is a no-op.
func (st *SlotStep) Close() error {
	if st == nil || st.closed {
		return nil
	}
	st.closed = true
	C.mlxc_slot_step_free(&st.c)
	return nil
}

// BlockSlots runs one decoder layer for st's rows against a slot cache
// kCache/vCache [R, kv_heads, C, head_dim] (R at least the rows, C at
// least st's width): x is [rows, 1, hidden]; each row's new key and value
// are scattered into the cache at its column, attention reads the first
// width columns under st's mask, RoPE takes per-row positions. Out.K and
// Out.V are the whole updated slot caches. The number of MLX operations
// does not depend on the number of rows, and no cache is copied when the
// caller drops its handles to kCache/vCache before evaluation (MLX then
// writes in place). The outputs are lazy.
func (s *Stream) BlockSlots(cfg BlockConfig, w *BlockWeights, x, kCache, vCache *Array, st *SlotStep) (BlockOutput, error) {
	sh, err := s.handle()
	if err != nil {
		return BlockOutput{}, err
	}
	if st == nil || st.closed {
		return BlockOutput{}, ErrClosed
	}
	ks, vs := kCache.Shape(), vCache.Shape()
	if len(ks) != 4 || !slices.Equal(ks, vs) || ks[0] < st.rows || ks[2] < st.width {
		return BlockOutput{}, fmt.Errorf("mlxc: slot block: caches %v and %v do not hold %d rows of width %d", ks, vs, st.rows, st.width)
	}
	cw, cc, err := blockC(cfg, w)
	if err != nil {
		return BlockOutput{}, err
	}
	hx, err := x.handle()
	if err != nil {
		return BlockOutput{}, err
	}
	if xs := x.Shape(); len(xs) != 3 || xs[0] != st.rows {
		return BlockOutput{}, fmt.Errorf("mlxc: slot block: input %v for %d rows", xs, st.rows)
	}
	hk, err := kCache.handle()
	if err != nil {
		return BlockOutput{}, err
	}
	hv, err := vCache.handle()
	if err != nil {
		return BlockOutput{}, err
	}
	var o, k, v C.mlx_array
	m := C.mlxc_llama_block_slots(&o, &k, &v, hx, &cw, &cc, hk, hv, &st.c, sh)
	runtime.KeepAlive(w)
	runtime.KeepAlive(cfg.RopeFreqs)
	runtime.KeepAlive(x)
	runtime.KeepAlive(kCache)
	runtime.KeepAlive(vCache)
	runtime.KeepAlive(st)
	runtime.KeepAlive(s)
	return blockOutput("llama slot block", m, o, k, v)
}

// SlotFunc is a whole slot decode step as one MLX function: embedding
// lookup, every layer as BlockSlots does it (but attending over all C
// columns of the cache), final RMSNorm, output head and argmax. Compiled
// (mlx_compile), MLX traces it once per input shapes (rows, cache
// capacity, token dtype) and replays the recorded tape on later calls, so
// a step costs one cgo crossing and no op construction: no shape
// inference, broadcasting or, on the CPU backend, expansion of RoPE and
// attention into their fallback graphs (the CPU graph writes RoPE and
// attention out itself, with RoPE's angles computed once for all layers).
// The function holds its own references to the weights; Close drops them
// and its cached tapes.
//
// MLX keeps compiled tapes per OS thread: use a SlotFunc from one locked
// thread (runtime.LockOSThread), as GPU streams need anyway. Calls from
// another thread trace again, and Forget or Close there leaves the first
// thread's tapes (and their references to the weights) behind.
type SlotFunc struct {
	c      C.mlxc_slot_fn
	layers int
}

// NewSlotFunc makes the step function of a decoder: layers in order, embed
// the token embedding [vocab, hidden] (dense or quantised), head the
// output projection (a Linear as Block's projections take it), norm the
// final norm weight. With compiled false every call builds the graph
// anew, as BlockSlots calls do.
func (s *Stream) NewSlotFunc(cfg BlockConfig, layers []BlockWeights, embed, head Linear, norm *Array, compiled bool) (*SlotFunc, error) {
	sh, err := s.handle()
	if err != nil {
		return nil, err
	}
	if len(layers) == 0 {
		return nil, errors.New("mlxc: slot function: no layers")
	}
	cws := make([]C.mlxc_block_weights, len(layers))
	var cc C.mlxc_block_cfg
	for l := range layers {
		if cws[l], cc, err = blockC(cfg, &layers[l]); err != nil {
			return nil, fmt.Errorf("mlxc: slot function layer %d: %w", l, err)
		}
	}
	ce, err := linearC(embed)
	if err != nil {
		return nil, fmt.Errorf("mlxc: slot function embedding: %w", err)
	}
	ch, err := linearC(head)
	if err != nil {
		return nil, fmt.Errorf("mlxc: slot function head: %w", err)
	}
	hn, err := norm.handle()
	if err != nil {
		return nil, fmt.Errorf("mlxc: slot function norm: %w", err)
	}
	comp := C.int(0)
	if compiled {
		comp = 1
	}
	f := &SlotFunc{layers: len(layers)}
	m := C.mlxc_slot_fn_new(&f.c, &cws[0], C.int(len(layers)), &cc, &ce, &ch, hn, comp, sh)
	runtime.KeepAlive(layers)
	runtime.KeepAlive(cfg.RopeFreqs)
	runtime.KeepAlive(embed)
	runtime.KeepAlive(head)
	runtime.KeepAlive(norm)
	runtime.KeepAlive(s)
	if err := cerr("slot function", m); err != nil {
		return nil, err
	}
	return f, nil
}

// Apply builds a step's lazy graph: ids [B] (int32 or uint32) the rows'
// input tokens, lens[i] the tokens row i holds (its new token goes to
// column lens[i] at position lens[i]; columns beyond are masked out), k
// and v the per-layer slot caches [R >= B, kv_heads, C > every lens[i],
// head_dim]. As with BlockSlots, MLX writes the caches in place when the
// caller drops its handles to k and v before evaluation.
func (f *SlotFunc) Apply(ids *Array, lens []int, k, v []*Array) (SlotOutput, error) {
	if f == nil || f.c.p == nil {
		return SlotOutput{}, ErrClosed
	}
	L := f.layers
	if len(k) != L || len(v) != L {
		return SlotOutput{}, fmt.Errorf("mlxc: slot function of %d layers given %d K and %d V caches", L, len(k), len(v))
	}
	hi, err := ids.handle()
	if err != nil {
		return SlotOutput{}, err
	}
	ks := k[0].Shape()
	if xs := ids.Shape(); len(xs) != 1 || xs[0] != len(lens) || len(ks) != 4 || ks[0] < len(lens) {
		return SlotOutput{}, fmt.Errorf("mlxc: slot function: ids %v, %d lengths, caches %v", xs, len(lens), ks)
	}
	l32 := make([]int32, len(lens))
	for i, n := range lens {
		if n < 0 || n >= ks[2] {
			return SlotOutput{}, fmt.Errorf("mlxc: slot function: row %d has %d tokens, cache width %d", i, n, ks[2])
		}
		l32[i] = int32(n)
	}
	la, err := FromInt32(l32, len(l32))
	if err != nil {
		return SlotOutput{}, err
	}
	defer la.Close()
	hk := make([]C.mlx_array, 2*L)
	for l := 0; l < L; l++ {
		if hk[l], err = k[l].handle(); err != nil {
			return SlotOutput{}, fmt.Errorf("mlxc: slot function K cache %d: %w", l, err)
		}
		if hk[L+l], err = v[l].handle(); err != nil {
			return SlotOutput{}, fmt.Errorf("mlxc: slot function V cache %d: %w", l, err)
		}
		if !slices.Equal(k[l].Shape(), ks) || !slices.Equal(v[l].Shape(), ks) {
			return SlotOutput{}, fmt.Errorf("mlxc: slot function: layer %d caches %v and %v, layer 0 %v", l, k[l].Shape(), v[l].Shape(), ks)
		}
	}
	outs := make([]C.mlx_array, 2*L+2)
	m := C.mlxc_slot_fn_apply(f.c, &outs[0], &outs[1], &outs[2], &outs[2+L], hi, la.c, &hk[0], &hk[L])
	runtime.KeepAlive(ids)
	runtime.KeepAlive(k)
	runtime.KeepAlive(v)
	if err := cerr("slot function", m); err != nil {
		for _, h := range outs {
			if h.ctx != nil {
				C.mlx_array_free(h)
			}
		}
		return SlotOutput{}, err
	}
	o := SlotOutput{Toks: wrap(outs[0]), Logits: wrap(outs[1]), K: make([]*Array, L), V: make([]*Array, L)}
	for l := 0; l < L; l++ {
		o.K[l], o.V[l] = wrap(outs[2+l]), wrap(outs[2+L+l])
	}
	return o, nil
}

// Traces says how many times the step's graph has been built op by op:
// at every call when not compiled; compiled, once per distinct input
// shapes and dtypes (rows, cache capacity, token dtype), again after
// Forget. 0 for a closed function.
func (f *SlotFunc) Traces() int {
	if f == nil || f.c.p == nil {
		return 0
	}
	return int(C.mlxc_slot_fn_traces(f.c))
}

// Forget drops the compiled tapes, one per distinct input shapes seen so
// far, and the few scalar constants each holds in device memory; the next
// call traces again. A no-op on a closed function.
func (f *SlotFunc) Forget() error {
	if f == nil || f.c.p == nil {
		return nil
	}
	return cerr("slot function forget", C.mlxc_slot_fn_forget(f.c))
}

// Close frees the function and its compiled tapes; closing twice is a
// no-op.
func (f *SlotFunc) Close() error {
	if f == nil || f.c.p == nil {
		return nil
	}
	C.mlxc_slot_fn_free(&f.c)
	return nil
}

// SliceUpdate returns a with a[start:stop] replaced by update (whose shape
// is stop-start), unit strides. MLX writes in place when a's buffer is
// otherwise unreferenced at evaluation.
func (s *Stream) SliceUpdate(a, update *Array, start, stop []int) (*Array, error) {
	cs, ce, err := bounds("slice update", start, stop)
	if err != nil {
		return nil, err
	}
	return s.op2("slice update", a, update, func(r *C.mlx_array, x, u C.mlx_array, sm C.mlx_stream) *C.char {
		return C.mlxc_slice_update(r, x, u, ptr(cs), ptr(ce), C.size_t(len(cs)), sm)
	})
}

// PadEnd pads a with zeros after the end of each axis i by high[i].
func (s *Stream) PadEnd(a *Array, high ...int) (*Array, error) {
	ch, err := cints(high)
	if err != nil {
		return nil, err
	}
	return s.op1("pad", a, func(r *C.mlx_array, x C.mlx_array, sm C.mlx_stream) *C.char {
		return C.mlxc_pad_zero(r, x, ptr(ch), C.size_t(len(ch)), sm)
	})
}
