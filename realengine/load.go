package realengine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// LoadConfig reads dir/config.json.
func LoadConfig(dir string) (Config, error) {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "config.json: "))
	}
	return c, nil
}

// LoadModel reads a Hugging Face or mlx-community model directory:
// config.json and every *.safetensors file in it. Float tensors may be F32,
// F16, BF16 or F64; MLX-quantised tensors (a U32 "weight" with "scales" and
// "biases" next to it, group size and bits from config.json) are dequantised
// to float32. Tensors the Llama architecture does not use are ignored.
func LoadModel(dir string) (Config, *Weights, error) {
	m, err := readModel(dir)
	if err != nil {
		return Config{}, nil, err
	}
	w := &Weights{Layers: make([]Layer, m.cfg.NumHiddenLayers)}
	for _, s := range w.specs(m.cfg) {
		t, err := m.tensor(s)
		if err != nil {
			return Config{}, nil, err
		}
		vals, err := t.float32s(m.cfg, s)
		if err != nil {
			return Config{}, nil, fmt.Errorf("%s: tensor %s: %w", t.file, s.name, err)
		}
		*s.field = vals
	}
	return m.cfg, w, nil
}

// modelFiles is a model directory's config and every tensor of its
// safetensors files, not yet decoded.
type modelFiles struct {
	dir string
	cfg Config
	all map[string]located
}

type located struct {
	Tensor
	file string
}

func readModel(dir string) (*modelFiles, error) {
	c, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no *.safetensors files", dir)
	}
	sort.Strings(files)
	all := map[string]located{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		ts, _, err := ReadSafetensors(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for name, t := range ts {
			if prev, dup := all[name]; dup {
				return nil, fmt.Errorf("%s: tensor %s also in %s", f, name, prev.file)
			}
			all[name] = located{t, f}
		}
	}
	return &modelFiles{dir: dir, cfg: c, all: all}, nil
}

// modelTensor is one tensor of the Llama layout as stored: a float tensor,
// or (Packed set) an MLX-quantised matrix with its scales and biases, whose
// shapes are checked against the config.
type modelTensor struct {
	Float                  Tensor
	Packed, Scales, Biases Tensor
	file                   string
}

// tensor finds spec s in the files and checks its shape.
func (m *modelFiles) tensor(s matrixSpec) (modelTensor, error) {
	t, ok := m.all[s.name]
	if !ok {
		return modelTensor{}, fmt.Errorf("%s: tensor %s missing", m.dir, s.name)
	}
	mt := modelTensor{file: t.file}
	fail := func(err error) (modelTensor, error) {
		return modelTensor{}, fmt.Errorf("%s: tensor %s: %w", t.file, s.name, err)
	}
	want := []int{s.rows}
	if s.cols != 0 {
		want = append(want, s.cols)
	}
	if t.DType != U32 {
		if !equalShape(t.Shape, want) {
			return fail(fmt.Errorf("shape %v, want %v", t.Shape, want))
		}
		mt.Float = t.Tensor
		return mt, nil
	}
	q := m.cfg.Quantization
	if q == nil {
		return fail(errors.New("U32 (quantised) weight but config.json has no quantization block"))
	}
	if s.cols == 0 {
		return fail(errors.New("a vector cannot be quantised"))
	}
	per := 32 / q.Bits
	if s.cols%q.GroupSize != 0 {
		return fail(fmt.Errorf("%d columns are not a multiple of group_size %d", s.cols, q.GroupSize))
	}
	if !equalShape(t.Shape, []int{s.rows, s.cols / per}) {
		return fail(fmt.Errorf("packed shape %v, want [%d %d] for %d-bit", t.Shape, s.rows, s.cols/per, q.Bits))
	}
	mt.Packed = t.Tensor
	gshape := []int{s.rows, s.cols / q.GroupSize}
	for _, u := range []struct {
		dst    *Tensor
		suffix string
	}{{&mt.Scales, ".scales"}, {&mt.Biases, ".biases"}} {
		v, ok := m.all[strings.TrimSuffix(s.name, ".weight")+u.suffix]
		if !ok {
			return fail(fmt.Errorf("quantised weight without %s", u.suffix[1:]))
		}
		if !equalShape(v.Shape, gshape) {
			return fail(fmt.Errorf("%s shape %v, want %v", u.suffix[1:], v.Shape, gshape))
		}
		if v.DType == U32 {
			return fail(fmt.Errorf("%s: want a float dtype, got %s", u.suffix[1:], v.DType))
		}
		*u.dst = v.Tensor
	}
	return mt, nil
}

func (mt modelTensor) quantised() bool { return mt.Packed.DType == U32 }

// float32s decodes the tensor, dequantising a packed matrix.
func (mt modelTensor) float32s(c Config, s matrixSpec) ([]float32, error) {
	if !mt.quantised() {
		return mt.Float.Float32s()
	}
	packed, err := mt.Packed.Uint32s()
	if err != nil {
		return nil, err
	}
	sc, err := mt.Scales.Float32s()
	if err != nil {
		return nil, fmt.Errorf("scales: %w", err)
	}
	bi, err := mt.Biases.Float32s()
	if err != nil {
		return nil, fmt.Errorf("biases: %w", err)
	}
	q := c.Quantization
	return Dequantize(packed, sc, bi, s.rows, s.cols, q.GroupSize, q.Bits)
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// SaveOptions says how SaveModel encodes weights.
type SaveOptions struct {
	// DType of float tensors: F32 (default), F16, BF16 or F64.
	DType DType
	// Bits, when 4 or 8, writes every matrix in MLX quantised form with
	// GroupSize (default 64), and records both in config.json.
	Bits      int
	GroupSize int
	// Force allows replacing existing files.
	Force bool
}

// SaveModel writes config.json and model.safetensors into dir (created if
// needed), readable by LoadModel and by Hugging Face / MLX tooling.
func SaveModel(dir string, c Config, w *Weights, opt SaveOptions) error {
	if err := w.check(c); err != nil {
		return err
	}
	if opt.DType == "" {
		opt.DType = F32
	}
	c.Quantization = nil
	if opt.Bits != 0 {
		if opt.GroupSize == 0 {
			opt.GroupSize = 64
		}
		c.Quantization = &Quantization{GroupSize: opt.GroupSize, Bits: opt.Bits}
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "config.json")
	stPath := filepath.Join(dir, "model.safetensors")
	if !opt.Force {
		for _, p := range []string{cfgPath, stPath} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists (use force to replace it)", p)
			}
		}
	}
	tensors := map[string]Tensor{}
	for _, s := range w.specs(c) {
		shape := []int{s.rows}
		if s.cols != 0 {
			shape = append(shape, s.cols)
		}
		vals := *s.field
		if opt.Bits != 0 && s.cols != 0 {
			packed, scales, biases, err := Quantize(vals, s.rows, s.cols, opt.GroupSize, opt.Bits)
			if err != nil {
				return fmt.Errorf("tensor %s: %w", s.name, err)
			}
			base := strings.TrimSuffix(s.name, ".weight")
			tensors[s.name] = Uint32Tensor(packed, []int{s.rows, s.cols * opt.Bits / 32})
			gshape := []int{s.rows, s.cols / opt.GroupSize}
			// Scales and biases are always stored as F32 here so a test can
			// compare dequantised weights exactly.
			if tensors[base+".scales"], err = FloatTensor(scales, gshape, F32); err != nil {
				return err
			}
			if tensors[base+".biases"], err = FloatTensor(biases, gshape, F32); err != nil {
				return err
			}
			continue
		}
		t, err := FloatTensor(vals, shape, opt.DType)
		if err != nil {
			return fmt.Errorf("tensor %s: %w", s.name, err)
		}
		tensors[s.name] = t
	}
	cfgJSON, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(stPath, func(f io.Writer) error {
		return WriteSafetensors(f, tensors, map[string]string{"format": "pt"})
	}); err != nil {
		return err
	}
	return writeFileAtomic(cfgPath, func(f io.Writer) error {
		_, err := f.Write(append(cfgJSON, '\n'))
		return err
	})
}
