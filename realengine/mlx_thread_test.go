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

// MLX's GPU command encoders are per OS thread, so every call on an engine
// must reach MLX from the thread that made its stream, whichever goroutine
// (and so whichever thread) the caller is on.
func TestMLXOneThread(t *testing.T) {
	c, w, err := LoadWeights("tiny", 1)
	require.NoError(t, err)
	e, err := NewMLX(c, w, Options{DType: "float32"})
	require.NoError(t, err)
	var tid int
	e.thread.do(func() { tid = syscall.Gettid() })
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
	_, err = e.Step(context.Background())
	assert.ErrorIs(t, err, ErrClosed)
	assert.NoError(t, e.Close())
}
