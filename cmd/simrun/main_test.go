package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batchkit/batchkit/sim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./cmd/simrun -update to create it")
	assert.Equal(t, string(want), got)
}

const seedTrace = "../../traces/seed-50q.parquet"

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"seed_fixed_fastpath.txt", []string{"--trace", seedTrace, "--profile", "seed-llama3.2-3b", "--clients", "1",
			"--policy", "fixed:window=2ms", "--policy", "fastpath:window=2ms"}},
		{"seed_fixed.json", []string{"--trace", seedTrace, "--profile", "seed-llama3.2-3b", "--clients", "1", "--policy", "fixed:window=2ms", "--json"}},
		{"sweep.json", []string{"--trace", seedTrace, "--profile", "gpu-static", "--clients", "4", "--think", "10ms",
			"--sweep", "fixed:window=1ms..3ms/1ms", "--json", "--warmup", "5"}},
		{"default_poisson.txt", []string{"--trace", "../../traces/poisson-moderate.parquet", "--policy", "adaptive", "--speedup", "4"}},
		{"runs_seeds.txt", []string{"--trace", seedTrace, "--profile", "seed-llama3.2-3b", "--clients", "1", "--policy", "fixed:window=2ms", "--runs", "5"}},
		{"runs_bootstrap.json", []string{"--trace", seedTrace, "--profile", "testdata/nojitter.json", "--clients", "2", "--policy", "fixed:window=2ms", "--runs", "20", "--json"}},
		{"runs_sweep.txt", []string{"--trace", seedTrace, "--profile", "seed-llama3.2-3b", "--clients", "2", "--sweep", "fixed:window=1ms..2ms/1ms", "--runs", "4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCmd(t, tc.args...)
			require.Equal(t, 0, code, errs)
			golden(t, tc.name, out)
		})
	}
}

func TestNoFlagsRunsDefaultTrace(t *testing.T) {
	code, out, errs := runCmd(t, "--json")
	require.Equal(t, 0, code, errs)
	var s sim.Summary
	require.NoError(t, json.Unmarshal([]byte(out), &s))
	assert.Equal(t, "../../traces/default.parquet", s.Trace)
	assert.Equal(t, int64(3000), s.Requests)
	assert.Equal(t, defaultProfile, s.Profile)
	require.NotNil(t, s.OverheadPct)
}

func TestListings(t *testing.T) {
	code, out, _ := runCmd(t, "--policy", "list")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "fastpath")
	code, out, _ = runCmd(t, "--profile", "list")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "seed-llama3.2-3b")
	code, out, _ = runCmd(t, "--help")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "Examples:")
}

func TestOutputsAndForce(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "r.parquet")
	table := filepath.Join(dir, "t.parquet")
	args := []string{"--trace", seedTrace, "--profile", "seed-llama3.2-3b", "--clients", "2", "--policy", "fixed:window=1ms", "--out", out, "--seed", "3"}
	code, _, errs := runCmd(t, args...)
	require.Equal(t, 0, code, errs)
	rs, meta, err := sim.ReadResults(out)
	require.NoError(t, err)
	assert.Len(t, rs, 50)
	assert.Equal(t, "fixed:window=1ms,max_batch=8,anchor=first", meta[sim.MetaPolicy])
	assert.Equal(t, "3", meta[sim.MetaSeed])
	first, _ := os.ReadFile(out)
	code, _, errs = runCmd(t, args...)
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "already exists (use --force to overwrite)")
	code, _, errs = runCmd(t, append(args, "--force")...)
	require.Equal(t, 0, code, errs)
	second, _ := os.ReadFile(out)
	assert.Equal(t, first, second, "same inputs and seed must give byte-identical results")

	code, _, errs = runCmd(t, "--trace", seedTrace, "--clients", "1", "--sweep", "fixed:window=1ms..4ms/1ms", "--table", table)
	require.Equal(t, 0, code, errs)
	rows, err := sim.ReadTable(table)
	require.NoError(t, err)
	require.Len(t, rows, 4)
	for i, r := range rows {
		assert.Equal(t, float64(i+1), r.Value)
		assert.Equal(t, "window", r.Param)
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"name":"b","mode":"warp","max_batch":1,"step":{"base_ms":1,"per_prefill_token_ms":0,"per_decode_seq_ms":0,"per_kv_token_ms":0},"request_overhead_ms":0,"jitter_cv":0}`), 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"--trace", seedTrace, "--policy", "nosuch"}, "policy nosuch:"},
		{[]string{"--trace", seedTrace, "--profile", bad}, "field mode: unknown mode \"warp\""},
		{[]string{"--trace", filepath.Join(dir, "none.parquet")}, "none.parquet"},
		{[]string{"--trace", seedTrace, "--sweep", "fixed:window=3ms..1ms/1ms"}, "want from <= to"},
		{[]string{"--trace", seedTrace, "--policy", "none", "--policy", "fixed", "--out", filepath.Join(dir, "x.parquet")}, "--out writes the results of one run"},
		{[]string{"--trace", seedTrace, "--warmup", "soon"}, "--warmup \"soon\""},
		{[]string{"--trace", seedTrace, "--speedup", "0"}, "--speedup must be positive"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--trace", seedTrace, "--think", "1s"}, "--think 1s needs --clients"},
		{[]string{"--trace", seedTrace, "--runs", "0"}, "--runs 0: want 1 to 10000"},
		{[]string{"--trace", seedTrace, "--runs", "-3"}, "--runs -3: want 1 to 10000"},
		{[]string{"--trace", seedTrace, "--runs=-1"}, "--runs -1: want 1 to 10000"},
		{[]string{"--trace", seedTrace, "--runs", "many"}, "invalid argument \"many\" for \"--runs\""},
	} {
		code, _, errs := runCmd(t, tc.args...)
		assert.Equal(t, 2, code, tc.args)
		assert.Contains(t, errs, tc.want, tc.args)
		assert.Equal(t, 1, strings.Count(errs, "\n"), "one-line error: %q", errs)
	}
}

func TestSweepPrintsOneLinePerRun(t *testing.T) {
	code, out, errs := runCmd(t, "--trace", seedTrace, "--profile", "seed-llama3.2-3b", "--clients", "1",
		"--sweep", "fixed:window=0ms..2ms/1ms,anchor=collector")
	require.Equal(t, 0, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.GreaterOrEqual(t, len(lines), 5, out)
	assert.Contains(t, lines[1], "wait mean")
	// One closed-loop client waits the whole collector window.
	for i, w := range []string{"0.000", "1.000", "2.000"} {
		assert.Equal(t, w, strings.Fields(lines[2+i])[1], lines[2+i])
	}
}

// --runs is as reproducible as one run: the same seed gives byte-identical
// output and tables, seeded or bootstrapped.
func TestRunsDeterministic(t *testing.T) {
	dir := t.TempDir()
	for _, prof := range []string{"seed-llama3.2-3b", "testdata/nojitter.json"} {
		var outs, tables []string
		for i := range 2 {
			table := filepath.Join(dir, fmt.Sprintf("t%d.parquet", i))
			code, out, errs := runCmd(t, "--trace", seedTrace, "--profile", prof, "--clients", "2",
				"--sweep", "fixed:window=0ms..2ms/1ms", "--runs", "6", "--seed", "7", "--json", "--table", table, "--force")
			require.Equal(t, 0, code, errs)
			b, err := os.ReadFile(table)
			require.NoError(t, err)
			outs, tables = append(outs, out), append(tables, string(b))
		}
		assert.Equal(t, outs[0], outs[1], prof)
		assert.True(t, tables[0] == tables[1], "%s: tables differ", prof)
	}
}

// Seeded runs are the runs --seed s, s+1, … would make one at a time, and
// the table carries their mean with CI bounds that contain it.
func TestRunsSeedsMatchSingleRuns(t *testing.T) {
	args := []string{"--trace", seedTrace, "--profile", "seed-llama3.2-3b", "--clients", "1", "--policy", "fixed:window=1ms", "--json"}
	var lat []float64
	for seed := 3; seed < 6; seed++ {
		code, out, errs := runCmd(t, append(args, "--seed", fmt.Sprint(seed))...)
		require.Equal(t, 0, code, errs)
		var s sim.Summary
		require.NoError(t, json.Unmarshal([]byte(out), &s))
		lat = append(lat, s.LatencyMS.Mean)
	}
	table := filepath.Join(t.TempDir(), "t.parquet")
	code, out, errs := runCmd(t, append(args, "--seed", "3", "--runs", "3", "--table", table)...)
	require.Equal(t, 0, code, errs)
	var s sim.Summary
	require.NoError(t, json.Unmarshal([]byte(out), &s))
	require.NotNil(t, s.Runs)
	assert.Equal(t, sim.RunsSeeds, s.Runs.Method)
	assert.Equal(t, []uint64{3, 4, 5}, s.Runs.Seeds)
	assert.Equal(t, lat[0], s.LatencyMS.Mean, "the summary is the first seed's run")
	assert.InDelta(t, (lat[0]+lat[1]+lat[2])/3, s.Runs.LatencyMS.Mean.Mean, 1e-4)
	rows, err := sim.ReadTable(table)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	r := rows[0]
	assert.Equal(t, int64(3), r.Runs)
	assert.Equal(t, sim.TableCISeeds, r.CIMethod)
	assert.InDelta(t, s.Runs.LatencyMS.Mean.Mean, r.LatencyMean, 1e-9)
	assert.Equal(t, s.Runs.LatencyMS.Mean.CI95[0], r.LatencyMeanLo)
	assert.Equal(t, s.Runs.LatencyMS.Mean.CI95[1], r.LatencyMeanHi)
	assert.Less(t, r.LatencyMeanLo, r.LatencyMean)
	assert.Greater(t, r.LatencyMeanHi, r.LatencyMean)
	assert.Less(t, r.OverheadPctLo, r.OverheadPctHi)
}
