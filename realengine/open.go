package realengine

import (
	"fmt"
	"slices"
	"strings"
)

// Options select and configure an engine by name, as a command line does
// (`--engine cpu|mlx --model PRESET|DIR --device ...`).
type Options struct {
	// Model is a preset name (random weights from Seed) or a model directory.
	Model string
	Seed  uint64
	// Device: "" picks the engine's default; the cpu engine accepts only
	// "cpu".
	Device string
	// MaxContext caps tokens per sequence (0: the model's limit).
	MaxContext int
	// Threads for the cpu engine (0: GOMAXPROCS).
	Threads int
	// RecordLogits copies logits into every SeqOutput (tests).
	RecordLogits bool
	// DType is the mlx engine's weight and activation type, one of
	// DTypeNames; "" picks float32 on a CPU and bfloat16 on a GPU. The cpu
	// engine computes in float32 only.
	DType string
	// Quantize, when 4 or 8, makes the mlx engine quantise every matrix
	// whose columns split into groups of 64 on load (MLX affine
	// quantisation, as mlx-lm's convert -q does); 0 keeps the weights as
	// they come. A model directory already quantised to other bits is an
	// error.
	Quantize int
	// Compile says whether the mlx engine replays its slot decode step as
	// one function compiled with MLX's compile (see MLX.slotFn) rather than
	// building its graph op by op: "on", "off", or "" for the default,
	// on for the CPU and off on a GPU. On an H200 (CUDA, MLX 0.31.2) it
	// made the small preset's batch-1 step ~30 % faster (830-916 against
	// 1,192 µs) but a 1b replay of traces/default.parquet slower (decode
	// steps of 8 or more sequences 7.2 against 4.9 ms): every new batch
	// size or cache capacity traces and compiles its fused kernels again.
	Compile string
}

// DTypeNames lists the values of Options.DType.
func DTypeNames() []string { return []string{"float32", "float16", "bfloat16"} }

// QuantizeGroupSize is the group size of Options.Quantize, mlx-lm's default.
const QuantizeGroupSize = 64

func (o Options) check() error {
	if o.DType != "" && !slices.Contains(DTypeNames(), o.DType) {
		return fmt.Errorf("dtype %q not supported (%s)", o.DType, strings.Join(DTypeNames(), ", "))
	}
	if o.Quantize != 0 && o.Quantize != 4 && o.Quantize != 8 {
		return fmt.Errorf("quantize %d not supported (4 or 8 bits, or 0 for none)", o.Quantize)
	}
	if o.Compile != "" && o.Compile != "on" && o.Compile != "off" {
		return fmt.Errorf("compile %q not supported (on or off)", o.Compile)
	}
	return nil
}

// EngineNames lists the engines Open knows, whether or not this build has
// them.
func EngineNames() []string { return []string{"cpu", "mlx"} }

// Open builds the named engine. The mlx engine exists only in builds with
// the mlx tag; otherwise Open says so.
func Open(engine string, opt Options) (Engine, error) {
	if err := opt.check(); err != nil {
		return nil, fmt.Errorf("engine %s: %w", engine, err)
	}
	switch engine {
	case "cpu":
		if opt.Device != "" && opt.Device != "cpu" {
			return nil, fmt.Errorf("engine cpu: device %q not supported (only cpu)", opt.Device)
		}
		if opt.DType != "" && opt.DType != "float32" {
			return nil, fmt.Errorf("engine cpu: dtype %q not supported (only float32; use --engine mlx)", opt.DType)
		}
		if opt.Quantize != 0 {
			return nil, fmt.Errorf("engine cpu: quantize %d not supported (the cpu engine computes in float32; use --engine mlx)", opt.Quantize)
		}
		if opt.Compile != "" {
			return nil, fmt.Errorf("engine cpu: compile %q not supported (it compiles MLX graphs; use --engine mlx)", opt.Compile)
		}
		c, w, err := LoadWeights(opt.Model, opt.Seed)
		if err != nil {
			return nil, err
		}
		return NewCPU(c, w, CPUOptions{Model: opt.Model, MaxContext: opt.MaxContext, Threads: opt.Threads, RecordLogits: opt.RecordLogits})
	case "mlx":
		return openMLX(opt)
	}
	return nil, fmt.Errorf("unknown engine %q (known: %s)", engine, strings.Join(EngineNames(), ", "))
}
