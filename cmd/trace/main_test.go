package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batchkit/batchkit/trace"
	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{nil, 2, "", "Usage:"},
		{[]string{"--help"}, 0, "Examples:", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"gen", "--help"}, 0, "trace gen --arrivals poisson --rate 200", ""},
		{[]string{"import", "--help"}, 0, "--format azure", ""},
		{[]string{"stats", "-h"}, 0, "Examples:", ""},
		{[]string{"validate", "--help"}, 0, "Examples:", ""},
		{[]string{"sort", "--help"}, 0, "Examples:", ""},
		{[]string{"head", "--help"}, 0, "Examples:", ""},
		{[]string{"gen", "--bogus"}, 2, "", "trace gen: unknown flag: --bogus"},
		{[]string{"gen", "--arrivals", "poisson", "--rate", "1", "--n", "5", "--input", "const:1", "--output", "const:1"}, 2, "", "--out is required"},
		{[]string{"gen", "--arrivals", "poisson", "--rate", "0", "--n", "5", "--input", "const:1", "--output", "const:1", "--out", "x"}, 2, "", "rate 0 must be"},
		{[]string{"gen", "--arrivals", "poisson", "--rate", "1", "--n", "5", "--input", "const:-1", "--output", "const:1", "--out", "x"}, 2, "", "--input: token spec"},
		{[]string{"stats"}, 2, "", "want exactly one FILE"},
		{[]string{"stats", "/nonexistent.parquet"}, 2, "", "no such file"},
		{[]string{"import", "--format", "azure", "--out", "x.parquet"}, 2, "", "want exactly one SOURCE"},
		{[]string{"import", "--format", "csv", "--map", "arrival", "--out", "x.parquet", "y.csv"}, 2, "", `--map "arrival": want FIELD=COLUMN`},
		{[]string{"head", "-n", "-1", "x"}, 2, "", "must not be negative"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := runCmd(tc.args...)
			assert.Equal(t, tc.code, code)
			assert.Contains(t, out, tc.stdout)
			assert.Contains(t, errs, tc.stderr)
			if code == 0 {
				assert.Equal(t, 1, strings.Count(out, "Usage:"), "help printed once")
			}
			if code == 2 && len(tc.args) > 0 {
				assert.Equal(t, 1, strings.Count(errs, "\n"), "one-line error: %q", errs)
			}
		})
	}
}

// The example, end to end.
func TestGenThenStatsJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.parquet")
	code, _, errs := runCmd("gen", "--arrivals", "poisson", "--rate", "200", "--n", "200000", "--input", "const:1", "--output", "const:1", "--seed", "7", "--out", path)
	require.Equal(t, 0, code, errs)
	code, out, errs := runCmd("stats", "--json", path)
	require.Equal(t, 0, code, errs)
	var s map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &s))
	for _, k := range []string{"requests", "span_s", "rate_per_s", "interarrival_cv"} {
		assert.Contains(t, s, k)
	}
	assert.EqualValues(t, 200000, s["requests"])
	assert.InDelta(t, 200, s["rate_per_s"], 3)
	assert.InDelta(t, 1, s["interarrival_cv"], 0.02)
	for _, k := range []string{"input_tokens", "output_tokens"} {
		obj, ok := s[k].(map[string]any)
		require.True(t, ok, k)
		for _, q := range []string{"mean", "p50", "p99", "max"} {
			assert.EqualValues(t, 1, obj[q], k+"."+q)
		}
	}
	// Refuses to overwrite without --force, and says so on one line.
	code, _, errs = runCmd("gen", "--arrivals", "fixed", "--rate", "1", "--n", "3", "--input", "const:1", "--output", "const:1", "--out", path)
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "use --force")
	code, _, errs = runCmd("gen", "--arrivals", "fixed", "--rate", "1", "--n", "3", "--input", "const:1", "--output", "const:1", "--out", path, "--force")
	assert.Equal(t, 0, code, errs)
}

// Every command in traces/README.md regenerates its shipped file byte for
// byte.
func TestShippedTracesReproduce(t *testing.T) {
	f, err := os.Open("../../traces/README.md")
	require.NoError(t, err)
	defer f.Close()
	const prefix = "go run ./cmd/trace "
	seen := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		args := strings.Fields(strings.TrimPrefix(line, prefix))
		var shipped string
		for i := range args {
			if args[i] == "--out" && i+1 < len(args) {
				shipped = filepath.Join("../..", args[i+1])
				args[i+1] = filepath.Join(t.TempDir(), filepath.Base(args[i+1]))
			}
		}
		require.NotEmpty(t, shipped, line)
		seen++
		t.Run(filepath.Base(shipped), func(t *testing.T) {
			code, _, errs := runCmd(args...)
			require.Equal(t, 0, code, errs)
			want, err := os.ReadFile(shipped)
			require.NoError(t, err)
			got, err := os.ReadFile(args[len(args)-1])
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want, got), "%s differs from what its README command generates; rerun the command", shipped)
		})
	}
	require.NoError(t, sc.Err())
	assert.Equal(t, 4, seen, "traces/README.md should list one command per shipped trace")
	var total int64
	for _, p := range []string{"default", "seed-50q", "poisson-moderate", "onoff-bursty"} {
		st, err := os.Stat("../../traces/" + p + ".parquet")
		require.NoError(t, err)
		total += st.Size()
	}
	assert.Less(t, total, int64(2<<20), "shipped traces must stay under 2 MB together")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./cmd/trace -update to create it")
	assert.Equal(t, string(want), got)
}

func TestStatsGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"stats_default.txt", []string{"stats", "../../traces/default.parquet"}},
		{"stats_default.json", []string{"stats", "--json", "../../traces/default.parquet"}},
		{"stats_seed-50q.txt", []string{"stats", "../../traces/seed-50q.parquet"}},
		{"head_seed-50q.txt", []string{"head", "-n", "5", "../../traces/seed-50q.parquet"}},
		{"head_seed-50q.jsonl", []string{"head", "-n", "3", "--json", "../../traces/seed-50q.parquet"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			code, out, errs := runCmd(tc.args...)
			require.Equal(t, 0, code, errs)
			golden(t, tc.golden, out)
		})
	}
}

func TestValidateAndSort(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCmd("validate", "../../traces/default.parquet", "../../traces/seed-50q.parquet")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "default.parquet: ok, 3000 requests")

	// A file whose arrivals go backwards, as another tool might write it.
	bad := filepath.Join(dir, "bad.parquet")
	writeUnsorted(t, bad)
	code, _, errs = runCmd("validate", bad)
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "bad.parquet: row 2: column arrival_ns")
	assert.Contains(t, errs, "trace sort")

	fixed := filepath.Join(dir, "fixed.parquet")
	code, out, errs = runCmd("sort", "--out", fixed, bad)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "sorted by arrival")
	reqs, _, err := trace.ReadAll(fixed)
	require.NoError(t, err)
	assert.Equal(t, []int64{1, 0, 2}, []int64{reqs[0].RequestID, reqs[1].RequestID, reqs[2].RequestID})

	notParquet := filepath.Join(dir, "x.parquet")
	require.NoError(t, os.WriteFile(notParquet, []byte("hello"), 0o644))
	code, _, errs = runCmd("stats", notParquet)
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "not a Parquet trace file")
}

func writeUnsorted(t *testing.T, path string) {
	t.Helper()
	// The trace writer refuses unsorted rows, so go through Parquet
	// directly with the same row type.
	rows := []trace.Request{
		{RequestID: 0, ArrivalNS: 50, InputTokens: 1, OutputTokens: 1},
		{RequestID: 1, ArrivalNS: 10, InputTokens: 1, OutputTokens: 1},
		{RequestID: 2, ArrivalNS: 60, InputTokens: 1, OutputTokens: 1},
	}
	require.NoError(t, writeRawParquet(path, rows))
}

func TestImportCommand(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "b.csv")
	require.NoError(t, os.WriteFile(src, []byte("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n0,ChatGPT,10,0,10,API log\n1,ChatGPT,10,5,15,API log\n"), 0o644))
	out := filepath.Join(dir, "b.parquet")
	code, stdout, errs := runCmd("import", "--format", "burstgpt", "--out", out, src)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, stdout, "1 of 2 rows imported")
	assert.Contains(t, stdout, "dropped 1: 0 output tokens")
	code, stdout, errs = runCmd("import", "--format", "burstgpt", "--keep-zero-output", "--json", "--force", "--out", out, src)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, stdout, `"kept": 2`)
	_, meta, err := trace.ReadAll(out)
	require.NoError(t, err)
	assert.Contains(t, meta.Source, "--keep-zero-output b.csv (sha256 ")

	bad := filepath.Join(dir, "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n0,ChatGPT,ten,1,10,API log\n"), 0o644))
	code, _, errs = runCmd("import", "--format", "burstgpt", "--out", filepath.Join(dir, "c.parquet"), bad)
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "bad.csv: line 2: column Request tokens")
	_, err = os.Stat(filepath.Join(dir, "c.parquet"))
	assert.True(t, os.IsNotExist(err))
}

func writeRawParquet(path string, rows []trace.Request) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := parquet.NewGenericWriter[trace.Request](f)
	if _, err := w.Write(rows); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Close()
}
