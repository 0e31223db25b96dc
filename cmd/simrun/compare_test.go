package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seedPair simulates the seed report's question (2 ms vs 1 ms collector
// window, with jitter so per-request differences have spread) and returns
// the two results files.
func seedPair(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for i, w := range []string{"2ms", "1ms"} {
		f := filepath.Join(dir, []string{"a.parquet", "b.parquet"}[i])
		code, _, errs := runCmd(t, "--trace", seedTrace, "--profile", "seed-llama3.2-3b", "--clients", "1",
			"--policy", "fixed:anchor=collector,window="+w, "--seed", "7", "--out", f, "--no-bare")
		require.Equal(t, 0, code, errs)
		files = append(files, f)
	}
	return files[0], files[1]
}

func TestCompareGolden(t *testing.T) {
	a, b := seedPair(t)
	code, out, errs := runCmd(t, "compare", a, b, "--detect", "1ms")
	require.Equal(t, 0, code, errs)
	// The file names are temporary: keep the golden file stable.
	out = strings.ReplaceAll(strings.ReplaceAll(out, a, "A.parquet"), b, "B.parquet")
	golden(t, "compare_seed.txt", out)
}

func TestCompareJSON(t *testing.T) {
	a, b := seedPair(t)
	code, out, errs := runCmd(t, "compare", a, b, "--detect", "0.5%", "--json")
	require.Equal(t, 0, code, errs)
	var got struct {
		Rows []struct {
			Metric      string     `json:"metric"`
			Stat        string     `json:"stat"`
			Delta       float64    `json:"delta"`
			CI          []*float64 `json:"ci95"`
			Significant bool       `json:"significant"`
			Paired      bool       `json:"paired"`
			NNeeded     *float64   `json:"n_needed"`
		} `json:"metrics"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	found := false
	for _, r := range got.Rows {
		if r.Metric == "window_wait_ms" && r.Stat == "mean" {
			found = true
			// One closed-loop client with no overhead sends its next
			// question the moment the collector starts a window, so each
			// request waits the whole window: halving it saves exactly 1 ms.
			assert.InDelta(t, -1.0, r.Delta, 1e-9)
			assert.True(t, r.Paired)
			assert.True(t, r.Significant)
			require.Len(t, r.CI, 2)
			assert.NotNil(t, r.NNeeded)
		}
	}
	assert.True(t, found, out)
}

func TestCompareUnpairedAndErrors(t *testing.T) {
	a, b := seedPair(t)
	code, out, errs := runCmd(t, "compare", a, b, "--unpaired")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "welch")

	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.parquet")
	require.NoError(t, os.WriteFile(junk, []byte("not parquet"), 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"compare", a}, "need two results files"},
		{[]string{"compare", a, seedTrace}, "not a results file"},
		{[]string{"compare", a, junk}, "junk.parquet"},
		{[]string{"compare", a, filepath.Join(dir, "none.parquet")}, "none.parquet"},
		{[]string{"compare", a, b, "--detect", "soon"}, "--detect"},
		{[]string{"compare", a, b, "--bogus"}, "unknown flag"},
	} {
		code, _, errs := runCmd(t, tc.args...)
		assert.Equal(t, 2, code, tc.args)
		assert.Contains(t, errs, tc.want, tc.args)
		assert.Equal(t, 1, strings.Count(errs, "\n"), "one-line error: %q", errs)
	}
	code, out, _ = runCmd(t, "compare", "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "simrun compare A.parquet B.parquet")
}
