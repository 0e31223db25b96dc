package trace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
)

// DefaultRowGroupRows bounds a row group: the writer buffers one row group
// in memory, so this bounds its memory (tens of MB), while keeping the
// per-group overhead of readers negligible.
const DefaultRowGroupRows = 1 << 19

type writerConfig struct {
	overwrite    bool
	rowGroupRows int64
	codec        compress.Codec
}

// CreateOption configures Create.
type CreateOption func(*writerConfig)

// Overwrite lets Create replace an existing file (the CLI's --force). The
// old file stays intact until Close succeeds.
func Overwrite(yes bool) CreateOption { return func(c *writerConfig) { c.overwrite = yes } }

// RowGroupRows sets the maximum rows per row group (default
// DefaultRowGroupRows).
func RowGroupRows(n int) CreateOption {
	return func(c *writerConfig) { c.rowGroupRows = int64(n) }
}

// Writer writes a trace file. Rows are validated as they are written (the
// same checks as Reader), so a Writer never produces a file Open rejects.
// Output goes to a temporary file in the target's directory and is renamed
// into place by Close: a crash or error never leaves a half-written trace
// under the target name.
type Writer struct {
	path, tmp string
	cfg       writerConfig
	f         *os.File
	w         *parquet.GenericWriter[Request]
	rows      int64
	last      int64
	seen      idSet
	err       error
	closed    bool
}

// Create starts a new trace at path. Without Overwrite(true) it refuses a
// path that exists (the error wraps fs.ErrExist).
func Create(path string, meta Metadata, opts ...CreateOption) (*Writer, error) {
	cfg := writerConfig{rowGroupRows: DefaultRowGroupRows, codec: &parquet.Snappy}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.rowGroupRows <= 0 {
		return nil, fmt.Errorf("trace: row group size %d is not positive", cfg.rowGroupRows)
	}
	kv, err := meta.keyValues()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !cfg.overwrite {
		if _, err := os.Lstat(path); err == nil {
			return nil, &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	_ = f.Chmod(0o644) // CreateTemp makes it 0600; outputs are for others to read
	wopts := []parquet.WriterOption{
		parquet.MaxRowsPerRowGroup(cfg.rowGroupRows),
		parquet.Compression(cfg.codec),
		parquet.CreatedBy("batchkit trace", "", ""),
	}
	for _, p := range kv {
		wopts = append(wopts, parquet.KeyValueMetadata(p[0], p[1]))
	}
	return &Writer{path: path, tmp: f.Name(), cfg: cfg, f: f, w: parquet.NewGenericWriter[Request](f, wopts...)}, nil
}

// Write validates and appends rows. After an error the Writer is unusable
// and Close discards the output.
func (w *Writer) Write(reqs []Request) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("trace: write to closed Writer")
	}
	for i := range reqs {
		if err := w.check(&reqs[i], w.rows+int64(i)+1); err != nil {
			w.err = err
			return err
		}
	}
	if _, err := w.w.Write(reqs); err != nil {
		w.err = fmt.Errorf("%s: %w", w.path, err)
		return w.err
	}
	w.rows += int64(len(reqs))
	return nil
}

func (w *Writer) check(q *Request, row int64) error {
	ok := q.ArrivalNS >= w.last && q.InputTokens >= 1 && q.InputTokens <= MaxTokens &&
		q.OutputTokens >= 1 && q.OutputTokens <= MaxTokens && (q.DeadlineNS == nil || *q.DeadlineNS > q.ArrivalNS)
	if ok {
		if w.seen.add(q.RequestID) {
			return &Error{File: w.path, Row: row, Column: ColRequestID, Msg: fmt.Sprintf("duplicate request_id %d", q.RequestID)}
		}
		w.last = q.ArrivalNS
		return nil
	}
	// w.last starts at 0, so the first test also rejects negative arrivals.
	e := &Error{File: w.path, Row: row}
	switch {
	case q.ArrivalNS < 0:
		e.Column, e.Msg = ColArrivalNS, fmt.Sprintf("negative arrival %d ns", q.ArrivalNS)
	case q.ArrivalNS < w.last:
		e.Column, e.Msg = ColArrivalNS, fmt.Sprintf("arrival %d ns is before the previous row's %d ns (sort requests by arrival first)", q.ArrivalNS, w.last)
	case q.DeadlineNS != nil && *q.DeadlineNS <= q.ArrivalNS:
		e.Column, e.Msg = ColDeadlineNS, fmt.Sprintf("deadline %d ns is not after arrival %d ns", *q.DeadlineNS, q.ArrivalNS)
	default:
		e.Column, e.Msg = checkTokens(q.InputTokens, q.OutputTokens)
	}
	return e
}

// Rows returns how many rows were written so far.
func (w *Writer) Rows() int64 { return w.rows }

// Close finishes the file and moves it into place. On any earlier error,
// or when no row was written (an empty trace is invalid), it removes the
// temporary file and returns an error. Safe to call twice.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	err := w.err
	if err == nil && w.rows == 0 {
		err = &Error{File: w.path, Msg: "empty trace: no requests written"}
	}
	if cerr := w.w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: %w", w.path, cerr)
	}
	if serr := w.f.Sync(); err == nil && serr != nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(w.tmp, 0o644)
	}
	if err == nil {
		err = w.install()
	}
	if err != nil {
		os.Remove(w.tmp)
		w.err = err
	}
	return err
}

// install moves the finished temporary file to the target path. Without
// overwrite it uses a hard link, which fails if the target appeared in the
// meantime, so a concurrent writer's file is never clobbered.
func (w *Writer) install() error {
	if w.cfg.overwrite {
		return os.Rename(w.tmp, w.path)
	}
	if err := os.Link(w.tmp, w.path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return &fs.PathError{Op: "create", Path: w.path, Err: fs.ErrExist}
		}
		// Filesystems without hard links: check, then rename.
		if _, serr := os.Lstat(w.path); serr == nil {
			return &fs.PathError{Op: "create", Path: w.path, Err: fs.ErrExist}
		}
		return os.Rename(w.tmp, w.path)
	}
	return os.Remove(w.tmp)
}

// WriteFile writes reqs as a complete trace at path.
func WriteFile(path string, meta Metadata, reqs []Request, opts ...CreateOption) error {
	w, err := Create(path, meta, opts...)
	if err != nil {
		return err
	}
	if err := w.Write(reqs); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
