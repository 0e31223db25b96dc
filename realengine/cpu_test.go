package realengine

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newCPUForChecks is the CPU engine's entry to the shared engine checks.
func newCPUForChecks(t testing.TB, c Config, w *Weights) Engine {
	e, err := NewCPU(c, w, CPUOptions{RecordLogits: true})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

func TestCPUMatchesReference(t *testing.T) {
	checkMatchesReference(t, newCPUForChecks, 1e-4)
}

func TestCPUBatchedEqualsAlone(t *testing.T) {
	checkBatchedEqualsAlone(t, newCPUForChecks, 1e-4)
}

func TestCPUStepAccounting(t *testing.T) {
	c, w := tinyModel(t, 1)
	e, err := NewCPU(c, w, CPUOptions{})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, e.Admit(Sequence{ID: 1, Prompt: []int32{1, 2, 3}}))
	require.NoError(t, e.Admit(Sequence{ID: 2, Prompt: []int32{4, 5}}))
	res, err := e.Step(ctx)
	require.NoError(t, err)
	assert.Equal(t, 5, res.PrefillTokens)
	assert.Equal(t, 0, res.DecodeSeqs)
	assert.Positive(t, res.Wall)
	require.NoError(t, e.Admit(Sequence{ID: 3, Prompt: []int32{6}}))
	res, err = e.Step(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, res.PrefillTokens)
	assert.Equal(t, 2, res.DecodeSeqs)
	assert.Equal(t, 5, res.KVTokens)
	require.Len(t, res.Outputs, 3)
	assert.Equal(t, []SeqID{3, 1, 2}, []SeqID{res.Outputs[0].ID, res.Outputs[1].ID, res.Outputs[2].ID})
	assert.Equal(t, []int{1, 0, 0}, []int{res.Outputs[0].Prefill, res.Outputs[1].Prefill, res.Outputs[2].Prefill})
	assert.Equal(t, []int{1, 4, 3}, []int{res.Outputs[0].Context, res.Outputs[1].Context, res.Outputs[2].Context})
	assert.Equal(t, Stats{Sequences: 3, KVTokens: 8, KVBytes: e.Stats().KVBytes}, e.Stats())

	empty, err := NewCPU(c, w, CPUOptions{})
	require.NoError(t, err)
	res, err = empty.Step(ctx)
	require.NoError(t, err)
	assert.Empty(t, res.Outputs)
}

func TestCPUAdmitErrors(t *testing.T) {
	c, w := tinyModel(t, 1)
	e, err := NewCPU(c, w, CPUOptions{MaxContext: 8})
	require.NoError(t, err)
	require.NoError(t, e.Admit(Sequence{ID: 1, Prompt: []int32{1}}))
	tests := []struct {
		name string
		seq  Sequence
		want string
	}{
		{"duplicate", Sequence{ID: 1, Prompt: []int32{1}}, "already admitted"},
		{"empty", Sequence{ID: 2}, "empty prompt"},
		{"token too big", Sequence{ID: 3, Prompt: []int32{1, 256}}, "token 256 at position 1 outside vocabulary"},
		{"negative token", Sequence{ID: 4, Prompt: []int32{-1}}, "outside vocabulary"},
		{"too long", Sequence{ID: 5, Prompt: make([]int32, 8)}, "leaves no room"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.Admit(tt.seq)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	assert.ErrorIs(t, e.Retire(99), ErrUnknownSequence)
	assert.Equal(t, 1, e.Stats().Sequences)
}

func TestCPUContextFullFailsOnlyThatSequence(t *testing.T) {
	c, w := tinyModel(t, 1)
	e, err := NewCPU(c, w, CPUOptions{MaxContext: 6})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, e.Admit(Sequence{ID: 1, Prompt: []int32{1, 2, 3, 4, 5}}))
	require.NoError(t, e.Admit(Sequence{ID: 2, Prompt: []int32{1}}))
	_, err = e.Step(ctx) // both prefill: contexts 5 and 1
	require.NoError(t, err)
	res, err := e.Step(ctx) // 1 reaches 6, 2 reaches 2
	require.NoError(t, err)
	for _, o := range res.Outputs {
		require.NoError(t, o.Err)
	}
	res, err = e.Step(ctx) // 1 would need a 7th position
	require.NoError(t, err)
	require.Len(t, res.Outputs, 2)
	assert.Equal(t, SeqID(2), res.Outputs[0].ID)
	assert.NoError(t, res.Outputs[0].Err)
	assert.Equal(t, SeqID(1), res.Outputs[1].ID)
	assert.ErrorIs(t, res.Outputs[1].Err, ErrContextFull)
	assert.Equal(t, 1, res.DecodeSeqs)
	// The failed sequence no longer runs and holds no cache, but stays until
	// retired.
	res, err = e.Step(ctx)
	require.NoError(t, err)
	require.Len(t, res.Outputs, 1)
	assert.Equal(t, SeqID(2), res.Outputs[0].ID)
	assert.Equal(t, 2, e.Stats().Sequences)
	assert.Equal(t, 4, e.Stats().KVTokens)
	require.NoError(t, e.Retire(1))
	require.NoError(t, e.Retire(2))
	assert.Equal(t, Stats{}, e.Stats())
}

func TestCPUCancelledStepRollsBack(t *testing.T) {
	c, w := tinyModel(t, 1)
	e, err := NewCPU(c, w, CPUOptions{RecordLogits: true})
	require.NoError(t, err)
	require.NoError(t, e.Admit(Sequence{ID: 1, Prompt: []int32{1, 2, 3}}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = e.Step(ctx)
	require.True(t, errors.Is(err, context.Canceled))
	assert.Equal(t, 1, e.Stats().Pending)
	// Cancellation in the middle of the forward pass: the check between
	// layers sees it, and nothing is committed.
	_, err = e.forward(ctx, []stepRow{{sq: e.seqs[1], count: 3}}, 3)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 0, e.seqs[1].n)
	res, err := e.Step(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 3, res.PrefillTokens)
	// Same result as a fresh engine.
	f, err := NewCPU(c, w, CPUOptions{RecordLogits: true})
	require.NoError(t, err)
	toks, _ := generate(t, f, 1, []int32{1, 2, 3}, 1)
	assert.Equal(t, toks[0], res.Outputs[0].Token)
}

func TestCPUClosed(t *testing.T) {
	c, w := tinyModel(t, 1)
	e, err := NewCPU(c, w, CPUOptions{})
	require.NoError(t, err)
	require.NoError(t, e.Close())
	require.NoError(t, e.Close())
	assert.ErrorIs(t, e.Admit(Sequence{ID: 1, Prompt: []int32{1}}), ErrClosed)
	_, err = e.Step(context.Background())
	assert.ErrorIs(t, err, ErrClosed)
}

// TestCPUMemoryBackToBaseline runs many admit/step/retire cycles and checks
// that the engine holds no cache afterwards and the heap has not grown.
func TestCPUMemoryBackToBaseline(t *testing.T) {
	c, w := tinyModel(t, 2)
	e, err := NewCPU(c, w, CPUOptions{})
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(9, 9))
	cycle := func() { runCycles(t, e, r, c.VocabSize) }
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	cycle() // sizes the scratch buffers
	base := heap()
	for i := 0; i < 10; i++ {
		cycle()
	}
	after := heap()
	// Slack for the scratch buffers, which grow to the largest step seen, and
	// for the runtime's own bookkeeping; a leaked KV cache per sequence would
	// be tens of megabytes over these cycles.
	assert.Less(t, int64(after)-int64(base), int64(1<<20), "heap grew from %d to %d bytes", base, after)
}

func TestCPUChunkedPrefill(t *testing.T) {
	checkChunkedPrefill(t, newCPUForChecks, 1e-5)
}
