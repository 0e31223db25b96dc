// Package trace is the project's request-trace format: one Parquet row per
// request (when it arrives, how many input and output tokens it has, and
// optional session, class, prefix-cache, priority and deadline facts), with a
// fast validating streaming reader, a safe writer, seeded generators,
// importers for public traces, and summary statistics.
//
// The package is the only place that knows the on-disk layout; everything
// else (the simulator, replay, plots) works with []Request or a *Reader.
// It imports no other package of the project, never prints, and never reads
// a clock or a global random source: generators take an explicit seed so the
// same arguments always give byte-identical files.
//
// Reading: Open checks the footer (magic bytes, schema version, required
// columns and their physical types) and Read decodes row group by row
// group, column chunk by page, straight from each page's typed values into
// reused slices: about 30 M rows/s on one core with memory flat in the file
// length. Every row is validated on the way: nulls in required columns,
// tokens outside 1..MaxTokens, negative or backward arrivals, deadlines not
// after arrival, and duplicate request_ids. Duplicates are found exactly: a
// bitmap over the ID range holds dense IDs at one bit each (1.25 MB for
// 10 M rows numbered 0..n-1, in any order); IDs too sparse for that switch
// to a hash set (see idSet).
//
// Writing: Create validates the same way, buffers at most one row group
// (DefaultRowGroupRows), writes to a temporary file beside the target and
// renames it into place on Close, never replacing an existing file unless
// Overwrite(true) is given.
//
// Errors about content are *Error values naming the file, the 1-based row
// ("row 1" is the first request in the file) and the column. CSV and JSONL
// importers say "line N" instead, counting physical lines from 1 (the CSV
// header is line 1).
package trace

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// SchemaVersion is the version of the row layout written by this package.
// Readers accept files whose version is at most this one.
const SchemaVersion = 1

// MaxTokens bounds input_tokens and output_tokens: larger values are taken
// as corrupt input rather than a real request.
const MaxTokens = 10_000_000

// Request is one row of a trace. Times are int64 nanoseconds since the
// trace's first request; the optional facts are nil when unknown.
type Request struct {
	// RequestID is unique within a trace.
	RequestID int64 `parquet:"request_id"`
	// ArrivalNS is when the request arrives, in ns since the trace's first
	// request; non-decreasing from row to row.
	ArrivalNS int64 `parquet:"arrival_ns"`
	// InputTokens is the prompt length (>= 1).
	InputTokens int32 `parquet:"input_tokens"`
	// OutputTokens counts every generated token including the first, which
	// prefill produces (>= 1).
	OutputTokens int32 `parquet:"output_tokens"`
	// SessionID groups the turns of one conversation.
	SessionID *int64 `parquet:"session_id,optional"`
	// RequestClass is a free label (model, API, tenant) a policy may key on.
	RequestClass *string `parquet:"request_class,optional"`
	// PrefixBlockIDs names the prompt's prefix-cache blocks in order; equal
	// leading IDs across requests mean a shareable KV-cache prefix. Nil when
	// unknown.
	PrefixBlockIDs []int64 `parquet:"prefix_block_ids,list,optional"`
	// Priority: larger is more urgent.
	Priority *int32 `parquet:"priority,optional"`
	// DeadlineNS is the time, on the same clock as ArrivalNS, by which the
	// request should finish; after ArrivalNS.
	DeadlineNS *int64 `parquet:"deadline_ns,optional"`
}

// Arrival returns ArrivalNS as a Duration since the trace's first request.
func (r *Request) Arrival() time.Duration { return time.Duration(r.ArrivalNS) }

// Column names, as stored in the file.
const (
	ColRequestID      = "request_id"
	ColArrivalNS      = "arrival_ns"
	ColInputTokens    = "input_tokens"
	ColOutputTokens   = "output_tokens"
	ColSessionID      = "session_id"
	ColRequestClass   = "request_class"
	ColPrefixBlockIDs = "prefix_block_ids"
	ColPriority       = "priority"
	ColDeadlineNS     = "deadline_ns"
)

// Metadata is the trace's provenance, stored as Parquet file key/value
// metadata so it travels with the rows.
type Metadata struct {
	// SchemaVersion of the rows; the writer always stores SchemaVersion.
	SchemaVersion int
	// Name is a short human name, e.g. "default" or "azure-conv-2023".
	Name string
	// Source says how the trace was made: generator with its parameters and
	// seed, or importer with source file and its sha256.
	Source string
	// Licence of the data, where known (e.g. "CC-BY-4.0").
	Licence string
	// TimeQuantum is the resolution of the source timestamps (100ns for
	// Azure 2023, 1ms for Mooncake); 0 when arrivals are exact (generated).
	TimeQuantum time.Duration
	// Extra holds any further key/values; keys must not start with
	// "batchkit.".
	Extra map[string]string
}

// Metadata keys in the Parquet footer.
const (
	keyPrefix      = "batchkit."
	keySchema      = "batchkit.schema_version"
	keyName        = "batchkit.name"
	keySource      = "batchkit.source"
	keyLicence     = "batchkit.licence"
	keyTimeQuantum = "batchkit.time_quantum_ns"
)

// keyValues returns the metadata as sorted key/value pairs, so that equal
// Metadata always writes identical bytes.
func (m Metadata) keyValues() ([][2]string, error) {
	kv := [][2]string{
		{keySchema, strconv.Itoa(SchemaVersion)},
		{keyName, m.Name},
		{keySource, m.Source},
		{keyLicence, m.Licence},
		{keyTimeQuantum, strconv.FormatInt(int64(m.TimeQuantum), 10)},
	}
	if m.TimeQuantum < 0 {
		return nil, fmt.Errorf("metadata: negative time quantum %v", m.TimeQuantum)
	}
	for _, k := range slices.Sorted(maps.Keys(m.Extra)) {
		if len(k) >= len(keyPrefix) && k[:len(keyPrefix)] == keyPrefix {
			return nil, fmt.Errorf("metadata: extra key %q uses the reserved prefix %q", k, keyPrefix)
		}
		kv = append(kv, [2]string{k, m.Extra[k]})
	}
	return kv, nil
}

// parseMetadata rebuilds Metadata from footer key/values.
func parseMetadata(kv map[string]string) (Metadata, error) {
	var m Metadata
	v, ok := kv[keySchema]
	if !ok {
		return m, fmt.Errorf("metadata: no %s key (not written by batchkit's trace package?)", keySchema)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return m, fmt.Errorf("metadata: %s = %q is not a positive integer", keySchema, v)
	}
	if n > SchemaVersion {
		return m, fmt.Errorf("metadata: schema version %d is newer than this reader's %d", n, SchemaVersion)
	}
	m.SchemaVersion = n
	m.Name, m.Source, m.Licence = kv[keyName], kv[keySource], kv[keyLicence]
	if q, ok := kv[keyTimeQuantum]; ok && q != "" {
		ns, err := strconv.ParseInt(q, 10, 64)
		if err != nil || ns < 0 {
			return m, fmt.Errorf("metadata: %s = %q is not a non-negative integer", keyTimeQuantum, q)
		}
		m.TimeQuantum = time.Duration(ns)
	}
	for k, v := range kv {
		if len(k) >= len(keyPrefix) && k[:len(keyPrefix)] == keyPrefix {
			continue
		}
		if m.Extra == nil {
			m.Extra = map[string]string{}
		}
		m.Extra[k] = v
	}
	return m, nil
}

// FindShipped looks for rel (a path such as "traces/default.parquet") in
// the current directory and its parents, so that commands find the
// repository's shipped traces from any folder inside it. It returns the
// path relative to the current directory when it can, and rel itself when
// nothing is found (the caller's open then names it in its error).
func FindShipped(rel string) string {
	wd, err := os.Getwd()
	if err != nil {
		return rel
	}
	for dir := wd; ; {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			if r, err := filepath.Rel(wd, p); err == nil {
				return r
			}
			return p
		}
		up := filepath.Dir(dir)
		if up == dir {
			return rel
		}
		dir = up
	}
}
