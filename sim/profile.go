package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"
)

// Mode is how an engine runs the batches it is given.
type Mode string

const (
	// Sequential runs a dispatched batch's requests one after another, each
	// a whole generation: batching saves nothing (the seed system's GPU
	// scheduler).
	Sequential Mode = "sequential"
	// Static prefills a batch together and decodes it in lockstep; the next
	// batch starts when the whole batch is done.
	Static Mode = "static"
	// Continuous schedules per iteration: dispatched requests join the
	// running set at the next step boundary, up to MaxBatch sequences.
	Continuous Mode = "continuous"
)

// StepCost holds the coefficients of one engine step's duration,
// base + per_prefill_seq·S + per_prefill_token·P + per_prefill_token_sq·Q +
// per_decode_seq·D + per_kv_token·K, in ms, for S sequences prefilled with
// P prompt tokens in all (Q: the sum of their squares) and D decoding with
// K context tokens.
type StepCost struct {
	BaseMS float64 `json:"base_ms"`
	// PerPrefillSeqMS is what each prompt costs beyond its tokens: an
	// engine that prefills each prompt as its own forward pass (the mlx
	// engine: 6 ms a prompt for the 1b shape on an H200, against ~4 ms for
	// a whole decode step) pays a launch floor per prompt. Omitted when 0.
	PerPrefillSeqMS   float64 `json:"per_prefill_seq_ms,omitempty"`
	PerPrefillTokenMS float64 `json:"per_prefill_token_ms"`
	// PerPrefillTokenSqMS is attention's cost over a prompt, which grows
	// with its square: on the cpu engine (tiny, 1 thread) a line through
	// prompts of 109-506 tokens under-predicted the prefill steps of a
	// trace whose prompts reach 2,000 tokens by half. Omitted when 0.
	PerPrefillTokenSqMS float64 `json:"per_prefill_token_sq_ms,omitempty"`
	PerDecodeSeqMS      float64 `json:"per_decode_seq_ms"`
	PerKVTokenMS        float64 `json:"per_kv_token_ms"`
}

// StepMS is the cost of one step that prefills s sequences with p prompt
// tokens in all (q: the sum of their squares) and decodes d sequences
// attending to k cached tokens.
func (c *StepCost) StepMS(s int, p, q int64, d int, k int64) float64 {
	return c.BaseMS + c.PerPrefillTokenMS*float64(p) + c.PerDecodeSeqMS*float64(d) + c.PerKVTokenMS*float64(k) + c.PerPrefillSeqMS*float64(s) + c.PerPrefillTokenSqMS*float64(q)
}

// Profile describes an engine for the simulator; replay's calibration
// writes the same format.
type Profile struct {
	Name     string   `json:"name"`
	Mode     Mode     `json:"mode"`
	MaxBatch int      `json:"max_batch"`
	Step     StepCost `json:"step"`
	// TokenBudget caps P + D per step in continuous mode (0: no cap). A
	// prompt larger than the budget runs alone: chunked prefill is not
	// modelled.
	TokenBudget       int64   `json:"token_budget,omitempty"`
	RequestOverheadMS float64 `json:"request_overhead_ms"`
	// JitterCV is the coefficient of variation of one step's duration
	// (multiplicative lognormal noise, mean 1).
	JitterCV   float64 `json:"jitter_cv"`
	Provenance string  `json:"provenance"`
}

// RequestOverhead is the fixed per-request cost as a Duration.
func (p *Profile) RequestOverhead() time.Duration {
	return time.Duration(math.Round(p.RequestOverheadMS * 1e6))
}

// Validate returns a one-line error naming the first bad field.
func (p *Profile) Validate() error {
	if strings.TrimSpace(p.Name) == "" {
		return fmt.Errorf("field name: missing")
	}
	switch p.Mode {
	case Sequential, Static, Continuous:
	case "":
		return fmt.Errorf("field mode: missing (want sequential, static or continuous)")
	default:
		return fmt.Errorf("field mode: unknown mode %q (want sequential, static or continuous)", p.Mode)
	}
	if p.MaxBatch < 1 || p.MaxBatch > 1<<20 {
		return fmt.Errorf("field max_batch: %d out of range 1..1048576", p.MaxBatch)
	}
	for _, c := range []struct {
		name string
		v    float64
	}{
		{"step.base_ms", p.Step.BaseMS},
		{"step.per_prefill_seq_ms", p.Step.PerPrefillSeqMS},
		{"step.per_prefill_token_sq_ms", p.Step.PerPrefillTokenSqMS},
		{"step.per_prefill_token_ms", p.Step.PerPrefillTokenMS},
		{"step.per_decode_seq_ms", p.Step.PerDecodeSeqMS},
		{"step.per_kv_token_ms", p.Step.PerKVTokenMS},
		{"request_overhead_ms", p.RequestOverheadMS},
		{"jitter_cv", p.JitterCV},
	} {
		if math.IsNaN(c.v) || math.IsInf(c.v, 0) || c.v < 0 || c.v > 1e7 {
			return fmt.Errorf("field %s: %v must be a finite number in 0..1e7", c.name, c.v)
		}
	}
	if p.Step.BaseMS+p.Step.PerPrefillTokenMS+p.Step.PerDecodeSeqMS == 0 {
		return fmt.Errorf("field step: base_ms, per_prefill_token_ms and per_decode_seq_ms are all 0 (steps would take no time)")
	}
	if p.JitterCV > 10 {
		return fmt.Errorf("field jitter_cv: %v above 10", p.JitterCV)
	}
	if p.TokenBudget < 0 {
		return fmt.Errorf("field token_budget: %d is negative", p.TokenBudget)
	}
	return nil
}

// ParseProfile decodes and validates a JSON profile; file names the
// source in errors.
func ParseProfile(data []byte, file string) (Profile, error) {
	var p Profile
	// Required keys are checked by presence so that a missing coefficient is
	// an error rather than a silent 0.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return p, fmt.Errorf("profile %s: not a JSON object: %v", file, err)
	}
	for _, k := range []string{"name", "mode", "max_batch", "step", "request_overhead_ms", "jitter_cv"} {
		if _, ok := raw[k]; !ok {
			return p, fmt.Errorf("profile %s: field %s: missing", file, k)
		}
	}
	var step map[string]json.RawMessage
	if err := json.Unmarshal(raw["step"], &step); err != nil {
		return p, fmt.Errorf("profile %s: field step: not an object", file)
	}
	for _, k := range []string{"base_ms", "per_prefill_token_ms", "per_decode_seq_ms", "per_kv_token_ms"} {
		if _, ok := step[k]; !ok {
			return p, fmt.Errorf("profile %s: field step.%s: missing", file, k)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("profile %s: %v", file, err)
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("profile %s: %v", file, err)
	}
	return p, nil
}

// Seed report figures (kr-serve-mlx, llama-3.2-3b, bare mlx-engine, 50
// questions of 50 tokens): mean TTFT 93.46 ms, mean response 406.20 ms.
const (
	seedTTFTMS     = 93.46
	seedResponseMS = 406.20
	seedOutTokens  = 50
	seedPromptMean = 40 // assumption shared with traces/seed-50q.parquet
)

var builtins = map[string]Profile{
	"seed-llama3.2-3b": {
		Name:     "seed-llama3.2-3b",
		Mode:     Sequential,
		MaxBatch: 4,
		Step: StepCost{
			BaseMS:            round4((seedResponseMS - seedTTFTMS) / (seedOutTokens - 1)),
			PerPrefillTokenMS: round4((seedTTFTMS - (seedResponseMS-seedTTFTMS)/(seedOutTokens-1)) / seedPromptMean),
		},
		JitterCV: 0.03,
		Provenance: "derived from the seed report's bare-engine run (kr-serve-mlx, llama-3.2-3b, mlx-engine, 50 questions x 50 tokens): " +
			"decode step = (mean response 406.20 ms - mean TTFT 93.46 ms) / 49 decoded tokens = 6.3824 ms, all put in base_ms " +
			"(one sequence at a time, so per-sequence and per-context costs cannot be told apart); prefill step = TTFT 93.46 ms = base + " +
			"per_prefill_token x 40, where 40 tokens is the assumed mean prompt (the report gives no prompt lengths; see traces/seed-50q.parquet). " +
			"request_overhead_ms is 0: this is the bare engine. The report's +11.7% is total wall time (21.4 s over 50 requests, mostly outside " +
			"per-request latency); the served stack added only +9.65 ms mean response and +11.5 ms TTFT, so to model kr-serve-mlx v1.4.1 set " +
			"request_overhead_ms to about 9.6. jitter_cv 0.03 is a rough fit to the response-time spread (sd 14.68 ms). max_batch 4 is the " +
			"seed scheduler's batch cap; sequential mode because its batches ran one request after another.",
	},
	"gpu-continuous": {
		Name:              "gpu-continuous",
		Mode:              Continuous,
		MaxBatch:          64,
		Step:              StepCost{BaseMS: 8, PerPrefillTokenMS: 0.04, PerDecodeSeqMS: 0.08, PerKVTokenMS: 0.00005},
		TokenBudget:       8192,
		RequestOverheadMS: 0.3,
		JitterCV:          0.02,
		Provenance:        "illustrative, not measured: the shape of a ~8B model under vLLM-style continuous batching on one datacenter GPU (8 ms step floor, ~25k prompt tokens/s prefill, cost growing with batch and context); use replay's calibration for a real machine",
	},
	"gpu-static": {
		Name:              "gpu-static",
		Mode:              Static,
		MaxBatch:          16,
		Step:              StepCost{BaseMS: 8, PerPrefillTokenMS: 0.04, PerDecodeSeqMS: 0.08, PerKVTokenMS: 0.00005},
		RequestOverheadMS: 0.3,
		JitterCV:          0.02,
		Provenance:        "illustrative, not measured: gpu-continuous's step costs with static (lockstep) batching, max 16 per batch",
	},
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// BuiltinProfiles returns the names of the built-in profiles, sorted.
func BuiltinProfiles() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// BuiltinProfile returns a built-in profile by name.
func BuiltinProfile(name string) (Profile, bool) {
	p, ok := builtins[name]
	return p, ok
}

// LoadProfile resolves a built-in name or reads a JSON file.
func LoadProfile(nameOrFile string) (Profile, error) {
	if p, ok := builtins[nameOrFile]; ok {
		return p, nil
	}
	data, err := os.ReadFile(nameOrFile)
	if err != nil {
		if os.IsNotExist(err) && !strings.ContainsAny(nameOrFile, "/.") {
			return Profile{}, fmt.Errorf("profile %q: no such built-in (have %s) or file", nameOrFile, strings.Join(BuiltinProfiles(), ", "))
		}
		return Profile{}, fmt.Errorf("profile %s: %v", nameOrFile, err)
	}
	return ParseProfile(data, nameOrFile)
}
