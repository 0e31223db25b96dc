//go:build mlx && cgo && linux

package realengine

import (
	"context"
	"runtime"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tinyOnThread opens the tiny preset and says which OS thread its engine
// runs MLX on.
func tinyOnThread(t *testing.T) (e *MLX, tid int) {
	c, w, err := LoadWeights("tiny", 1)
	require.NoError(t, err)
	e, err = NewMLX(c, w, Options{DType: "float32"})
	require.NoError(t, err)
	e.thread.do(func() { tid = syscall.Gettid() })
	return e, tid
}

// MLX's GPU command encoders are per OS thread, so every call on an engine
// must reach MLX from the thread that made its stream, whichever goroutine
// (and so whichever thread) the caller is on.
func TestMLXOneThread(t *testing.T) {
	e, tid := tinyOnThread(t)
	for i := range 8 {
		done := make(chan struct{})
		go func() { // a fresh goroutine locked to its own thread
			defer close(done)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			assert.NotEqual(t, tid, syscall.Gettid())
			require.NoError(t, e.Admit(Sequence{ID: SeqID(i), Prompt: []int32{1, 2, 3}}))
			_, err := e.Step(context.Background())
			require.NoError(t, err)
			var got int
			e.thread.do(func() { got = syscall.Gettid() })
			assert.Equal(t, tid, got)
			require.NoError(t, e.Retire(SeqID(i)))
		}()
		<-done
	}
	require.NoError(t, e.Close())
	_, err := e.Step(context.Background())
	assert.ErrorIs(t, err, ErrClosed)
	assert.NoError(t, e.Close())
}

// Pin's view runs every call on the engine's thread, from the goroutine
// that called Pin; closing through the view leaves Close to stop the
// thread. (Inside Pin only assert: t.FailNow would end the engine's thread.)
func TestMLXPin(t *testing.T) {
	e, tid := tinyOnThread(t)
	var pinned Pinned = e
	pinned.Pin(func(v Engine) {
		assert.Equal(t, tid, syscall.Gettid())
		assert.NoError(t, v.Admit(Sequence{ID: 1, Prompt: []int32{1, 2, 3}}))
		for range 3 {
			res, err := v.Step(context.Background())
			assert.NoError(t, err)
			assert.Len(t, res.Outputs, 1)
		}
		// The prompt's 3 tokens and the 2 fed back so far.
		assert.Equal(t, 5, v.Stats().KVTokens)
		assert.NoError(t, v.Retire(1))
		assert.NoError(t, v.Close())
		_, err := v.Step(context.Background())
		assert.ErrorIs(t, err, ErrClosed)
	})
	require.NoError(t, e.Close())
	assert.True(t, e.thread.stopped)
	_, err := e.Step(context.Background())
	assert.ErrorIs(t, err, ErrClosed)
}
