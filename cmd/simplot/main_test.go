package main

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/policies"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/trace"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// simulate writes the results of one policy on a shipped trace and the
// sweep table of two windows, as simrun would.
func simulate(t *testing.T, dir, spec string) (results, table string) {
	t.Helper()
	reqs, _, err := trace.ReadAll("../../traces/seed-50q.parquet")
	require.NoError(t, err)
	prof, err := sim.LoadProfile("seed-llama3.2-3b")
	require.NoError(t, err)
	results = filepath.Join(dir, strings.NewReplacer(":", "_", "=", "_", ",", "_").Replace(spec)+".parquet")
	w, err := sim.CreateResults(results, map[string]string{sim.MetaPolicy: spec, sim.MetaSource: "simrun"}, false)
	require.NoError(t, err)
	var rows []sim.TableRow
	for _, win := range []string{"1ms", "2ms"} {
		pol, err := policies.Parse(spec + ",window=" + win)
		require.NoError(t, err)
		cfg := sim.Config{Profile: prof, Policy: pol, Clients: 1, Seed: 1}
		if win == "2ms" {
			cfg.Results = w.Write
		}
		sum, _, err := sim.Run(cfg, &sim.SliceSource{Reqs: reqs})
		require.NoError(t, err)
		// Row carries the runs' 95 % bounds, which the sweep draws as
		// error bars.
		row := sum.Row("window", map[string]float64{"1ms": 1, "2ms": 2}[win])
		row.OverheadPct = 1
		rows = append(rows, row)
	}
	require.NoError(t, w.Close())
	table = filepath.Join(dir, "sweep.parquet")
	require.NoError(t, sim.WriteTable(table, rows, true))
	return results, table
}

func TestEveryKindRenders(t *testing.T) {
	dir := t.TempDir()
	a, table := simulate(t, dir, "fixed:anchor=collector")
	b, _ := simulate(t, dir, "fastpath:anchor=first")
	for i, tc := range [][]string{
		{"cdf", "--metric", "ttft", a, b},
		{"hist", a, b},
		{"timeline", a},
		{"sweep", table},
		{"panel", "--predicted", "fixed=" + a, "--measured", "fixed=" + b, "--sweep", table},
		{"panel", "--predicted", "fixed=" + a, "--sweep", table, "--sweep-measured", table, "--sweep-metric", "latency"},
	} {
		out := filepath.Join(dir, fmt.Sprintf("%s-%d.png", tc[0], i))
		code, _, errs := runCmd(t, append([]string{"-o", out, "--width", "600", "--height", "400"}, tc...)...)
		require.Equal(t, 0, code, "%v: %s", tc, errs)
		f, err := os.Open(out)
		require.NoError(t, err)
		img, err := png.Decode(f)
		f.Close()
		require.NoError(t, err, tc)
		assert.Equal(t, 600, img.Bounds().Dx(), tc)
		assert.Equal(t, 400, img.Bounds().Dy(), tc)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	a, table := simulate(t, dir, "fixed:anchor=collector")
	exists := filepath.Join(dir, "exists.png")
	require.NoError(t, os.WriteFile(exists, []byte("keep"), 0o644))
	empty := filepath.Join(dir, "empty.parquet")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	out := filepath.Join(dir, "x.png")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cdf", a}, "need --out"},
		{[]string{"pie", "-o", out, a}, "unknown plot kind"},
		{[]string{"cdf", "-o", out, "--metric", "speed", a}, "unknown metric \"speed\""},
		{[]string{"cdf", "-o", out, "../../traces/seed-50q.parquet"}, "not a results file"},
		{[]string{"cdf", "-o", out, empty}, "empty.parquet"},
		{[]string{"cdf", "-o", out, filepath.Join(dir, "none.parquet")}, "none.parquet"},
		{[]string{"cdf", "-o", out}, "no results files"},
		{[]string{"sweep", "-o", out, a}, a},
		{[]string{"cdf", "-o", exists, a}, "already exists"},
		{[]string{"cdf", "-o", filepath.Join(dir, "x.gif"), a}, "gif"},
		{[]string{"panel", "-o", out, "--measured", "nofile"}, "NAME=FILE"},
		{[]string{"cdf", "-o", out, "--bogus"}, "unknown flag"},
		{[]string{"sweep", "-o", out, "--metric", "tpot", table}, "tpot"},
		{[]string{"panel", "-o", out, "--predicted", "fixed=" + a, "--sweep", table, "--sweep-metric", "speed"}, `not "speed"`},
	} {
		code, _, errs := runCmd(t, tc.args...)
		assert.Equal(t, 2, code, tc.args)
		assert.Contains(t, errs, tc.want, tc.args)
		assert.Equal(t, 1, strings.Count(errs, "\n"), "one-line error: %q", errs)
	}
	got, _ := os.ReadFile(exists)
	assert.Equal(t, "keep", string(got))
	code, out2, _ := runCmd(t, "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out2, "Examples:")
}
