package series

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/plots"
	"github.com/batchkit/batchkit/sim"
)

// Any results, however odd their times and batch ids, give series without
// a panic, with ascending timeline times.
func FuzzSeriesFromResults(f *testing.F) {
	f.Add([]byte{})
	f.Add(binary.LittleEndian.AppendUint64(make([]byte, 64), 1<<63))
	f.Add([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const per = 8 * 8
		var res []sim.Result
		for len(data) >= per {
			v := func(i int) int64 { return int64(binary.LittleEndian.Uint64(data[8*i:])) }
			res = append(res, sim.Result{
				ArrivalNS: v(0), EnqueueNS: v(1), DispatchNS: v(2), EngineStartNS: v(3), FirstTokenNS: v(4), FinishNS: v(5),
				BatchID: v(6), BatchSize: int32(v(7)), OutputTokens: int32(v(7) >> 32),
				Status: []string{sim.StatusOK, sim.StatusRejected, sim.StatusDropped, sim.StatusFailed}[uint64(v(7))>>62],
			})
			data = data[per:]
		}
		for _, m := range Metrics {
			_, err := Metric(res, m)
			require.NoError(t, err)
		}
		BatchSizes(res)
		tl := Timeline("g", plots.Measured, res)
		for _, tr := range []plots.Trace{tl.Queue, tl.Running, tl.Batches} {
			require.Len(t, tr.V, len(tr.T))
			require.True(t, slices.IsSorted(tr.T))
		}
	})
}

func FuzzRead(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.parquet")
	w, err := sim.CreateResults(path, nil, true)
	require.NoError(f, err)
	require.NoError(f, w.Write(&sim.Result{RequestID: 1, DispatchNS: 1, EngineStartNS: 1, FinishNS: 2, BatchSize: 1, Status: sim.StatusOK}))
	require.NoError(f, w.Close())
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "f.parquet")
		require.NoError(t, os.WriteFile(p, data, 0o644))
		Read(p, Need{Metric: "tpot", Batches: true, Timeline: true}) // must not panic
	})
}
