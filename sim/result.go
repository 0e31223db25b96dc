package sim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/parquet-go/parquet-go"
)

// Result statuses.
const (
	StatusOK       = "ok"
	StatusRejected = "rejected" // refused on admission by the policy
	StatusDropped  = "dropped"  // taken out of the policy's queue later
	StatusFailed   = "failed"   // the engine failed it (replay)
)

// ResultsSchemaVersion is written to every results file's metadata.
const ResultsSchemaVersion = 1

// Result is one request's record, shared by simrun and replay. Times are
// ns since the run started; -1 marks a stage the request never reached
// (a rejected request has no dispatch). For an ok request
// EnqueueNS-ArrivalNS = OverheadNS and
// EngineStartNS-EnqueueNS = WindowWaitNS+EngineQueueWaitNS.
type Result struct {
	RequestID     int64 `parquet:"request_id"`
	ArrivalNS     int64 `parquet:"arrival_ns"`
	EnqueueNS     int64 `parquet:"enqueue_ns"`
	DispatchNS    int64 `parquet:"dispatch_ns"`
	EngineStartNS int64 `parquet:"engine_start_ns"`
	FirstTokenNS  int64 `parquet:"first_token_ns"`
	FinishNS      int64 `parquet:"finish_ns"`
	InputTokens   int32 `parquet:"input_tokens"`
	OutputTokens  int32 `parquet:"output_tokens"`
	BatchID       int64 `parquet:"batch_id"`
	BatchSize     int32 `parquet:"batch_size"`
	// WindowWaitNS: held by the policy while the engine could have accepted.
	WindowWaitNS int64 `parquet:"window_wait_ns"`
	// EngineQueueWaitNS: waiting because the engine was busy or full,
	// including batch-mates served first in sequential mode.
	EngineQueueWaitNS int64  `parquet:"engine_queue_wait_ns"`
	OverheadNS        int64  `parquet:"overhead_ns"`
	Status            string `parquet:"status,dict"`
	Error             string `parquet:"error,dict"`
}

// Metadata keys of a results file.
const (
	MetaSchema  = "batchkit.results.schema_version"
	MetaTrace   = "batchkit.results.trace"
	MetaPolicy  = "batchkit.results.policy"
	MetaProfile = "batchkit.results.profile"
	// MetaProfileJSON is the whole profile, so a prediction can be rerun.
	MetaProfileJSON = "batchkit.results.profile_json"
	MetaSeed        = "batchkit.results.seed"
	MetaSource      = "batchkit.results.source" // "simrun" or "replay"
)

// ResultWriter streams Results to a Parquet file, written to a temporary
// file in the same directory and renamed on Close.
type ResultWriter struct {
	path, tmp string
	f         *os.File
	w         *parquet.GenericWriter[Result]
	buf       []Result
	closed    bool
}

// CreateResults opens a results file; it refuses an existing path unless
// force. meta gets MetaSchema added.
func CreateResults(path string, meta map[string]string, force bool) (*ResultWriter, error) {
	if !force {
		if _, err := os.Stat(path); err == nil {
			return nil, fmt.Errorf("%s: already exists (use --force to overwrite)", path)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	_ = f.Chmod(0o644) // CreateTemp makes it 0600; outputs are for others to read
	keys := make([]string, 0, len(meta)+1)
	m := map[string]string{MetaSchema: strconv.Itoa(ResultsSchemaVersion)}
	for k, v := range meta {
		m[k] = v
	}
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	opts := []parquet.WriterOption{parquet.Compression(&parquet.Zstd)}
	for _, k := range keys {
		opts = append(opts, parquet.KeyValueMetadata(k, m[k]))
	}
	return &ResultWriter{path: path, tmp: f.Name(), f: f, w: parquet.NewGenericWriter[Result](f, opts...), buf: make([]Result, 0, 4096)}, nil
}

// Write buffers one result.
func (w *ResultWriter) Write(r *Result) error {
	w.buf = append(w.buf, *r)
	if len(w.buf) == cap(w.buf) {
		return w.flush()
	}
	return nil
}

func (w *ResultWriter) flush() error {
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("%s: %v", w.path, err)
	}
	w.buf = w.buf[:0]
	return nil
}

// Close finishes the file and moves it into place.
func (w *ResultWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.flush()
	if e := w.w.Close(); err == nil && e != nil {
		err = fmt.Errorf("%s: %v", w.path, e)
	}
	if e := w.f.Close(); err == nil && e != nil {
		err = fmt.Errorf("%s: %v", w.path, e)
	}
	if err == nil {
		err = os.Rename(w.tmp, w.path)
	}
	if err != nil {
		os.Remove(w.tmp)
	}
	return err
}

// Abort removes the temporary file without installing it.
func (w *ResultWriter) Abort() {
	if !w.closed {
		w.closed = true
		w.w.Close()
		w.f.Close()
		os.Remove(w.tmp)
	}
}

// ResultReader reads a results file.
type ResultReader struct {
	path string
	f    *os.File
	pf   *parquet.File
	r    *parquet.GenericReader[Result]
	meta map[string]string
}

var resultColumns = func() []string {
	var cols []string
	for _, c := range parquet.SchemaOf(Result{}).Fields() {
		cols = append(cols, c.Name())
	}
	return cols
}()

// OpenResults opens a results file written by simrun or replay; a file
// that is not one gets an error naming it and what is wrong.
func OpenResults(path string) (rr *ResultReader, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if e := recover(); e != nil {
			err = fmt.Errorf("%s: not a results file: corrupt Parquet (%v)", path, e)
		}
		if err != nil {
			f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: not a results file: %v", path, err)
	}
	meta := map[string]string{}
	for _, kv := range pf.Metadata().KeyValueMetadata {
		meta[kv.Key] = kv.Value
	}
	v, ok := meta[MetaSchema]
	if !ok {
		return nil, fmt.Errorf("%s: not a results file: no %s metadata (a trace?)", path, MetaSchema)
	}
	if v != strconv.Itoa(ResultsSchemaVersion) {
		return nil, fmt.Errorf("%s: results schema version %s, this build reads %d", path, v, ResultsSchemaVersion)
	}
	for _, c := range resultColumns {
		if _, ok := pf.Schema().Lookup(c); !ok {
			return nil, fmt.Errorf("%s: not a results file: column %s missing", path, c)
		}
	}
	return &ResultReader{path: path, f: f, pf: pf, r: parquet.NewGenericReader[Result](f), meta: meta}, nil
}

// Meta returns the file's key/value metadata.
func (r *ResultReader) Meta() map[string]string { return r.meta }

// NumRows is the number of results in the file.
func (r *ResultReader) NumRows() int64 { return r.pf.NumRows() }

// Read fills buf; n > 0 may come with io.EOF.
func (r *ResultReader) Read(buf []Result) (n int, err error) {
	defer func() {
		if e := recover(); e != nil {
			err = fmt.Errorf("%s: corrupt results file (%v)", r.path, e)
		}
	}()
	n, err = r.r.Read(buf)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("%s: %v", r.path, err)
	}
	return n, err
}

// Close releases the file; safe twice.
func (r *ResultReader) Close() error {
	if r.f == nil {
		return nil
	}
	r.r.Close()
	err := r.f.Close()
	r.f = nil
	return err
}

// ReadResults reads a whole results file with its metadata.
func ReadResults(path string) ([]Result, map[string]string, error) {
	r, err := OpenResults(path)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	out := make([]Result, 0, r.NumRows())
	buf := make([]Result, 4096)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return out, r.meta, nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
}
