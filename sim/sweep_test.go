package sim

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExpandSweep(t *testing.T) {
	pts, err := ExpandSweep("fixed:window=0ms..4ms/0.25ms")
	require.NoError(t, err)
	require.Len(t, pts, 17)
	assert.Equal(t, SweepPoint{Spec: "fixed:window=0s", Param: "window", Value: 0}, pts[0])
	assert.Equal(t, SweepPoint{Spec: "fixed:window=250µs", Param: "window", Value: 0.25}, pts[1])
	assert.Equal(t, SweepPoint{Spec: "fixed:window=4ms", Param: "window", Value: 4}, pts[16])
	pts, err = ExpandSweep("fixed:window=1ms,max_batch=2..8/2")
	require.NoError(t, err)
	assert.Equal(t, []SweepPoint{{"fixed:window=1ms,max_batch=2", "max_batch", 2}, {"fixed:window=1ms,max_batch=4", "max_batch", 4},
		{"fixed:window=1ms,max_batch=6", "max_batch", 6}, {"fixed:window=1ms,max_batch=8", "max_batch", 8}}, pts)
	for _, bad := range []string{"fixed", "fixed:window=1ms", "fixed:window=4ms..0ms/1ms", "fixed:window=0ms..4ms/0s",
		"fixed:window=0ms..4ms", "fixed:window=0ms..4/1ms", "fixed:window=0..1e9/1", "fixed:a=1..2/1,b=1..2/1"} {
		_, err := ExpandSweep(bad)
		assert.Error(t, err, bad)
	}
}

func TestTableRoundTrip(t *testing.T) {
	reqs := poisson(500, 100, 1, 10, one)
	var rows []TableRow
	for _, spec := range []string{"none", "fixed:window=1ms"} {
		s, _ := run(t, Config{Profile: profile(Continuous, 8, 1), Policy: mustPolicy(t, spec)}, reqs)
		rows = append(rows, s.Row("window", 1))
	}
	path := filepath.Join(t.TempDir(), "t.parquet")
	require.NoError(t, WriteTable(path, rows, false))
	assert.ErrorContains(t, WriteTable(path, rows, false), "already exists")
	got, err := ReadTable(path)
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.True(t, math.IsNaN(got[0].OverheadPct))
	for i := range got {
		// No bare run: no overhead and so no bounds for it.
		for _, v := range []*float64{&got[i].OverheadPct, &got[i].OverheadPctLo, &got[i].OverheadPctHi, &rows[i].OverheadPct, &rows[i].OverheadPctLo, &rows[i].OverheadPctHi} {
			assert.True(t, math.IsNaN(*v))
			*v = 0
		}
	}
	assert.Equal(t, rows, got)
	// A single run's bounds are its own per-request intervals.
	assert.Equal(t, TableCIRun, got[1].CIMethod)
	assert.Equal(t, int64(1), got[1].Runs)
	assert.Less(t, got[1].LatencyMeanLo, got[1].LatencyMean)
	assert.Greater(t, got[1].LatencyMeanHi, got[1].LatencyMean)
}

func TestParallelOrder(t *testing.T) {
	out := make([]int, 100)
	require.NoError(t, Parallel(100, 4, func(i int) error { out[i] = i * i; return nil }))
	for i, v := range out {
		assert.Equal(t, i*i, v)
	}
}

func FuzzExpandSweep(f *testing.F) {
	f.Add("fixed:window=0ms..4ms/0.25ms")
	f.Add("fixed:max_batch=1..9/2")
	f.Fuzz(func(t *testing.T, s string) {
		pts, err := ExpandSweep(s)
		if err == nil {
			require.NotEmpty(t, pts)
			require.LessOrEqual(t, len(pts), maxSweepPoints)
		}
	})
}
