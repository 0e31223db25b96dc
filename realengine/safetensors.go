package realengine

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// DType is a safetensors element type name ("F32", "BF16", ...).
type DType string

// The element types this package reads and writes.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	U32  DType = "U32"
	I32  DType = "I32"
	I64  DType = "I64"
	U8   DType = "U8"
	I8   DType = "I8"
)

// Size is the element size in bytes, 0 for an unknown type.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, U32, I32:
		return 4
	case F16, BF16:
		return 2
	case U8, I8:
		return 1
	}
	return 0
}

// Tensor is one named array of a safetensors file: raw little-endian bytes.
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte
}

// NumElements is the product of the shape (1 for a scalar).
func (t Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// maxHeader bounds the JSON header; real files have headers of a few hundred
// kilobytes at most, and the bound keeps a corrupt length from allocating
// gigabytes.
const maxHeader = 100 << 20

type stEntry struct {
	DType       DType    `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// ReadSafetensors parses a whole safetensors file held in memory. Tensors
// alias data. Metadata (the "__metadata__" entry) is returned separately.
func ReadSafetensors(data []byte) (map[string]Tensor, map[string]string, error) {
	if len(data) < 8 {
		return nil, nil, fmt.Errorf("safetensors: file of %d bytes has no header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > maxHeader || n > uint64(len(data)-8) {
		return nil, nil, fmt.Errorf("safetensors: header length %d does not fit a file of %d bytes", n, len(data))
	}
	header := data[8 : 8+n]
	body := data[8+n:]
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, nil, fmt.Errorf("safetensors: header: %w", err)
	}
	var meta map[string]string
	tensors := make(map[string]Tensor, len(raw))
	type span struct {
		name       string
		begin, end int64
	}
	spans := make([]span, 0, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("safetensors: header field __metadata__: %w", err)
			}
			continue
		}
		var e stEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		size := e.DType.Size()
		if size == 0 {
			return nil, nil, fmt.Errorf("safetensors: tensor %q: unsupported dtype %q", name, e.DType)
		}
		elems := int64(1)
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && elems > math.MaxInt64/8/int64(d)) {
				return nil, nil, fmt.Errorf("safetensors: tensor %q: bad shape %v", name, e.Shape)
			}
			elems *= int64(d)
		}
		b, end := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || end < b || end > int64(len(body)) {
			return nil, nil, fmt.Errorf("safetensors: tensor %q: data_offsets %v outside the %d data bytes", name, e.DataOffsets, len(body))
		}
		if end-b != elems*int64(size) {
			return nil, nil, fmt.Errorf("safetensors: tensor %q: %d bytes for shape %v of %s", name, end-b, e.Shape, e.DType)
		}
		tensors[name] = Tensor{DType: e.DType, Shape: e.Shape, Data: body[b:end:end]}
		if end > b {
			spans = append(spans, span{name, b, end})
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].begin < spans[j].begin })
	for i := 1; i < len(spans); i++ {
		if spans[i].begin < spans[i-1].end {
			return nil, nil, fmt.Errorf("safetensors: tensors %q and %q overlap", spans[i-1].name, spans[i].name)
		}
	}
	return tensors, meta, nil
}

// WriteSafetensors writes tensors in name order (so output is deterministic)
// with optional metadata.
func WriteSafetensors(w io.Writer, tensors map[string]Tensor, meta map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		if n == "__metadata__" {
			return errors.New("safetensors: __metadata__ is not a tensor name")
		}
		names = append(names, n)
	}
	sort.Strings(names)
	// Build the header by hand: encoding/json sorts map keys, which would be
	// fine, but an explicit order keeps "__metadata__" first like the
	// reference implementation.
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	first := true
	if len(meta) > 0 {
		m, err := json.Marshal(meta)
		if err != nil {
			return err
		}
		hdr.WriteString(`"__metadata__":`)
		hdr.Write(m)
		first = false
	}
	var off int64
	for _, n := range names {
		t := tensors[n]
		if t.DType.Size() == 0 {
			return fmt.Errorf("safetensors: tensor %q: unsupported dtype %q", n, t.DType)
		}
		if len(t.Data) != t.NumElements()*t.DType.Size() {
			return fmt.Errorf("safetensors: tensor %q: %d bytes for shape %v of %s", n, len(t.Data), t.Shape, t.DType)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		e, err := json.Marshal(stEntry{DType: t.DType, Shape: shape, DataOffsets: [2]int64{off, off + int64(len(t.Data))}})
		if err != nil {
			return err
		}
		name, _ := json.Marshal(n)
		if !first {
			hdr.WriteByte(',')
		}
		first = false
		hdr.Write(name)
		hdr.WriteByte(':')
		hdr.Write(e)
		off += int64(len(t.Data))
	}
	hdr.WriteByte('}')
	// The format asks for the data to start 8-byte aligned; pad with spaces.
	for (8+hdr.Len())%8 != 0 {
		hdr.WriteByte(' ')
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(hdr.Len()))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return err
	}
	if _, err := w.Write(hdr.Bytes()); err != nil {
		return err
	}
	for _, n := range names {
		if _, err := w.Write(tensors[n].Data); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic writes through a temporary file in the same directory and
// renames it, so a crash never leaves a half-written file under the name.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_ = f.Chmod(0o644) // CreateTemp makes it 0600; outputs are for others to read
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// Float32s converts a floating-point tensor to float32.
func (t Tensor) Float32s() ([]float32, error) {
	n := t.NumElements()
	out := make([]float32, n)
	d := t.Data
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:])))
		}
	case F16:
		for i := range out {
			out[i] = halfToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(d[2*i:])) << 16)
		}
	default:
		return nil, fmt.Errorf("dtype %s is not a floating-point type", t.DType)
	}
	return out, nil
}

// Uint32s reinterprets a U32 tensor (MLX packed quantised weights).
func (t Tensor) Uint32s() ([]uint32, error) {
	if t.DType != U32 {
		return nil, fmt.Errorf("dtype %s, want U32", t.DType)
	}
	out := make([]uint32, t.NumElements())
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(t.Data[4*i:])
	}
	return out, nil
}

// FloatTensor encodes float32 values as a tensor of the given floating dtype
// (rounding to nearest even for F16 and BF16).
func FloatTensor(vals []float32, shape []int, dt DType) (Tensor, error) {
	t := Tensor{DType: dt, Shape: append([]int(nil), shape...)}
	if t.NumElements() != len(vals) {
		return Tensor{}, fmt.Errorf("%d values for shape %v", len(vals), shape)
	}
	switch dt {
	case F32:
		t.Data = make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(v))
		}
	case F64:
		t.Data = make([]byte, 8*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint64(t.Data[8*i:], math.Float64bits(float64(v)))
		}
	case F16:
		t.Data = make([]byte, 2*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint16(t.Data[2*i:], float32ToHalf(v))
		}
	case BF16:
		t.Data = make([]byte, 2*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint16(t.Data[2*i:], float32ToBF16(v))
		}
	default:
		return Tensor{}, fmt.Errorf("dtype %s is not a floating-point type", dt)
	}
	return t, nil
}

// Uint32Tensor encodes packed words as a U32 tensor.
func Uint32Tensor(vals []uint32, shape []int) Tensor {
	t := Tensor{DType: U32, Shape: append([]int(nil), shape...), Data: make([]byte, 4*len(vals))}
	for i, v := range vals {
		binary.LittleEndian.PutUint32(t.Data[4*i:], v)
	}
	return t
}

func float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return uint16(b>>16) | 0x40 // keep it a NaN
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0:
		// Zero or subnormal: mant * 2^-24.
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

func float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff > 0x7f800000: // NaN
		return sign | 0x7e00
	case exp >= 0x1f:
		// Overflow and infinity both become infinity.
		return sign | 0x7c00
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		// Subnormal half: shift the mantissa with its implicit bit, round to
		// nearest even.
		m := mant | 0x800000
		shift := uint32(14 - exp)
		half := uint32(1) << (shift - 1)
		r := m >> shift
		rem := m & (1<<shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, which is the right rounding
	}
	return sign | uint16(r)
}
