package trace

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSchemaOf(t *testing.T) {
	s := parquet.SchemaOf(Request{})
	want := map[string]bool{ // name -> required
		ColRequestID: true, ColArrivalNS: true, ColInputTokens: true, ColOutputTokens: true,
		ColSessionID: false, ColRequestClass: false, ColPrefixBlockIDs: false, ColPriority: false, ColDeadlineNS: false,
	}
	require.Len(t, s.Fields(), len(want))
	for _, f := range s.Fields() {
		req, ok := want[f.Name()]
		require.True(t, ok, "unexpected column %s", f.Name())
		assert.Equal(t, req, f.Required(), f.Name())
	}
}

func ptr[T any](v T) *T { return &v }

func sampleRequests(n int) []Request {
	reqs := make([]Request, n)
	classes := []string{"chat", "code"}
	for i := range reqs {
		q := Request{RequestID: int64(i), ArrivalNS: int64(i) * 1000, InputTokens: int32(1 + i%500), OutputTokens: int32(1 + i%50)}
		if i%3 == 0 {
			q.SessionID = ptr(int64(i / 3))
		}
		if i%4 != 0 {
			q.RequestClass = ptr(classes[i%2])
		}
		switch i % 5 {
		case 0:
			q.PrefixBlockIDs = []int64{int64(i), int64(i + 1), int64(i + 2)}
		case 1:
			q.PrefixBlockIDs = []int64{7}
		}
		if i%7 == 0 {
			q.Priority = ptr(int32(i % 3))
		}
		if i%2 == 1 {
			q.DeadlineNS = ptr(q.ArrivalNS + 5_000_000)
		}
		reqs[i] = q
	}
	return reqs
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int
		groups int
	}{{"one row", 1, 100}, {"several row groups", 10_000, 3000}, {"many chunks", 20_000, DefaultRowGroupRows}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.parquet")
			meta := Metadata{Name: "sample", Source: "test", Licence: "CC0", TimeQuantum: time.Millisecond, Extra: map[string]string{"k": "v"}}
			want := sampleRequests(tc.n)
			require.NoError(t, WriteFile(path, meta, want, RowGroupRows(tc.groups)))
			got, gotMeta, err := ReadAll(path)
			require.NoError(t, err)
			meta.SchemaVersion = SchemaVersion
			assert.Equal(t, meta, gotMeta)
			require.Len(t, got, len(want))
			for i := range want {
				if !assert.Equal(t, want[i], got[i], "row %d", i) {
					break
				}
			}
		})
	}
}

// Pages that hold only nulls are skipped in bulk; a file whose optional
// columns start empty and fill later must still read back exactly.
func TestRoundTripNullsThenValues(t *testing.T) {
	want := make([]Request, 30_000)
	for i := range want {
		want[i] = Request{RequestID: int64(i), ArrivalNS: int64(i), InputTokens: 1, OutputTokens: 1}
	}
	tail := sampleRequests(5000)
	for i := range tail {
		tail[i].RequestID += 30_000
		tail[i].ArrivalNS += 30_000
		if tail[i].DeadlineNS != nil {
			*tail[i].DeadlineNS += 30_000
		}
	}
	want = append(want, tail...)
	want = append(want, Request{RequestID: 1 << 40, ArrivalNS: 1 << 40, InputTokens: 1, OutputTokens: 1})
	path := filepath.Join(t.TempDir(), "t.parquet")
	require.NoError(t, WriteFile(path, Metadata{}, want, RowGroupRows(20_000)))
	got, _, err := ReadAll(path)
	require.NoError(t, err)
	require.Len(t, got, len(want))
	for i := range want {
		if !assert.Equal(t, want[i], got[i], "row %d", i) {
			break
		}
	}
}

// Odd buffer sizes cross page, chunk and row-group boundaries.
func TestReaderBufferSizes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.parquet")
	want := sampleRequests(5000)
	require.NoError(t, WriteFile(path, Metadata{Name: "x"}, want, RowGroupRows(777)))
	for _, size := range []int{1, 3, 999, 4097, 5000, 6000} {
		r, err := Open(path)
		require.NoError(t, err)
		assert.EqualValues(t, 5000, r.NumRows())
		buf := make([]Request, size)
		var got []Request
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				// The last rows come with EOF, never a separate empty read.
				assert.Positive(t, n)
				break
			}
			require.NoError(t, err)
			require.Positive(t, n)
		}
		n, err := r.Read(buf)
		assert.Zero(t, n)
		assert.Equal(t, io.EOF, err)
		require.NoError(t, r.Close())
		require.NoError(t, r.Close())
		assert.Equal(t, want, got, "buffer %d", size)
	}
}

func TestWriterRefusesOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.parquet")
	require.NoError(t, os.WriteFile(path, []byte("keep me"), 0o644))
	err := WriteFile(path, Metadata{}, sampleRequests(3))
	require.ErrorIs(t, err, fs.ErrExist)
	b, _ := os.ReadFile(path)
	assert.Equal(t, "keep me", string(b))

	require.NoError(t, WriteFile(path, Metadata{}, sampleRequests(3), Overwrite(true)))
	got, _, err := ReadAll(path)
	require.NoError(t, err)
	assert.Len(t, got, 3)
	entries, _ := os.ReadDir(filepath.Dir(path))
	assert.Len(t, entries, 1, "temporary file left behind")
}

func TestWriterFailureKeepsOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.parquet")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o644))
	w, err := Create(path, Metadata{}, Overwrite(true))
	require.NoError(t, err)
	bad := sampleRequests(3)
	bad[2].ArrivalNS = 0
	err = w.Write(bad)
	require.ErrorContains(t, err, "row 3: column arrival_ns")
	require.Error(t, w.Close())
	b, _ := os.ReadFile(path)
	assert.Equal(t, "old", string(b))
	entries, _ := os.ReadDir(filepath.Dir(path))
	assert.Len(t, entries, 1)
}

func TestWriterValidates(t *testing.T) {
	base := func() []Request { return sampleRequests(4) }
	for _, tc := range []struct {
		name string
		edit func([]Request)
		want string
	}{
		{"zero input", func(r []Request) { r[1].InputTokens = 0 }, "row 2: column input_tokens: input_tokens 0 is not positive"},
		{"absurd output", func(r []Request) { r[3].OutputTokens = MaxTokens + 1 }, "row 4: column output_tokens"},
		{"backwards", func(r []Request) { r[2].ArrivalNS = 1 }, "row 3: column arrival_ns"},
		{"duplicate", func(r []Request) { r[3].RequestID = 1 }, "row 4: column request_id: duplicate request_id 1"},
		{"deadline", func(r []Request) { r[1].DeadlineNS = ptr(r[1].ArrivalNS) }, "row 2: column deadline_ns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs := base()
			tc.edit(reqs)
			err := WriteFile(filepath.Join(t.TempDir(), "t.parquet"), Metadata{}, reqs)
			assert.ErrorContains(t, err, tc.want)
		})
	}
	err := WriteFile(filepath.Join(t.TempDir(), "t.parquet"), Metadata{}, nil)
	assert.ErrorContains(t, err, "empty trace")
}

// Files written by other tools: the reader must catch what our writer
// never produces.
type looseRow struct {
	RequestID    *int64 `parquet:"request_id,optional"`
	ArrivalNS    int64  `parquet:"arrival_ns"`
	InputTokens  int32  `parquet:"input_tokens"`
	OutputTokens int32  `parquet:"output_tokens"`
}

type wrongTypeRow struct {
	RequestID    int64 `parquet:"request_id"`
	ArrivalNS    int32 `parquet:"arrival_ns"`
	InputTokens  int32 `parquet:"input_tokens"`
	OutputTokens int32 `parquet:"output_tokens"`
}

type missingRow struct {
	RequestID    int64 `parquet:"request_id"`
	ArrivalNS    int64 `parquet:"arrival_ns"`
	OutputTokens int32 `parquet:"output_tokens"`
}

type dictRow struct {
	RequestID    int64  `parquet:"request_id"`
	ArrivalNS    int64  `parquet:"arrival_ns,dict"`
	InputTokens  int32  `parquet:"input_tokens,dict"`
	OutputTokens int32  `parquet:"output_tokens,dict"`
	Class        string `parquet:"request_class,dict"`
}

func writeRaw[T any](t *testing.T, rows []T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "raw.parquet")
	require.NoError(t, writeRawTo(path, rows))
	return path
}

// writeRawBuf writes rows with parquet-go directly, bypassing the trace
// writer's validation, as another tool might.
func writeRawBuf[T any](out io.Writer, rows []T) error {
	w := parquet.NewGenericWriter[T](out)
	if _, err := w.Write(rows); err != nil {
		return err
	}
	return w.Close()
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 1)) }

func readErr(path string) error {
	_, _, err := ReadAll(path)
	return err
}

func TestReaderRejects(t *testing.T) {
	p := func(v int64) *int64 { return &v }
	r := func(id, arr int64, in, out int32) wrongTypeRow { return wrongTypeRow{id, int32(arr), in, out} }
	_ = r
	good := func(id, arr int64, in, out int32) Request {
		return Request{RequestID: id, ArrivalNS: arr, InputTokens: in, OutputTokens: out}
	}
	for _, tc := range []struct {
		name string
		path func(t *testing.T) string
		want string
	}{
		{"not parquet", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "x.parquet")
			require.NoError(t, os.WriteFile(path, []byte("request_id,arrival_ns\n1,2\n"), 0o644))
			return path
		}, "x.parquet: not a Parquet trace file"},
		{"null id", func(t *testing.T) string {
			return writeRaw(t, []looseRow{{p(1), 0, 1, 1}, {nil, 5, 1, 1}})
		}, "raw.parquet: row 2: column request_id: null in a required field"},
		{"mistyped", func(t *testing.T) string {
			return writeRaw(t, []wrongTypeRow{{1, 0, 1, 1}})
		}, "column arrival_ns: has type INT32, want INT64"},
		{"missing", func(t *testing.T) string {
			return writeRaw(t, []missingRow{{1, 0, 1}})
		}, "column input_tokens: missing required column"},
		{"backwards", func(t *testing.T) string {
			return writeRaw(t, []Request{good(1, 10, 1, 1), good(2, 20, 1, 1), good(3, 15, 1, 1)})
		}, "raw.parquet: row 3: column arrival_ns: arrival 15 ns is before the previous row's 20 ns"},
		{"negative tokens", func(t *testing.T) string {
			return writeRaw(t, []Request{good(1, 10, 1, 1), good(2, 20, -4, 1)})
		}, "row 2: column input_tokens: input_tokens -4 is not positive"},
		{"absurd", func(t *testing.T) string {
			return writeRaw(t, []Request{good(1, 10, 1, 20_000_000)})
		}, "row 1: column output_tokens: output_tokens 20000000 is absurd"},
		{"duplicate", func(t *testing.T) string {
			return writeRaw(t, []Request{good(5, 0, 1, 1), good(9, 0, 1, 1), good(5, 0, 1, 1)})
		}, "row 3: column request_id: duplicate request_id 5"},
		{"empty", func(t *testing.T) string { return writeRaw(t, []Request{}) }, "empty trace"},
		{"deadline", func(t *testing.T) string {
			q := good(1, 10, 1, 1)
			q.DeadlineNS = p(3)
			return writeRaw(t, []Request{q})
		}, "row 1: column deadline_ns: deadline 3 ns is not after arrival 10 ns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := readErr(tc.path(t))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestReaderDictionaryAndForeignFiles(t *testing.T) {
	rows := make([]dictRow, 3000)
	for i := range rows {
		rows[i] = dictRow{int64(i), int64(i / 10), int32(1 + i%3), int32(2 + i%2), []string{"a", "bb"}[i%2]}
	}
	got, meta, err := ReadAll(writeRaw(t, rows))
	require.NoError(t, err)
	assert.Equal(t, 0, meta.SchemaVersion)
	require.Len(t, got, len(rows))
	for i, q := range got {
		assert.Equal(t, rows[i].ArrivalNS, q.ArrivalNS)
		assert.Equal(t, rows[i].InputTokens, q.InputTokens)
		assert.Equal(t, rows[i].OutputTokens, q.OutputTokens)
		require.NotNil(t, q.RequestClass)
		assert.Equal(t, rows[i].Class, *q.RequestClass)
	}
}

func TestIDSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		ids  []int64
		dup  int // index of the first duplicate, -1 for none
	}{
		{"dense", []int64{0, 1, 2, 3}, -1},
		{"reverse", []int64{100, 99, 98, 1, 0, -5, 100}, 6},
		{"sparse", []int64{1 << 40, 3, -1 << 50, 1<<62 + 7, 3}, 4},
		{"extremes", []int64{-1 << 63, 1<<63 - 1, 0, -1 << 63}, 3},
		{"near min", []int64{-1<<63 + 70, -1 << 63, -1<<63 + 70}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s idSet
			first := -1
			for i, id := range tc.ids {
				if s.add(id) && first < 0 {
					first = i
				}
			}
			assert.Equal(t, tc.dup, first)
		})
	}
	// Dense IDs stay in the bitmap.
	var s idSet
	for i := int64(2_000_000); i > 0; i-- {
		if s.add(i) {
			t.Fatalf("%d reported as duplicate", i)
		}
	}
	assert.Nil(t, s.sparse)
	assert.True(t, s.add(17))
}

func TestErrorFormat(t *testing.T) {
	e := &Error{File: "a.parquet", Row: 3, Column: "arrival_ns", Msg: "bad"}
	assert.Equal(t, "a.parquet: row 3: column arrival_ns: bad", e.Error())
	var te *Error
	assert.True(t, errors.As(error(e), &te))
	assert.False(t, strings.Contains((&Error{File: "f", Msg: "m"}).Error(), "row"))
}
