package trace

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const realTraces = "../../shared/traces-real"

func realFile(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(realTraces, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("real trace %s not present (tests read ../shared/traces-real next to the checkout): %v", p, err)
	}
	return p
}

func statsOf(reqs []Request) *Stats {
	s := &Stats{}
	s.Add(reqs)
	s.Finish()
	return s
}

// The expected figures are those measured independently in
// ../shared/traces-real/*/README.md.
func TestImportAzureReal(t *testing.T) {
	for _, tc := range []struct {
		file                   string
		rows                   int64
		span, rate, cv         float64
		peak1s, peak1m         int64
		inMean, inP50, inP99   float64
		outMean, outP50, outP9 float64
	}{
		{"AzureLLMInferenceTrace_code.csv", 8819, 3436, 2.57, 13.15, 67, 632, 2048, 1469, 7436, 27.9, 13, 251},
		{"AzureLLMInferenceTrace_conv.csv", 19366, 3502, 5.53, 1.09, 16, 507, 1155, 1020, 4142, 211.1, 129, 601},
	} {
		t.Run(tc.file, func(t *testing.T) {
			imp, err := ImportFile(realFile(t, "azure-llm-2023/"+tc.file), ImportOptions{Format: FormatAzure})
			require.NoError(t, err)
			s := statsOf(imp.Requests)
			assert.Equal(t, tc.rows, s.Requests)
			assert.InDelta(t, tc.span, s.SpanS, 1)
			assert.InDelta(t, tc.rate, s.RatePerS, 0.01)
			assert.InDelta(t, tc.cv, s.InterarrivalCV, 0.01)
			assert.Equal(t, tc.peak1s, s.Peak1s)
			assert.Equal(t, tc.peak1m, s.Peak1min)
			assert.InDelta(t, tc.inMean, s.InputTokens.Mean, 0.5)
			assert.InDelta(t, tc.inP50, s.InputTokens.P50, 0.5)
			assert.InDelta(t, tc.inP99, s.InputTokens.P99, 1)
			assert.InDelta(t, tc.outMean, s.OutputTokens.Mean, 0.05)
			assert.InDelta(t, tc.outP50, s.OutputTokens.P50, 0.5)
			assert.InDelta(t, tc.outP9, s.OutputTokens.P99, 1)
			assert.Equal(t, 100*time.Nanosecond, imp.Meta.TimeQuantum)
			assert.Contains(t, imp.Meta.Source, "sha256 ")
			assert.Zero(t, imp.Requests[0].ArrivalNS)
			// 100 ns digits survive: the second conv row is 4.3145790 s in.
			if strings.Contains(tc.file, "conv") {
				assert.EqualValues(t, 4_314_579_000, imp.Requests[1].ArrivalNS)
			}
			path := filepath.Join(t.TempDir(), "a.parquet")
			require.NoError(t, WriteFile(path, imp.Meta, imp.Requests))
			back, _, err := ReadAll(path)
			require.NoError(t, err)
			assert.Equal(t, imp.Requests, back)
		})
	}
}

func TestImportMooncakeReal(t *testing.T) {
	path := realFile(t, "mooncake-fast25/synthetic_trace.jsonl")
	imp, err := ImportFile(path, ImportOptions{Format: FormatMooncake})
	require.NoError(t, err)
	s := statsOf(imp.Requests)
	assert.EqualValues(t, 3993, s.Requests)
	assert.InDelta(t, 1022, s.SpanS, 1)
	assert.InDelta(t, 3.91, s.RatePerS, 0.01)
	assert.InDelta(t, 1.01, s.InterarrivalCV, 0.01)
	assert.EqualValues(t, 13, s.Peak1s)
	assert.EqualValues(t, 273, s.Peak1min)
	assert.InDelta(t, 15325, s.InputTokens.Mean, 1)
	assert.InDelta(t, 11587, s.InputTokens.P50, 1)
	assert.InDelta(t, 149, s.OutputTokens.Mean, 1)
	assert.InDelta(t, 768, s.OutputTokens.P99, 1)
	assert.EqualValues(t, 3993, s.WithPrefix)
	for _, q := range imp.Requests {
		require.Len(t, q.PrefixBlockIDs, int(math.Ceil(float64(q.InputTokens)/512)))
	}

	spread, err := ImportFile(path, ImportOptions{Format: FormatMooncake, Spread: true})
	require.NoError(t, err)
	assert.Equal(t, 11, spread.Report.Spread) // 3993 rows, 3982 distinct timestamps
	assert.Contains(t, spread.Meta.Source, "--spread")
}

func imp(t *testing.T, format, text string, opt ImportOptions) (*Imported, error) {
	t.Helper()
	opt.Format = format
	return Import(strings.NewReader(text), "in."+format, opt)
}

func TestImportMooncakeSpread(t *testing.T) {
	src := `{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}
{"timestamp": 1000, "input_length": 10, "output_length": 2, "hash_ids": [1, 2]}
{"timestamp": 1000, "input_length": 10, "output_length": 2, "hash_ids": []}

{"timestamp": 1000, "input_length": 10, "output_length": 2}
{"timestamp": 2000, "input_length": 10, "output_length": 2, "hash_ids": [3]}
`
	got, err := imp(t, FormatMooncake, src, ImportOptions{Spread: true, Quantum: time.Second})
	require.NoError(t, err)
	var arr []int64
	for _, q := range got.Requests {
		arr = append(arr, q.ArrivalNS)
	}
	third := int64(time.Second) / 3
	assert.Equal(t, []int64{0, 1e9, 1e9 + third, 1e9 + 2*third, 2e9}, arr)
	assert.Equal(t, []int64{1, 2}, got.Requests[1].PrefixBlockIDs)
	assert.Equal(t, []int64{}, got.Requests[2].PrefixBlockIDs)
	assert.Nil(t, got.Requests[3].PrefixBlockIDs)
	assert.Equal(t, time.Second, got.Meta.TimeQuantum)
}

func TestImportBurstGPT(t *testing.T) {
	src := "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" +
		"5,ChatGPT,472,18,490,Conversation log\n" +
		"5,GPT-4,1200,0,1200,API log\n" +
		"7.5,ChatGPT,30,300,330,Conversation log\n" +
		"6,ChatGPT,0,3,3,Conversation log\n"
	got, err := imp(t, FormatBurstGPT, src, ImportOptions{})
	require.NoError(t, err)
	require.Len(t, got.Requests, 2)
	assert.Equal(t, map[string]int{"0 output tokens (failed request)": 1, "0 input tokens": 1}, got.Report.Dropped)
	assert.EqualValues(t, 2_500_000_000, got.Requests[1].ArrivalNS)
	assert.Equal(t, "ChatGPT|Conversation log", *got.Requests[0].RequestClass)
	assert.EqualValues(t, 2, got.Requests[1].RequestID, "IDs point back at source rows")

	kept, err := imp(t, FormatBurstGPT, src, ImportOptions{KeepZeroOutput: true})
	require.NoError(t, err)
	require.Len(t, kept.Requests, 3)
	assert.Equal(t, "GPT-4|API log|zero-output", *kept.Requests[1].RequestClass)
	assert.EqualValues(t, 1, kept.Requests[1].OutputTokens)
	assert.Equal(t, 1, kept.Report.Flagged["0 output tokens kept as 1, class |zero-output"])
}

func TestImportGeneric(t *testing.T) {
	csvSrc := "t,p,o,sess,cls,ids\n" +
		"1.000250,100,10,1,a,1;2\n" +
		"1.000000,50,5,,b,\n"
	got, err := imp(t, FormatCSV, csvSrc, ImportOptions{TimeUnit: time.Second, Map: map[string]string{
		"arrival": "t", "input": "p", "output": "o", "session": "sess", "class": "cls", "prefix": "ids"}})
	require.NoError(t, err)
	require.Len(t, got.Requests, 2)
	assert.True(t, got.Report.Reordered)
	assert.EqualValues(t, 1, got.Requests[0].RequestID)
	assert.EqualValues(t, 250_000, got.Requests[1].ArrivalNS)
	assert.EqualValues(t, 1, *got.Requests[1].SessionID)
	assert.Nil(t, got.Requests[0].SessionID)
	assert.Equal(t, []int64{1, 2}, got.Requests[1].PrefixBlockIDs)

	jsonSrc := `{"id": 7, "when": "2024-01-01T00:00:01.5Z", "in": 3, "out": 4, "blocks": [5, 6]}
{"id": 9, "when": "2024-01-01T00:00:01Z", "in": 3, "out": 4, "prio": 2}
`
	got, err = imp(t, FormatJSONL, jsonSrc, ImportOptions{TimeLayout: time.RFC3339Nano, Map: map[string]string{
		"id": "id", "arrival": "when", "input": "in", "output": "out", "prefix": "blocks", "priority": "prio"}})
	require.NoError(t, err)
	assert.EqualValues(t, 9, got.Requests[0].RequestID)
	assert.EqualValues(t, 2, *got.Requests[0].Priority)
	assert.EqualValues(t, 500_000_000, got.Requests[1].ArrivalNS)
	assert.Equal(t, []int64{5, 6}, got.Requests[1].PrefixBlockIDs)
}

func TestImportErrors(t *testing.T) {
	m := map[string]string{"arrival": "t", "input": "i", "output": "o"}
	for _, tc := range []struct {
		format, src string
		opt         ImportOptions
		want        string
	}{
		{FormatAzure, "", ImportOptions{}, "in.azure: empty file: no CSV header"},
		{FormatAzure, "TIMESTAMP,ContextTokens\n", ImportOptions{}, `line 1: missing column "GeneratedTokens"`},
		{FormatAzure, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.97,10,x\n", ImportOptions{}, `in.azure: line 2: column GeneratedTokens: "x" is not a token count`},
		{FormatAzure, "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,10,1\n", ImportOptions{}, "line 2: column TIMESTAMP"},
		{FormatAzure, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.97,-3,1\n", ImportOptions{}, "line 2: column ContextTokens: negative token count -3"},
		{FormatAzure, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.97,99999999,1\n", ImportOptions{}, "is absurd"},
		{FormatAzure, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.97,1\n", ImportOptions{}, "line 2: column GeneratedTokens: missing"},
		{FormatAzure, "TIMESTAMP,ContextTokens,GeneratedTokens\n", ImportOptions{}, "empty trace"},
		{FormatMooncake, "{\"timestamp\": 1}\n", ImportOptions{}, "line 1: column input_length: missing"},
		{FormatMooncake, "{\"input_length\": 1}\n", ImportOptions{}, "line 1: column timestamp: missing"},
		{FormatMooncake, "\n{nope\n", ImportOptions{}, "in.mooncake: line 2:"},
		{FormatMooncake, `{"timestamp": "x", "input_length": 1, "output_length": 1}`, ImportOptions{}, "line 1: column timestamp"},
		{FormatCSV, "t,i,o\n1,2,3\n", ImportOptions{Map: map[string]string{"arrival": "t"}}, "--map: input=COLUMN is required"},
		{FormatCSV, "t,i,o\n1,2,3\n", ImportOptions{Map: map[string]string{"arrival": "t", "input": "i", "output": "o", "colour": "x"}}, `unknown field "colour"`},
		{FormatCSV, "t,i,o\n1,2,3\n1,\"2\n", ImportOptions{Map: m}, "in.csv: line 3:"},
		{FormatCSV, "t,i,o\n1e400,2,3\n", ImportOptions{Map: m}, "line 2: column t"},
		{FormatCSV, "t,i,o\n99999999999999999999,2,3\n", ImportOptions{Map: m}, "out of range"},
		{"parquet", "", ImportOptions{}, `unknown import format "parquet"`},
		{FormatCSV, "id,t,i,o\n1,0,2,3\n2,0,2,3\n1,5,2,3\n", ImportOptions{Map: map[string]string{"id": "id", "arrival": "t", "input": "i", "output": "o"}}, "in.csv: line 4: column id: duplicate request id 1"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := imp(t, tc.format, tc.src, tc.opt)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestDecimalNS(t *testing.T) {
	for _, tc := range []struct {
		s    string
		unit time.Duration
		want int64
		err  bool
	}{
		{"1.5", time.Second, 1_500_000_000, false},
		{"1717000000.123456789", time.Second, 1_717_000_000_123_456_789, false},
		{"0.0000000004", time.Second, 0, false},
		{"0.0000000005", time.Second, 1, false},
		{"-2", time.Millisecond, -2_000_000, false},
		{"12", time.Microsecond, 12_000, false},
		{"1e3", time.Millisecond, 1_000_000_000, false},
		{"1/2", time.Second, 0, true},
		{"", time.Second, 0, true},
		{"abc", time.Second, 0, true},
		{"10000000000", time.Second, 0, true},
	} {
		got, err := decimalNS(tc.s, tc.unit)
		if tc.err {
			assert.Error(t, err, tc.s)
			continue
		}
		require.NoError(t, err, tc.s)
		assert.Equal(t, tc.want, got, tc.s)
	}
}
