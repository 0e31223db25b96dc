package trace

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzReader feeds arbitrary bytes (seeded with valid traces, including
// optional columns and a dictionary-encoded foreign file) through Open and
// Read: any input must give rows or an error, never a panic, and rows that
// come back must satisfy the format's invariants.
func FuzzReader(f *testing.F) {
	dir := f.TempDir()
	seed := func(name string, write func(path string) error) {
		path := filepath.Join(dir, name)
		if err := write(path); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed("full.parquet", func(p string) error { return WriteFile(p, Metadata{Name: "f"}, sampleRequests(40), RowGroupRows(16)) })
	seed("plain.parquet", func(p string) error {
		return WriteFile(p, Metadata{}, []Request{{RequestID: 1, InputTokens: 2, OutputTokens: 3}})
	})
	seed("dict.parquet", func(p string) error {
		return writeRawTo(p, []dictRow{{1, 0, 1, 1, "a"}, {2, 5, 2, 2, "b"}})
	})
	f.Add([]byte("PAR1"))
	f.Add([]byte("PAR1\x00\x00\x00\x00PAR1"))
	f.Add([]byte{})
	fuzzDir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(fuzzDir, "in.parquet")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(path)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		defer r.Close()
		buf := make([]Request, 7)
		last := int64(0)
		ids := map[int64]bool{}
		for {
			n, err := r.Read(buf)
			for _, q := range buf[:n] {
				if q.ArrivalNS < last || q.InputTokens < 1 || q.OutputTokens < 1 || q.InputTokens > MaxTokens || q.OutputTokens > MaxTokens || ids[q.RequestID] {
					t.Fatalf("invalid row passed validation: %+v", q)
				}
				last = q.ArrivalNS
				ids[q.RequestID] = true
			}
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				return
			}
			if n == 0 {
				t.Fatal("Read returned 0 rows and no error")
			}
		}
	})
}

func writeRawTo[T any](path string, rows []T) error {
	var buf bytes.Buffer
	if err := writeRawBuf(&buf, rows); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func checkImport(t *testing.T, format, src string, opt ImportOptions) {
	opt.Format = format
	imp, err := Import(strings.NewReader(src), "fuzz", opt)
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error: %q", err)
		}
		return
	}
	// Whatever an importer accepts, the writer must accept too.
	w, err := Create(filepath.Join(t.TempDir(), "out.parquet"), imp.Meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(imp.Requests); err != nil {
		w.Close()
		t.Fatalf("importer produced rows the writer rejects: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func FuzzImportCSV(f *testing.F) {
	f.Add(uint8(0), "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n")
	f.Add(uint8(1), "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,472,18,490,Conversation log\n5,GPT-4,10,0,10,API log\n")
	f.Add(uint8(2), "t,i,o,s,c,p\n1.5,3,4,1,x,1;2\n0.25,3,4,,y,\n")
	f.Add(uint8(2), "t,i,o\n\"1\n2\",3,4\n")
	f.Fuzz(func(t *testing.T, which uint8, src string) {
		switch which % 3 {
		case 0:
			checkImport(t, FormatAzure, src, ImportOptions{})
		case 1:
			checkImport(t, FormatBurstGPT, src, ImportOptions{KeepZeroOutput: which&4 != 0, Spread: which&8 != 0})
		case 2:
			checkImport(t, FormatCSV, src, ImportOptions{TimeUnit: time.Second, Spread: which&8 != 0, Map: map[string]string{
				"arrival": "t", "input": "i", "output": "o", "session": "s", "class": "c", "prefix": "p"}})
		}
	})
}

func FuzzImportJSONL(f *testing.F) {
	f.Add(false, `{"timestamp": 0, "input_length": 40160, "output_length": 6, "hash_ids": [0, 1, 2]}
{"timestamp": 0, "input_length": 10, "output_length": 4, "hash_ids": [3]}`)
	f.Add(true, `{"id": 3, "when": 1.5, "in": 3, "out": 4, "blocks": [5, 6], "prio": 1, "dl": 9}`)
	f.Add(true, `{"id": "x", "when": null}`)
	f.Fuzz(func(t *testing.T, generic bool, src string) {
		if generic {
			checkImport(t, FormatJSONL, src, ImportOptions{TimeUnit: time.Second, Map: map[string]string{
				"id": "id", "arrival": "when", "input": "in", "output": "out", "prefix": "blocks", "priority": "prio", "deadline": "dl"}})
			return
		}
		checkImport(t, FormatMooncake, src, ImportOptions{Spread: true})
	})
}

func FuzzParseTokenDist(f *testing.F) {
	for _, s := range []string{"const:50", "uniform:1,9", "exp:mean=100", "lognormal:mean=512,cv=1.5", "lognormal:mean=1e7,cv=100", "uniform:1,10000000", "exp:mean=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		if strings.HasPrefix(spec, "empirical:") {
			return // reads files; covered by FuzzReader
		}
		d, err := ParseTokenDist(spec, Input)
		if err != nil {
			return
		}
		again, err := ParseTokenDist(d.String(), Input)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", d.String(), spec, err)
		}
		if again.String() != d.String() {
			t.Fatalf("canonical form not stable: %q -> %q", d.String(), again.String())
		}
		r := newTestRand()
		for range 100 {
			if v := d.Sample(r); v < 1 || v > MaxTokens {
				t.Fatalf("%s drew %d", spec, v)
			}
		}
	})
}
