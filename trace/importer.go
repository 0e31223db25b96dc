package trace

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Import formats.
const (
	FormatAzure    = "azure"    // Azure LLM inference trace 2023 CSV
	FormatMooncake = "mooncake" // Mooncake FAST'25 JSONL
	FormatBurstGPT = "burstgpt" // BurstGPT CSV
	FormatCSV      = "csv"      // any CSV, columns named by ImportOptions.Map
	FormatJSONL    = "jsonl"    // any JSON lines, keys named by ImportOptions.Map
)

// ImportFormats lists the formats, for help texts.
var ImportFormats = []string{FormatAzure, FormatMooncake, FormatBurstGPT, FormatCSV, FormatJSONL}

// Fields a generic import can map (ImportOptions.Map keys).
var MapFields = []string{"id", "arrival", "input", "output", "session", "class", "priority", "deadline", "prefix"}

// ImportOptions controls an import.
type ImportOptions struct {
	Format string
	// Spread spreads requests that share one source timestamp evenly over
	// the time quantum, instead of letting them arrive as one burst.
	Spread bool
	// Quantum overrides the source's timestamp resolution (used by Spread
	// and stored in the metadata); 0 keeps the format's own.
	Quantum time.Duration
	// KeepZeroOutput keeps rows with 0 output tokens (failed requests in
	// BurstGPT) as 1-token requests whose request_class ends in
	// "|zero-output"; by default they are dropped and counted.
	KeepZeroOutput bool
	// Map names the source column (CSV) or key (JSONL) of each field for
	// the generic formats; arrival, input and output are required.
	Map map[string]string
	// TimeUnit is the unit of numeric arrival (and deadline) values in the
	// generic formats (default 1ms).
	TimeUnit time.Duration
	// TimeLayout, if set, parses generic arrival values as text with this
	// Go time layout (e.g. time.RFC3339Nano) instead of numbers.
	TimeLayout string
	// Name for the metadata; default the file's base name.
	Name string
}

// ImportReport says what an import did with the source rows.
type ImportReport struct {
	Rows int `json:"rows"`
	Kept int `json:"kept"`
	// Dropped counts skipped rows by reason.
	Dropped map[string]int `json:"dropped,omitempty"`
	// Flagged counts rows kept but marked, by reason.
	Flagged map[string]int `json:"flagged,omitempty"`
	// Reordered is true when the source was not in arrival order and was
	// sorted (stably, so equal arrivals keep file order).
	Reordered bool `json:"reordered"`
	// Spread counts requests moved by ImportOptions.Spread.
	Spread int `json:"spread,omitempty"`
}

// Imported is a converted trace ready for WriteFile.
type Imported struct {
	Requests []Request
	Meta     Metadata
	Report   ImportReport
}

// ImportFile imports the file at path; the metadata's source names the
// importer, the file and its sha256.
func ImportFile(path string, opt ImportOptions) (*Imported, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	imp, err := Import(io.TeeReader(f, h), path, opt)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	imp.Meta.Source = fmt.Sprintf("batchkit trace import --format %s%s %s (sha256 %s)", opt.Format, opt.flags(), filepath.Base(path), hex.EncodeToString(h.Sum(nil)))
	return imp, nil
}

// flags renders the options that change the result, for provenance.
func (o ImportOptions) flags() string {
	var s string
	if o.Spread {
		s += " --spread"
	}
	if o.Quantum > 0 {
		s += " --quantum " + o.Quantum.String()
	}
	if o.KeepZeroOutput {
		s += " --keep-zero-output"
	}
	if o.Format == FormatCSV || o.Format == FormatJSONL {
		for _, k := range MapFields {
			if v, ok := o.Map[k]; ok {
				s += fmt.Sprintf(" --map %s=%s", k, v)
			}
		}
		if o.TimeLayout != "" {
			s += fmt.Sprintf(" --time-layout %q", o.TimeLayout)
		} else if o.TimeUnit > 0 {
			s += " --time-unit " + o.TimeUnit.String()
		}
	}
	return s
}

// rawRow is a source row before sorting and rebasing.
type rawRow struct {
	line    int64 // 0-based data row: the default request ID
	srcLine int64 // physical line, for errors
	at      int64 // ns on the source clock
	q       Request
	hasID   bool
}

// Import converts a source read from r; file names the source in errors
// ("line N" counts physical lines, 1-based).
func Import(r io.Reader, file string, opt ImportOptions) (*Imported, error) {
	imp := &Imported{Report: ImportReport{Dropped: map[string]int{}, Flagged: map[string]int{}}}
	var rows []rawRow
	var err error
	var quantum time.Duration
	name := opt.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	}
	imp.Meta.Name = name
	switch opt.Format {
	case FormatAzure:
		quantum = 100 * time.Nanosecond
		imp.Meta.Licence = "CC-BY-4.0 (Azure Public Dataset; cite Patel et al., Splitwise, ISCA 2024)"
		rows, err = readAzure(r, file, opt, &imp.Report)
	case FormatMooncake:
		quantum = time.Millisecond
		imp.Meta.Licence = "Apache-2.0 (kvcache-ai/Mooncake; cite Qin et al., FAST 2025)"
		rows, err = readMooncake(r, file, opt, &imp.Report)
	case FormatBurstGPT:
		quantum = time.Second
		imp.Meta.Licence = "CC-BY-4.0 (HPMLL/BurstGPT)"
		rows, err = readBurstGPT(r, file, opt, &imp.Report)
	case FormatCSV, FormatJSONL:
		if err := checkMap(opt); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		quantum = opt.TimeUnit
		if quantum <= 0 {
			quantum = time.Millisecond
		}
		if opt.TimeLayout != "" {
			quantum = 0
		}
		if opt.Format == FormatCSV {
			rows, err = readGenericCSV(r, file, opt, &imp.Report)
		} else {
			rows, err = readGenericJSONL(r, file, opt, &imp.Report)
		}
	default:
		return nil, fmt.Errorf("unknown import format %q (want %s)", opt.Format, strings.Join(ImportFormats, ", "))
	}
	if err != nil {
		return nil, err
	}
	if opt.Quantum > 0 {
		quantum = opt.Quantum
	}
	imp.Meta.TimeQuantum = quantum
	if len(rows) == 0 {
		return nil, &Error{File: file, Msg: "empty trace: no usable rows"}
	}
	if !slices.IsSortedFunc(rows, func(a, b rawRow) int { return cmpInt64(a.at, b.at) }) {
		imp.Report.Reordered = true
		slices.SortStableFunc(rows, func(a, b rawRow) int { return cmpInt64(a.at, b.at) })
	}
	t0 := rows[0].at
	for i := range rows {
		rows[i].q.ArrivalNS = rows[i].at - t0
		if rows[i].q.DeadlineNS != nil {
			d := *rows[i].q.DeadlineNS - t0
			rows[i].q.DeadlineNS = &d
		}
	}
	if opt.Spread {
		imp.Report.Spread = spread(rows, quantum)
	}
	var ids idSet
	for i := range rows {
		if rows[i].hasID && ids.add(rows[i].q.RequestID) {
			return nil, lineErr(file, rows[i].srcLine, opt.Map["id"], "duplicate request id %d", rows[i].q.RequestID)
		}
	}
	imp.Requests = make([]Request, len(rows))
	for i := range rows {
		imp.Requests[i] = rows[i].q
		if !rows[i].hasID {
			// Source has no IDs: number rows in file order, so an ID
			// points back at the source row.
			imp.Requests[i].RequestID = rows[i].line
		}
	}
	imp.Report.Kept = len(rows)
	return imp, nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// spread moves each run of k requests sharing one arrival to arrival +
// i·quantum/k (i = 0..k-1, file order kept): the source only knew the
// time to within a quantum.
func spread(rows []rawRow, quantum time.Duration) int {
	if quantum <= 1 {
		return 0
	}
	moved := 0
	for i := 0; i < len(rows); {
		j := i + 1
		for j < len(rows) && rows[j].q.ArrivalNS == rows[i].q.ArrivalNS {
			j++
		}
		if k := j - i; k > 1 {
			for m := 1; m < k; m++ {
				rows[i+m].q.ArrivalNS += int64(quantum) * int64(m) / int64(k)
				moved++
			}
		}
		i = j
	}
	return moved
}

// tokenField parses a token count; ok is false (without error) for 0, so
// callers can drop or flag the row.
func tokenField(s, file string, line int64, col string) (v int32, zero bool, err error) {
	n, perr := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if perr != nil {
		f, ferr := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if ferr != nil || f != math.Trunc(f) || math.IsInf(f, 0) {
			return 0, false, lineErr(file, line, col, "%q is not a token count", s)
		}
		if f < math.MinInt64 || f > math.MaxInt64 {
			return 0, false, lineErr(file, line, col, "%q is absurd (more than %d)", s, MaxTokens)
		}
		n = int64(f)
	}
	switch {
	case n < 0:
		return 0, false, lineErr(file, line, col, "negative token count %d", n)
	case n == 0:
		return 0, true, nil
	case n > MaxTokens:
		return 0, false, lineErr(file, line, col, "token count %d is absurd (more than %d)", n, MaxTokens)
	}
	return int32(n), false, nil
}

func lineErr(file string, line int64, col, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if line > 0 {
		return fmt.Errorf("%s: line %d: column %s: %s", file, line, col, msg)
	}
	return fmt.Errorf("%s: column %s: %s", file, col, msg)
}

// keepTokens applies the zero-token policy; it reports whether the row
// is kept.
func keepTokens(q *Request, inZero, outZero bool, opt ImportOptions, rep *ImportReport) bool {
	if inZero {
		rep.Dropped["0 input tokens"]++
		return false
	}
	if outZero {
		if !opt.KeepZeroOutput {
			rep.Dropped["0 output tokens (failed request)"]++
			return false
		}
		rep.Flagged["0 output tokens kept as 1, class |zero-output"]++
		q.OutputTokens = 1
		c := "|zero-output"
		if q.RequestClass != nil {
			c = *q.RequestClass + c
		}
		q.RequestClass = &c
	}
	return true
}

// csvHeader reads a CSV header and returns the index of each wanted
// column (-1 when optional and absent).
func csvHeader(cr *csv.Reader, file string, want []string, optional map[string]bool) (map[string]int, error) {
	head, err := cr.Read()
	if err == io.EOF {
		return nil, &Error{File: file, Msg: "empty file: no CSV header"}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	idx := map[string]int{}
	for i, h := range head {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if _, dup := idx[h]; !dup {
			idx[h] = i
		}
	}
	out := map[string]int{}
	for _, w := range want {
		i, ok := idx[w]
		if !ok {
			if optional[w] {
				out[w] = -1
				continue
			}
			return nil, fmt.Errorf("%s: line 1: missing column %q (header: %q)", file, w, head)
		}
		out[w] = i
	}
	return out, nil
}

func newCSV(r io.Reader) *csv.Reader {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<16))
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	return cr
}

// csvRecord reads the next record; line is its first physical line.
func csvRecord(cr *csv.Reader, file string) ([]string, int64, error) {
	rec, err := cr.Read()
	if err == io.EOF {
		return nil, 0, io.EOF
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, 0, fmt.Errorf("%s: line %d: %v", file, pe.StartLine, pe.Err)
		}
		return nil, 0, fmt.Errorf("%s: %w", file, err)
	}
	line, _ := cr.FieldPos(0)
	return rec, int64(line), nil
}

func field(rec []string, i int, file string, line int64, col string) (string, error) {
	if i >= len(rec) {
		return "", lineErr(file, line, col, "missing (row has %d fields)", len(rec))
	}
	return rec[i], nil
}

// azureLayout parses the Azure 2023 TIMESTAMP; 7 fractional digits are
// 100 ns. The zone is not given; UTC is assumed, which only matters for
// the absolute time, not for arrivals relative to the first request.
const azureLayout = "2006-01-02 15:04:05.999999999"

func readAzure(r io.Reader, file string, opt ImportOptions, rep *ImportReport) ([]rawRow, error) {
	cr := newCSV(r)
	cols, err := csvHeader(cr, file, []string{"TIMESTAMP", "ContextTokens", "GeneratedTokens"}, nil)
	if err != nil {
		return nil, err
	}
	var rows []rawRow
	for {
		rec, line, err := csvRecord(cr, file)
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		rep.Rows++
		ts, err := field(rec, cols["TIMESTAMP"], file, line, "TIMESTAMP")
		if err != nil {
			return nil, err
		}
		t, perr := time.Parse(azureLayout, strings.TrimSpace(ts))
		if perr != nil {
			return nil, lineErr(file, line, "TIMESTAMP", "%q is not YYYY-MM-DD HH:MM:SS.fffffff", ts)
		}
		var q Request
		var zin, zout bool
		for _, c := range []struct {
			name string
			dst  *int32
			zero *bool
		}{{"ContextTokens", &q.InputTokens, &zin}, {"GeneratedTokens", &q.OutputTokens, &zout}} {
			s, err := field(rec, cols[c.name], file, line, c.name)
			if err != nil {
				return nil, err
			}
			if *c.dst, *c.zero, err = tokenField(s, file, line, c.name); err != nil {
				return nil, err
			}
		}
		if keepTokens(&q, zin, zout, opt, rep) {
			rows = append(rows, rawRow{line: int64(rep.Rows - 1), at: t.UnixNano(), q: q})
		}
	}
}

// mooncakeRow is one Mooncake JSONL record.
type mooncakeRow struct {
	Timestamp    json.RawMessage `json:"timestamp"`
	InputLength  json.RawMessage `json:"input_length"`
	OutputLength json.RawMessage `json:"output_length"`
	HashIDs      json.RawMessage `json:"hash_ids"`
}

func readMooncake(r io.Reader, file string, opt ImportOptions, rep *ImportReport) ([]rawRow, error) {
	var rows []rawRow
	err := eachJSONLine(r, file, func(line int64, b []byte) error {
		var m mooncakeRow
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("%s: line %d: %v", file, line, err)
		}
		rep.Rows++
		if jsonMissing(m.Timestamp) {
			return lineErr(file, line, "timestamp", "missing")
		}
		at, err := decimalNS(string(m.Timestamp), time.Millisecond)
		if err != nil {
			return lineErr(file, line, "timestamp", "%v", err)
		}
		var q Request
		var zin, zout bool
		for _, c := range []struct {
			name string
			v    json.RawMessage
			dst  *int32
			zero *bool
		}{{"input_length", m.InputLength, &q.InputTokens, &zin}, {"output_length", m.OutputLength, &q.OutputTokens, &zout}} {
			if jsonMissing(c.v) {
				return lineErr(file, line, c.name, "missing")
			}
			if *c.dst, *c.zero, err = tokenField(string(c.v), file, line, c.name); err != nil {
				return err
			}
		}
		if !jsonMissing(m.HashIDs) {
			if err := json.Unmarshal(m.HashIDs, &q.PrefixBlockIDs); err != nil {
				return lineErr(file, line, "hash_ids", "not a list of integers")
			}
			if q.PrefixBlockIDs == nil {
				q.PrefixBlockIDs = []int64{}
			}
		}
		if keepTokens(&q, zin, zout, opt, rep) {
			rows = append(rows, rawRow{line: int64(rep.Rows - 1), at: at, q: q})
		}
		return nil
	})
	return rows, err
}

func jsonMissing(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// eachJSONLine calls fn for each non-blank line.
func eachJSONLine(r io.Reader, file string, fn func(line int64, b []byte) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	var line int64
	for {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Long line (big hash_ids list): gather it whole.
			long := append([]byte(nil), b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = br.ReadSlice('\n')
				long = append(long, b...)
				if len(long) > 64<<20 {
					return fmt.Errorf("%s: line %d: longer than 64 MiB", file, line+1)
				}
			}
			b = long
		}
		if len(b) > 0 {
			line++
			if t := bytes.TrimSpace(b); len(t) > 0 {
				if ferr := fn(line, t); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
}

// decimalNS converts a decimal number of units to ns exactly (no float
// rounding): "1.5" with unit 1s is 1500000000. Digits finer than 1 ns are
// rounded half away from zero.
func decimalNS(s string, unit time.Duration) (int64, error) {
	orig := strings.TrimSpace(s)
	if strings.ContainsAny(orig, "eE") {
		f, err := strconv.ParseFloat(orig, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || math.Abs(f*float64(unit)) > 9e18 {
			return 0, fmt.Errorf("%q is not a time", orig)
		}
		return int64(math.Round(f * float64(unit))), nil
	}
	r, ok := new(big.Rat).SetString(orig)
	if !ok || strings.ContainsAny(orig, "/") {
		return 0, fmt.Errorf("%q is not a time", orig)
	}
	r.Mul(r, new(big.Rat).SetInt64(int64(unit)))
	// Round half away from zero: trunc((2·num + sign·den) / (2·den)).
	num, den := new(big.Int).Set(r.Num()), r.Denom()
	num.Mul(num, big.NewInt(2))
	if num.Sign() < 0 {
		num.Sub(num, den)
	} else {
		num.Add(num, den)
	}
	q := num.Quo(num, new(big.Int).Mul(den, big.NewInt(2)))
	if !q.IsInt64() {
		return 0, fmt.Errorf("%q is out of range", orig)
	}
	return q.Int64(), nil
}

// burstGPT columns (Timestamp is seconds since the trace start).
func readBurstGPT(r io.Reader, file string, opt ImportOptions, rep *ImportReport) ([]rawRow, error) {
	cr := newCSV(r)
	cols, err := csvHeader(cr, file, []string{"Timestamp", "Model", "Request tokens", "Response tokens", "Log Type"}, map[string]bool{"Model": true, "Log Type": true})
	if err != nil {
		return nil, err
	}
	classes := map[string]*string{}
	var rows []rawRow
	for {
		rec, line, err := csvRecord(cr, file)
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		rep.Rows++
		ts, err := field(rec, cols["Timestamp"], file, line, "Timestamp")
		if err != nil {
			return nil, err
		}
		at, err := decimalNS(ts, time.Second)
		if err != nil {
			return nil, lineErr(file, line, "Timestamp", "%v", err)
		}
		var q Request
		var zin, zout bool
		for _, c := range []struct {
			name string
			dst  *int32
			zero *bool
		}{{"Request tokens", &q.InputTokens, &zin}, {"Response tokens", &q.OutputTokens, &zout}} {
			s, err := field(rec, cols[c.name], file, line, c.name)
			if err != nil {
				return nil, err
			}
			if *c.dst, *c.zero, err = tokenField(s, file, line, c.name); err != nil {
				return nil, err
			}
		}
		var parts []string
		for _, c := range []string{"Model", "Log Type"} {
			if i := cols[c]; i >= 0 && i < len(rec) && strings.TrimSpace(rec[i]) != "" {
				parts = append(parts, strings.TrimSpace(rec[i]))
			}
		}
		if len(parts) > 0 {
			key := strings.Join(parts, "|")
			p, ok := classes[key]
			if !ok {
				p = &key
				classes[key] = p
			}
			q.RequestClass = p
		}
		if keepTokens(&q, zin, zout, opt, rep) {
			rows = append(rows, rawRow{line: int64(rep.Rows - 1), at: at, q: q})
		}
	}
}

func checkMap(opt ImportOptions) error {
	for k := range opt.Map {
		if !slices.Contains(MapFields, k) {
			return fmt.Errorf("--map: unknown field %q (want %s)", k, strings.Join(MapFields, ", "))
		}
	}
	for _, k := range []string{"arrival", "input", "output"} {
		if opt.Map[k] == "" {
			return fmt.Errorf("--map: %s=COLUMN is required for format %s", k, opt.Format)
		}
	}
	return nil
}

// genericRow converts one generic record; get returns a field's raw text
// and whether it is present.
func genericRow(get func(field string) (string, bool), file string, line int64, opt ImportOptions, rep *ImportReport, classes map[string]*string) (rawRow, bool, error) {
	unit := opt.TimeUnit
	if unit <= 0 {
		unit = time.Millisecond
	}
	col := func(f string) string { return opt.Map[f] }
	row := rawRow{line: int64(rep.Rows - 1), srcLine: line}
	parseTime := func(f, s string) (int64, error) {
		if opt.TimeLayout != "" {
			t, err := time.Parse(opt.TimeLayout, strings.TrimSpace(s))
			if err != nil {
				return 0, lineErr(file, line, col(f), "%q does not match layout %q", s, opt.TimeLayout)
			}
			return t.UnixNano(), nil
		}
		v, err := decimalNS(s, unit)
		if err != nil {
			return 0, lineErr(file, line, col(f), "%v", err)
		}
		return v, nil
	}
	s, ok := get("arrival")
	if !ok {
		return row, false, lineErr(file, line, col("arrival"), "missing")
	}
	var err error
	if row.at, err = parseTime("arrival", s); err != nil {
		return row, false, err
	}
	var zin, zout bool
	for _, c := range []struct {
		f    string
		dst  *int32
		zero *bool
	}{{"input", &row.q.InputTokens, &zin}, {"output", &row.q.OutputTokens, &zout}} {
		s, ok := get(c.f)
		if !ok {
			return row, false, lineErr(file, line, col(c.f), "missing")
		}
		if *c.dst, *c.zero, err = tokenField(s, file, line, col(c.f)); err != nil {
			return row, false, err
		}
	}
	intField := func(f string, bits int) (*int64, error) {
		s, ok := get(f)
		if !ok || strings.TrimSpace(s) == "" {
			return nil, nil
		}
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, bits)
		if err != nil {
			return nil, lineErr(file, line, col(f), "%q is not an integer", s)
		}
		return &v, nil
	}
	id, err := intField("id", 64)
	if err != nil {
		return row, false, err
	}
	if id != nil {
		row.q.RequestID, row.hasID = *id, true
	}
	if row.q.SessionID, err = intField("session", 64); err != nil {
		return row, false, err
	}
	pr, err := intField("priority", 32)
	if err != nil {
		return row, false, err
	}
	if pr != nil {
		p := int32(*pr)
		row.q.Priority = &p
	}
	if s, ok := get("deadline"); ok && strings.TrimSpace(s) != "" {
		d, err := parseTime("deadline", s)
		if err != nil {
			return row, false, err
		}
		if d <= row.at {
			return row, false, lineErr(file, line, col("deadline"), "deadline %q is not after the arrival", s)
		}
		row.q.DeadlineNS = &d
	}
	if s, ok := get("class"); ok && s != "" {
		p, ok := classes[s]
		if !ok {
			c := s
			p = &c
			if len(classes) < 4096 {
				classes[c] = p
			}
		}
		row.q.RequestClass = p
	}
	if s, ok := get("prefix"); ok && strings.TrimSpace(s) != "" {
		// CSV cells hold space- or semicolon-separated IDs; JSONL arrays
		// arrive here already joined by spaces.
		for part := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ' ' || r == ';' || r == '[' || r == ']' || r == ',' }) {
			v, err := strconv.ParseInt(part, 10, 64)
			if err != nil {
				return row, false, lineErr(file, line, col("prefix"), "%q is not an integer block id", part)
			}
			row.q.PrefixBlockIDs = append(row.q.PrefixBlockIDs, v)
		}
	}
	return row, keepTokens(&row.q, zin, zout, opt, rep), nil
}

func readGenericCSV(r io.Reader, file string, opt ImportOptions, rep *ImportReport) ([]rawRow, error) {
	cr := newCSV(r)
	var want []string
	optional := map[string]bool{}
	for _, f := range MapFields {
		if c, ok := opt.Map[f]; ok {
			want = append(want, c)
		}
	}
	cols, err := csvHeader(cr, file, want, optional)
	if err != nil {
		return nil, err
	}
	classes := map[string]*string{}
	var rows []rawRow
	for {
		rec, line, err := csvRecord(cr, file)
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		rep.Rows++
		get := func(f string) (string, bool) {
			c, ok := opt.Map[f]
			if !ok {
				return "", false
			}
			i := cols[c]
			if i >= len(rec) {
				return "", false
			}
			return rec[i], true
		}
		row, keep, err := genericRow(get, file, line, opt, rep, classes)
		if err != nil {
			return nil, err
		}
		if keep {
			rows = append(rows, row)
		}
	}
}

func readGenericJSONL(r io.Reader, file string, opt ImportOptions, rep *ImportReport) ([]rawRow, error) {
	classes := map[string]*string{}
	var rows []rawRow
	err := eachJSONLine(r, file, func(line int64, b []byte) error {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("%s: line %d: %v", file, line, err)
		}
		rep.Rows++
		var ferr error
		get := func(f string) (string, bool) {
			k, ok := opt.Map[f]
			if !ok {
				return "", false
			}
			raw, ok := m[k]
			if !ok || string(raw) == "null" {
				return "", false
			}
			var s string
			if json.Unmarshal(raw, &s) == nil {
				return s, true
			}
			var arr []json.Number
			if raw[0] == '[' {
				if err := json.Unmarshal(raw, &arr); err != nil {
					ferr = lineErr(file, line, k, "not a list of numbers")
					return "", false
				}
				parts := make([]string, len(arr))
				for i, a := range arr {
					parts[i] = a.String()
				}
				return strings.Join(parts, " "), true
			}
			return string(raw), true
		}
		row, keep, err := genericRow(get, file, line, opt, rep, classes)
		if ferr != nil {
			return ferr
		}
		if err != nil {
			return err
		}
		if keep {
			rows = append(rows, row)
		}
		return nil
	})
	return rows, err
}
