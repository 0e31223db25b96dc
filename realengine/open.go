package realengine

import (
	"fmt"
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
}

// EngineNames lists the engines Open knows, whether or not this build has
// them.
func EngineNames() []string { return []string{"cpu", "mlx"} }

// Open builds the named engine. The mlx engine exists only in builds with
// the mlx tag; otherwise Open says so.
func Open(engine string, opt Options) (Engine, error) {
	switch engine {
	case "cpu":
		if opt.Device != "" && opt.Device != "cpu" {
			return nil, fmt.Errorf("engine cpu: device %q not supported (only cpu)", opt.Device)
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
