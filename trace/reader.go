package trace

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/parquet-go/parquet-go"
)

// Error is a problem with a trace's content. Row is 1-based (0 when the
// problem is not about one row); Column is empty when not about one column.
type Error struct {
	File   string
	Row    int64
	Column string
	Msg    string
}

func (e *Error) Error() string {
	s := e.File
	if s == "" {
		s = "trace"
	}
	if e.Row > 0 {
		s += ": row " + strconv.FormatInt(e.Row, 10)
	}
	if e.Column != "" {
		s += ": column " + e.Column
	}
	return s + ": " + e.Msg
}

// chunkRows is how many rows Read decodes per pass over the columns: enough
// to amortise the per-column bookkeeping, small enough to stay in cache.
const chunkRows = 4096

// Reader streams a trace file row group by row group, decoding each column's
// pages straight into reused typed slices and validating every row as it
// goes. Its memory is flat in the file's length apart from the duplicate
// request_id check (see idSet: one bit per ID for the usual dense IDs).
//
// A Reader is not safe for concurrent use.
type Reader struct {
	path    string
	file    *os.File
	pf      *parquet.File
	meta    Metadata
	numRows int64

	groups    []parquet.RowGroup
	nextGroup int
	groupLeft int64
	row       int64 // rows already returned

	id, arrival, input, output *column
	session, class, prefix     *column
	priority, deadline         *column
	all                        []*column

	ids, arrivals []int64
	ins, outs     []int32

	lastArrival int64
	unsorted    bool
	seen        idSet
	err         error
}

// OpenOption configures Open.
type OpenOption func(*Reader)

// AllowUnsorted makes Read accept arrivals that go backwards (every other
// check stays); SortFile uses it to repair such files.
func AllowUnsorted() OpenOption { return func(r *Reader) { r.unsorted = true } }

// Open opens a trace file for streaming and checks its schema and metadata.
// It reads only the footer; rows are validated by Read.
func Open(path string, opts ...OpenOption) (r *Reader, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, &Error{File: path, Msg: "is a directory, not a Parquet trace file"}
	}
	r = &Reader{path: path, file: f}
	for _, o := range opts {
		o(r)
	}
	defer r.recoverCorrupt(&err)
	if err := checkFooter(f, st.Size()); err != nil {
		return nil, &Error{File: path, Msg: "not a Parquet trace file: " + err.Error()}
	}
	r.pf, err = parquet.OpenFile(f, st.Size(), parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return nil, &Error{File: path, Msg: "not a Parquet trace file: " + err.Error()}
	}
	kv := map[string]string{}
	for _, e := range r.pf.Metadata().KeyValueMetadata {
		kv[e.Key] = e.Value
	}
	if _, ok := kv[keySchema]; ok {
		if r.meta, err = parseMetadata(kv); err != nil {
			return nil, &Error{File: path, Msg: err.Error()}
		}
	} else {
		// A file with the right columns from another tool (pandas, DuckDB)
		// is still a trace; SchemaVersion 0 says its provenance is unknown.
		r.meta, _ = parseMetadata(map[string]string{keySchema: "1"})
		r.meta.SchemaVersion = 0
		for k, v := range kv {
			if r.meta.Extra == nil {
				r.meta.Extra = map[string]string{}
			}
			r.meta.Extra[k] = v
		}
	}
	r.numRows = r.pf.NumRows()
	if r.numRows <= 0 {
		return nil, &Error{File: path, Msg: "empty trace (no rows)"}
	}
	root := r.pf.Root()
	req := func(name string, kind parquet.Kind) (*column, error) {
		c, err := lookupColumn(root, name, kind, false)
		if err != nil {
			return nil, &Error{File: path, Column: name, Msg: err.Error()}
		}
		if c == nil {
			return nil, &Error{File: path, Column: name, Msg: "missing required column"}
		}
		return c, nil
	}
	opt := func(name string, kind parquet.Kind, list bool) (*column, error) {
		c, err := lookupColumn(root, name, kind, list)
		if err != nil {
			return nil, &Error{File: path, Column: name, Msg: err.Error()}
		}
		return c, nil
	}
	if r.id, err = req(ColRequestID, parquet.Int64); err != nil {
		return nil, err
	}
	if r.arrival, err = req(ColArrivalNS, parquet.Int64); err != nil {
		return nil, err
	}
	if r.input, err = req(ColInputTokens, parquet.Int32); err != nil {
		return nil, err
	}
	if r.output, err = req(ColOutputTokens, parquet.Int32); err != nil {
		return nil, err
	}
	if r.session, err = opt(ColSessionID, parquet.Int64, false); err != nil {
		return nil, err
	}
	if r.class, err = opt(ColRequestClass, parquet.ByteArray, false); err != nil {
		return nil, err
	}
	if r.prefix, err = opt(ColPrefixBlockIDs, parquet.Int64, true); err != nil {
		return nil, err
	}
	if r.priority, err = opt(ColPriority, parquet.Int32, false); err != nil {
		return nil, err
	}
	if r.deadline, err = opt(ColDeadlineNS, parquet.Int64, false); err != nil {
		return nil, err
	}
	for _, c := range []*column{r.id, r.arrival, r.input, r.output, r.session, r.class, r.prefix, r.priority, r.deadline} {
		if c != nil {
			c.file = path
			r.all = append(r.all, c)
		}
	}
	r.groups = r.pf.RowGroups()
	r.ids = make([]int64, chunkRows)
	r.arrivals = make([]int64, chunkRows)
	r.ins = make([]int32, chunkRows)
	r.outs = make([]int32, chunkRows)
	return r, nil
}

// checkFooter checks the magic bytes and the footer length before
// parquet-go allocates the footer: a corrupt length would otherwise make it
// allocate up to 4 GiB.
func checkFooter(f *os.File, size int64) error {
	if size < 12 {
		return fmt.Errorf("%d bytes is too short", size)
	}
	var head [4]byte
	var tail [8]byte
	if _, err := f.ReadAt(head[:], 0); err != nil {
		return err
	}
	if _, err := f.ReadAt(tail[:], size-8); err != nil {
		return err
	}
	if string(head[:]) != "PAR1" || string(tail[4:]) != "PAR1" {
		return fmt.Errorf("no PAR1 magic bytes")
	}
	n := int64(tail[0]) | int64(tail[1])<<8 | int64(tail[2])<<16 | int64(tail[3])<<24
	if n+12 > size {
		return fmt.Errorf("footer length %d exceeds the file size %d", n, size)
	}
	return nil
}

// recoverCorrupt turns a panic inside parquet-go (it trusts lengths in
// corrupt pages) into an error: bad input must never crash the caller.
func (r *Reader) recoverCorrupt(err *error) {
	if p := recover(); p != nil {
		*err = &Error{File: r.path, Msg: fmt.Sprintf("corrupt Parquet data: %v", p)}
		r.err = *err
	}
}

// Meta returns the trace's metadata.
func (r *Reader) Meta() Metadata { return r.meta }

// NumRows returns the number of rows the footer declares.
func (r *Reader) NumRows() int64 { return r.numRows }

// Path returns the file name the Reader was opened with.
func (r *Reader) Path() string { return r.path }

// Read fills buf with the next rows and returns how many it filled. At the
// end of the trace it returns io.EOF, possibly together with n > 0: use the
// rows first. The pointers and slices in the returned Requests are fresh
// for each call, so callers may keep them. Any other error is a *Error
// naming the file, the 1-based row and the column, or an I/O error; errors
// are sticky.
func (r *Reader) Read(buf []Request) (n int, err error) {
	if r.err != nil {
		return 0, r.err
	}
	defer r.recoverCorrupt(&err)
	for n < len(buf) {
		if r.groupLeft == 0 {
			if r.nextGroup == len(r.groups) {
				if r.row != r.numRows {
					r.err = &Error{File: r.path, Msg: fmt.Sprintf("footer declares %d rows but row groups hold %d", r.numRows, r.row)}
					return n, r.err
				}
				return n, io.EOF
			}
			if err := r.openGroup(); err != nil {
				r.err = err
				return n, err
			}
			continue
		}
		k := int(min(int64(len(buf)-n), r.groupLeft, chunkRows))
		if err := r.readChunk(buf[n : n+k]); err != nil {
			r.err = err
			return n, err
		}
		n += k
		r.row += int64(k)
		r.groupLeft -= int64(k)
	}
	if r.groupLeft == 0 && r.nextGroup == len(r.groups) && r.row == r.numRows {
		// Say EOF with the last rows, sparing the caller one more call.
		return n, io.EOF
	}
	return n, nil
}

func (r *Reader) openGroup() error {
	g := r.groups[r.nextGroup]
	r.nextGroup++
	r.groupLeft = g.NumRows()
	if r.groupLeft < 0 {
		return &Error{File: r.path, Msg: "row group with a negative row count"}
	}
	chunks := g.ColumnChunks()
	for _, c := range r.all {
		if c.index >= len(chunks) {
			return &Error{File: r.path, Column: c.name, Msg: "column chunk missing from row group"}
		}
		if err := c.reset(chunks[c.index].Pages()); err != nil {
			return err
		}
	}
	return nil
}

// readChunk decodes len(out) rows (all in the current row group).
func (r *Reader) readChunk(out []Request) error {
	k := len(out)
	first := r.row + 1
	ids, arr, ins, outs := r.ids[:k], r.arrivals[:k], r.ins[:k], r.outs[:k]
	if err := r.id.readInt64s(ids, first); err != nil {
		return err
	}
	if err := r.arrival.readInt64s(arr, first); err != nil {
		return err
	}
	if err := r.input.readInt32s(ins, first); err != nil {
		return err
	}
	if err := r.output.readInt32s(outs, first); err != nil {
		return err
	}
	last := r.lastArrival
	for i := range k {
		a := arr[i]
		in, ot := ins[i], outs[i]
		if r.unsorted {
			last = a
		}
		if a < last || a < 0 || in <= 0 || in > MaxTokens || ot <= 0 || ot > MaxTokens {
			return r.rowError(first+int64(i), a, last, in, ot)
		}
		last = a
		if r.seen.add(ids[i]) {
			return &Error{File: r.path, Row: first + int64(i), Column: ColRequestID, Msg: fmt.Sprintf("duplicate request_id %d", ids[i])}
		}
		out[i] = Request{RequestID: ids[i], ArrivalNS: a, InputTokens: in, OutputTokens: ot}
	}
	r.lastArrival = last
	if r.session != nil {
		if err := r.session.readOptInt64s(out, first, func(q *Request, p *int64) { q.SessionID = p }); err != nil {
			return err
		}
	}
	if r.class != nil {
		if err := r.class.readOptStrings(out, first); err != nil {
			return err
		}
	}
	if r.prefix != nil {
		if err := r.prefix.readLists(out, first); err != nil {
			return err
		}
	}
	if r.priority != nil {
		if err := r.priority.readOptInt32s(out, first); err != nil {
			return err
		}
	}
	if r.deadline != nil {
		if err := r.deadline.readOptInt64s(out, first, func(q *Request, p *int64) { q.DeadlineNS = p }); err != nil {
			return err
		}
		for i := range out {
			if d := out[i].DeadlineNS; d != nil && *d <= out[i].ArrivalNS {
				return &Error{File: r.path, Row: first + int64(i), Column: ColDeadlineNS,
					Msg: fmt.Sprintf("deadline %d ns is not after arrival %d ns", *d, out[i].ArrivalNS)}
			}
		}
	}
	return nil
}

// rowError explains the first failed check of one row, in column order.
func (r *Reader) rowError(row, a, last int64, in, out int32) error {
	e := &Error{File: r.path, Row: row}
	switch {
	case a < 0:
		e.Column, e.Msg = ColArrivalNS, fmt.Sprintf("negative arrival %d ns", a)
	case a < last:
		e.Column, e.Msg = ColArrivalNS, fmt.Sprintf("arrival %d ns is before the previous row's %d ns (arrivals must not go backwards; `trace sort` fixes this)", a, last)
	default:
		if e.Column, e.Msg = checkTokens(in, out); e.Msg == "" {
			e.Msg = "invalid row"
		}
	}
	return e
}

// checkTokens returns the column and reason of a bad token count, or two
// empty strings.
func checkTokens(in, out int32) (string, string) {
	switch {
	case in <= 0:
		return ColInputTokens, fmt.Sprintf("input_tokens %d is not positive", in)
	case in > MaxTokens:
		return ColInputTokens, fmt.Sprintf("input_tokens %d is absurd (more than %d)", in, MaxTokens)
	case out <= 0:
		return ColOutputTokens, fmt.Sprintf("output_tokens %d is not positive (it counts the first token)", out)
	case out > MaxTokens:
		return ColOutputTokens, fmt.Sprintf("output_tokens %d is absurd (more than %d)", out, MaxTokens)
	}
	return "", ""
}

// Close releases the file. It is safe to call twice.
func (r *Reader) Close() error {
	if r.file == nil {
		return nil
	}
	for _, c := range r.all {
		c.close()
	}
	err := r.file.Close()
	r.file = nil
	if r.err == nil {
		r.err = errors.New("trace: read from closed Reader")
	}
	return err
}

// ReadAll reads a whole trace into memory; for small files and tests.
// Stream large files with Open and Read.
func ReadAll(path string) ([]Request, Metadata, error) {
	r, err := Open(path)
	if err != nil {
		return nil, Metadata{}, err
	}
	defer r.Close()
	reqs := make([]Request, 0, min(r.NumRows(), 1<<20))
	buf := make([]Request, chunkRows)
	for {
		n, err := r.Read(buf)
		reqs = append(reqs, buf[:n]...)
		if err == io.EOF {
			return reqs, r.Meta(), nil
		}
		if err != nil {
			return nil, Metadata{}, err
		}
	}
}
