package sim

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/batchkit/batchkit/trace"
	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResultSchema(t *testing.T) {
	s := parquet.SchemaOf(Result{})
	for _, c := range []string{"request_id", "arrival_ns", "enqueue_ns", "dispatch_ns", "engine_start_ns", "first_token_ns", "finish_ns",
		"input_tokens", "output_tokens", "batch_id", "batch_size", "window_wait_ns", "engine_queue_wait_ns", "overhead_ns", "status", "error"} {
		_, ok := s.Lookup(c)
		assert.True(t, ok, c)
	}
	parquet.SchemaOf(TableRow{})
}

func TestResultsRoundTrip(t *testing.T) {
	reqs := poisson(3000, 200, 5, 50, func(r *rand.Rand) int32 { return 1 + r.Int32N(20) })
	path := filepath.Join(t.TempDir(), "r.parquet")
	w, err := CreateResults(path, map[string]string{MetaTrace: "t", MetaPolicy: "none"}, false)
	require.NoError(t, err)
	var want collected
	_, _, err = Run(Config{Profile: profile(Static, 4, 1), Policy: mustPolicy(t, "triton:max_queue_size=3,max_queue_delay=1ms"), Results: func(r *Result) error {
		want.put(r)
		return w.Write(r)
	}}, &SliceSource{Reqs: reqs})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	got, meta, err := ReadResults(path)
	require.NoError(t, err)
	assert.Equal(t, want.rs, got)
	assert.Equal(t, "none", meta[MetaPolicy])
	assert.Equal(t, "1", meta[MetaSchema])
	// Drops are accounted, never lost.
	assert.Len(t, got, len(reqs))
	rejected := 0
	for _, r := range got {
		if r.Status == StatusRejected {
			rejected++
			assert.Equal(t, int64(-1), r.DispatchNS)
			assert.NotEmpty(t, r.Error)
		}
	}
	assert.Positive(t, rejected, "the test should exercise rejections")
	_, err = CreateResults(path, nil, false)
	assert.ErrorContains(t, err, "already exists")
}

func TestOpenResultsRejectsOtherFiles(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.parquet")
	require.NoError(t, os.WriteFile(junk, []byte("PAR1 not really"), 0o644))
	_, err := OpenResults(junk)
	assert.ErrorContains(t, err, "junk.parquet: not a results file")
	_, err = OpenResults("../traces/seed-50q.parquet")
	assert.ErrorContains(t, err, "not a results file: no batchkit.results.schema_version metadata")
	_, err = ReadTable("../traces/seed-50q.parquet")
	assert.ErrorContains(t, err, "not a sweep table")
	_ = trace.ColArrivalNS
}

func FuzzOpenResults(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.parquet")
	w, err := CreateResults(path, nil, true)
	require.NoError(f, err)
	require.NoError(f, w.Write(&Result{RequestID: 1, Status: StatusOK}))
	require.NoError(f, w.Close())
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "f.parquet")
		require.NoError(t, os.WriteFile(p, data, 0o644))
		ReadResults(p) // must not panic
		ReadColumns(p, []string{"finish_ns", "batch_size"}, true)
	})
}

func TestReadColumnsMatchesRows(t *testing.T) {
	reqs := poisson(20000, 300, 5, 50, func(r *rand.Rand) int32 { return 1 + r.Int32N(20) })
	path := filepath.Join(t.TempDir(), "r.parquet")
	w, err := CreateResults(path, nil, false)
	require.NoError(t, err)
	_, _, err = Run(Config{Profile: profile(Static, 4, 1), Policy: mustPolicy(t, "triton:max_queue_size=3,max_queue_delay=1ms"), Results: w.Write}, &SliceSource{Reqs: reqs})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	rows, _, err := ReadResults(path)
	require.NoError(t, err)
	cols, st, meta, err := ReadColumns(path, []string{"finish_ns", "batch_size", "request_id"}, true)
	require.NoError(t, err)
	assert.Equal(t, "1", meta[MetaSchema])
	require.Len(t, st, len(rows))
	for i, r := range rows {
		require.Equal(t, r.FinishNS, cols[0][i])
		require.Equal(t, int64(r.BatchSize), cols[1][i])
		require.Equal(t, r.RequestID, cols[2][i])
		s, _ := parseStatus([]byte(r.Status))
		require.Equal(t, s, st[i])
	}
	_, _, _, err = ReadColumns(path, []string{"nosuch"}, false)
	assert.ErrorContains(t, err, "no column nosuch")
	_, _, _, err = ReadColumns(path, []string{"status"}, false)
	assert.ErrorContains(t, err, "not an integer")
}
