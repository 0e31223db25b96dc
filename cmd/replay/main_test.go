package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/sim"
)

const seedTrace = "../../traces/seed-50q.parquet"

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"calibrate", "--help"}} {
		code, out, _ := runCmd(t, args...)
		assert.Equal(t, 0, code, args)
		assert.Contains(t, out, "Examples:", args)
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	exists := filepath.Join(dir, "exists.parquet")
	require.NoError(t, os.WriteFile(exists, []byte("keep me"), 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"--policy", "fixd"}, "unknown policy"},
		{[]string{"--model", "nosuch", "--max-requests", "5"}, "unknown model preset"},
		{[]string{"--engine", "warp", "--model", "tiny"}, "warp"},
		{[]string{"--trace", seedTrace, "--model", "tiny", "--dtype", "int8", "--quiet"}, `dtype "int8" not supported (float32, float16, bfloat16)`},
		{[]string{"calibrate", "--model", "tiny", "--dtype", "bfloat16", "--out", filepath.Join(dir, "p.json")}, `engine cpu: dtype "bfloat16" not supported (only float32`},
		{[]string{"calibrate", "--model", "tiny", "--quantize", "4", "--out", filepath.Join(dir, "p.json")}, "engine cpu: quantize 4 not supported"},
		{[]string{"--trace", filepath.Join(dir, "none.parquet"), "--model", "tiny"}, "none.parquet"},
		{[]string{"--model", "tiny", "--compile", "maybe"}, `compile "maybe" not supported (on or off)`},
		{[]string{"--model", "tiny", "--compile", "on"}, `engine cpu: compile "on" not supported`},
		{[]string{"--trace", seedTrace, "--model", "tiny", "--clients", "1", "--max-requests", "3", "--out", exists, "--quiet"}, "already exists"},
		{[]string{"--model", "tiny", "--table", filepath.Join(dir, "t.parquet")}, "--table writes a sweep table: add --sweep"},
		{[]string{"--model", "tiny", "--sweep", "fixed:window=1ms..2ms/1ms", "--profile", "seed-llama3.2-3b", "--predict", "--plot", filepath.Join(dir, "p.png")}, "draw with simplot panel"},
		{[]string{"--model", "tiny", "--sweep", "fixed:window=1ms"}, "no range"},
		{[]string{"--model", "tiny", "--sweep", "fixed:window=1ms..2ms/1ms", "--policy", "adaptive"}, "give one"},
		{[]string{"--model", "tiny", "--sweep", "fixed:window=1ms..2ms/1ms", "--sweep", "fixed:bogus=1..2/1"}, "sweep fixed:bogus=1..2/1: fixed:bogus=1:"},
		{[]string{"--trace", seedTrace, "--model", "tiny", "--clients", "1", "--sweep", "fixed:window=1ms..2ms/1ms", "--table", exists, "--quiet"}, "already exists"},
	} {
		code, _, errs := runCmd(t, tc.args...)
		assert.Equal(t, 2, code, tc.args)
		assert.Contains(t, errs, tc.want, tc.args)
		assert.Equal(t, 1, strings.Count(errs, "\n"), "one-line error: %q", errs)
	}
	got, err := os.ReadFile(exists)
	require.NoError(t, err)
	assert.Equal(t, "keep me", string(got), "an existing output must survive")
}

// TestReplayTinyEngine runs the real cpu engine on the seed workload and
// checks that the results file holds every request with the simulator's
// schema, and that the JSON summary has simrun's keys.
func TestReplayTinyEngine(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.parquet")
	code, stdout, errs := runCmd(t, "--trace", seedTrace, "--model", "tiny", "--clients", "1",
		"--policy", "fixed:window=1ms", "--mode", "sequential", "--max-batch", "4",
		"--max-requests", "10", "--out", out, "--json", "--quiet", "--no-bare")
	require.Equal(t, 0, code, errs)
	var rep map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep), stdout)
	for _, k := range []string{"policy", "requests", "ttft_ms", "latency_ms", "window_wait_ms", "throughput_tok_s"} {
		assert.Contains(t, stdoutKeys(rep), k)
	}
	res, meta, err := sim.ReadResults(out)
	require.NoError(t, err)
	assert.Len(t, res, 10)
	assert.Equal(t, "replay", meta[sim.MetaSource])
	for _, r := range res {
		assert.Equal(t, sim.StatusOK, r.Status)
		// One closed-loop client: each request waits the whole window.
		assert.GreaterOrEqual(t, r.WindowWaitNS, int64(1_000_000))
	}
}

// stdoutKeys flattens the report's top level and one level below, since
// the summary may be nested under a key.
func stdoutKeys(m map[string]any) []string {
	var keys []string
	for k, v := range m {
		keys = append(keys, k)
		if sub, ok := v.(map[string]any); ok {
			for k2 := range sub {
				keys = append(keys, k2)
			}
		}
	}
	return keys
}

// TestPredictedMatchesMeasured is the one real-time check of the whole
// loop: calibrate the tiny cpu engine on the spot, replay the seed
// workload, simulate it with the fitted profile, and hold the two
// against each other. The tolerances are wide because a shared 2-core
// machine is noisy (a quiet machine gives a few per cent; see
// docs/plots/README.md); the window wait is a policy decision and must
// match closely regardless.
func TestPredictedMatchesMeasured(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time test; skipped with -short")
	}
	code, stdout, errs := runCmd(t, "--trace", seedTrace, "--model", "tiny", "--clients", "1",
		"--policy", "fixed:window=1ms", "--mode", "sequential", "--max-batch", "4",
		"--calibrate", "--grid", "small", "--predict", "--json", "--quiet", "--no-bare")
	require.Equal(t, 0, code, errs)
	var rep struct {
		Errors []struct {
			Metric string  `json:"metric"`
			RelErr float64 `json:"rel_err"`
			AbsErr float64 `json:"abs_err"`
		} `json:"prediction_errors"`
		StepCosts []struct {
			Kind       string  `json:"kind"`
			Steps      int     `json:"steps"`
			MeasuredMS float64 `json:"measured_ms"`
		} `json:"step_costs"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep), stdout)
	require.Len(t, rep.Errors, 6)
	require.NotEmpty(t, rep.StepCosts)
	all := rep.StepCosts[len(rep.StepCosts)-1]
	assert.Equal(t, "all", all.Kind)
	assert.Positive(t, all.Steps)
	assert.Positive(t, all.MeasuredMS)
	for _, e := range rep.Errors {
		switch e.Metric {
		case "window_wait_ms.mean":
			assert.InDelta(t, 0, e.AbsErr, 0.5, "window wait is off by %.3f ms", e.AbsErr)
		case "latency_ms.mean", "ttft_ms.mean":
			assert.InDelta(t, 0, e.RelErr, 0.6, "%s off by %.0f %%", e.Metric, 100*e.RelErr)
		}
	}
}

// TestReplaySweep runs a two-point window sweep on the tiny cpu engine:
// one results file per point, a measured and a predicted sweep table in
// simrun's format with the swept values, and one line per point.
func TestReplaySweep(t *testing.T) {
	dir := t.TempDir()
	out, table := filepath.Join(dir, "r.parquet"), filepath.Join(dir, "t.parquet")
	code, stdout, errs := runCmd(t, "--trace", seedTrace, "--model", "tiny", "--clients", "1", "--mode", "sequential",
		"--max-batch", "4", "--max-requests", "6", "--sweep", "fixed:window=1ms..2ms/1ms,anchor=collector",
		"--profile", "seed-llama3.2-3b", "--predict", "--out", out, "--table", table, "--quiet")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, stdout, "fixed:window=1ms")
	assert.Contains(t, stdout, "fixed:window=2ms")
	for _, w := range []string{"1ms", "2ms"} {
		res, meta, err := sim.ReadResults(filepath.Join(dir, "r_fixed_window_"+w+"_anchor_collector.parquet"))
		require.NoError(t, err)
		assert.Len(t, res, 6)
		assert.Contains(t, meta[sim.MetaPolicy], "window="+w)
		assert.FileExists(t, filepath.Join(dir, "r_fixed_window_"+w+"_anchor_collector.predicted.parquet"))
	}
	for _, p := range []string{table, filepath.Join(dir, "t.predicted.parquet")} {
		rows, err := sim.ReadTable(p)
		require.NoError(t, err, p)
		require.Len(t, rows, 2, p)
		for i, r := range rows {
			assert.Equal(t, "window", r.Param)
			assert.InDelta(t, float64(i+1), r.Value, 1e-9)
			// One client waits about the whole window (a late timer only
			// adds): the row is the run's.
			assert.GreaterOrEqual(t, r.WindowWaitMean, 0.8*float64(i+1), p)
			if p == table {
				assert.False(t, math.IsNaN(r.OverheadPct), "every point has its overhead")
			}
		}
	}
}

// TestTraceGridMeasuresTheLoad: --grid trace calibrates, simulates the
// load with that fit and measures again at the batch sizes it decodes at;
// the profile it predicts with says so in its provenance.
func TestTraceGridMeasuresTheLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time test; skipped with -short")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "r.parquet")
	code, _, errs := runCmd(t, "--trace", "../../traces/poisson-moderate.parquet", "--model", "tiny", "--speedup", "20",
		"--max-requests", "20", "--truncate", "--policy", "fixed:window=1ms", "--calibrate", "--grid", "trace",
		"--predict", "--no-bare", "--out", out)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "calibrate: the load decodes")
	_, meta, err := sim.ReadResults(filepath.Join(dir, "r.predicted.parquet"))
	require.NoError(t, err)
	var prof sim.Profile
	require.NoError(t, json.Unmarshal([]byte(meta[sim.MetaProfileJSON]), &prof))
	assert.NotContains(t, prof.Provenance, "decode=0,1,2,4,8,16,32", "the second grid's decode batches, not the first's")
	assert.Contains(t, prof.Provenance, "decode=0,")
	kept, err := sim.LoadProfile(filepath.Join(dir, "r.profile.json"))
	require.NoError(t, err, "the calibrated profile is kept for simrun")
	assert.Equal(t, prof.Step, kept.Step)
	mine := filepath.Join(dir, "other.profile.json")
	require.NoError(t, os.WriteFile(mine, []byte("mine"), 0o644))
	code, _, errs = runCmd(t, "--trace", "../../traces/poisson-moderate.parquet", "--model", "tiny", "--max-requests", "2",
		"--truncate", "--policy", "none", "--calibrate", "--predict", "--no-bare", "--out", filepath.Join(dir, "other.parquet"))
	require.Equal(t, 2, code)
	assert.Contains(t, errs, "other.profile.json: already exists")
	b, err := os.ReadFile(mine)
	require.NoError(t, err)
	assert.Equal(t, "mine", string(b), "a user's file is not overwritten")
}
