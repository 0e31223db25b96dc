package realengine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// SeqID names a sequence for its whole life in an engine; the caller picks
// it (replay uses the request id).
type SeqID int64

// Sequence is a request as an engine sees it: prompt token ids. How many
// tokens it generates is the caller's business: it retires the sequence
// after the last one; an end-of-sequence token stops nothing.
type Sequence struct {
	ID     SeqID
	Prompt []int32
	// PrefillChunk, when positive, splits the prompt over steps of at most
	// this many tokens (chunked prefill); the first token comes with the
	// last chunk. 0 prefills the whole prompt in one step.
	PrefillChunk int
	// MaxNewTokens, when positive, is a hint so the engine can size the KV
	// cache once instead of growing it; the sequence may still run longer.
	MaxNewTokens int
}

// NoToken is SeqOutput.Token when a step produced no token for the sequence.
const NoToken int32 = -1

// SeqOutput is what one step did for one sequence.
type SeqOutput struct {
	ID SeqID
	// Token is the greedy next token: the first output token after a
	// prefill, the next one after a decode; NoToken after a prefill chunk
	// that did not finish the prompt.
	Token int32
	// Prefill is the number of prompt tokens this step processed for the
	// sequence; 0 for a decode.
	Prefill int
	// Context is the number of tokens in the sequence's KV cache after the
	// step.
	Context int
	// Logits are the scores behind Token, filled only when the engine was
	// built to record them (tests).
	Logits []float32
	// Err is set when this sequence failed in this step (for example its
	// context outgrew the engine's limit). Its cache is already freed and it
	// runs no more; the caller still retires it. Other sequences are not
	// affected.
	Err error
}

// StepResult reports one engine iteration.
type StepResult struct {
	// Outputs: first the sequences prefilled in this step in admission
	// order, then the decoded ones in admission order, then those that
	// failed in this step.
	Outputs []SeqOutput
	// The work the step did, in the terms of the simulator's step-cost model.
	PrefillTokens int // prompt tokens processed
	DecodeSeqs    int // sequences that decoded one token
	KVTokens      int // cached tokens the decoding sequences attended to (sum of their contexts before the step)
	// Wall is the time the engine spent computing the step, measured with
	// the monotonic clock around the compute only.
	Wall time.Duration
}

// Stats is an engine's current occupancy, for memory checks and progress.
type Stats struct {
	Sequences int   // admitted and not retired (failed ones included)
	Pending   int   // admitted, waiting for their prefill step
	KVTokens  int   // tokens held in KV caches
	KVBytes   int64 // bytes reserved for KV caches
}

// Info describes an engine for provenance records.
type Info struct {
	Engine string `json:"engine"` // "cpu", "mlx"
	Model  string `json:"model"`  // preset name or model directory
	Device string `json:"device"` // e.g. "cpu (2 threads)", "gpu (bfloat16)"
	DType  string `json:"dtype"`  // weights and activations, e.g. "float32", "bfloat16"
	Config Config `json:"config"`
}

// Engine runs a decoder one serving iteration at a time. It knows nothing of
// batching policies, engine modes or batch limits: the caller (the serving
// model shared by simulator and replay) decides which sequences to admit
// before each step and retires each sequence after its last token.
//
// An Engine is not safe for concurrent use; one driver goroutine calls it.
type Engine interface {
	Info() Info
	// Admit registers a sequence; its prefill runs in the next Step. An
	// error (duplicate id, empty prompt, token outside the vocabulary,
	// prompt longer than the context limit) rejects only this sequence.
	Admit(seq Sequence) error
	// Step prefills every pending sequence (or its next chunk), producing
	// its first token when the prompt is complete, and decodes one token for
	// every other running sequence. The returned error
	// is for the engine as a whole (ctx done, engine closed); per-sequence
	// failures are in the outputs. When ctx ends during a step, the step is
	// rolled back: no cache grows and pending sequences stay pending.
	Step(ctx context.Context) (StepResult, error)
	// Retire forgets a sequence and frees its KV cache.
	Retire(id SeqID) error
	Stats() Stats
	// Close frees everything; it is safe to call twice.
	Close() error
}

// Pinned is implemented by engines whose calls must all reach them from one
// OS thread (the mlx engine: MLX keeps a GPU stream's state per thread).
// Each call from any other thread is handed to that thread and its caller
// woken when it is done, a few to tens of microseconds a call on a busy
// machine. Pin runs f on the engine's thread with a view of the engine whose
// methods run there directly, spared the hand-off; the view is valid only
// inside f, and calls on the engine itself wait until f returns.
type Pinned interface {
	Engine
	Pin(f func(Engine))
}

// Errors callers may test for.
var (
	ErrUnknownSequence = errors.New("unknown sequence")
	ErrClosed          = errors.New("engine closed")
	ErrContextFull     = errors.New("sequence reached the engine's context limit")
)

// LoadWeights resolves a --model argument shared by every engine: a directory
// holding config.json is loaded from disk; anything else names a preset,
// whose weights are drawn from seed.
func LoadWeights(model string, seed uint64) (Config, *Weights, error) {
	if st, err := os.Stat(model); err == nil && st.IsDir() {
		return LoadModel(model)
	}
	c, err := Preset(model)
	if err != nil {
		return Config{}, nil, fmt.Errorf("model %q is neither a model directory nor a preset: %w", model, err)
	}
	w, err := RandomWeights(c, seed)
	if err != nil {
		return Config{}, nil, err
	}
	return c, w, nil
}
