package trace

import (
	"errors"
	"io"
	"slices"
)

// SortFile rewrites the trace at in, sorted by arrival (stably: equal
// arrivals keep file order, request IDs are kept), to out. It holds the
// whole trace in memory (about 80 bytes a row plus prefix lists). It
// reports whether the input was out of order.
func SortFile(in, out string, opts ...CreateOption) (reordered bool, err error) {
	r, err := Open(in, AllowUnsorted())
	if err != nil {
		return false, err
	}
	defer r.Close()
	reqs := make([]Request, 0, min(r.NumRows(), 1<<20))
	buf := make([]Request, chunkRows)
	for {
		n, err := r.Read(buf)
		reqs = append(reqs, buf[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, err
		}
	}
	byArrival := func(a, b Request) int { return cmpInt64(a.ArrivalNS, b.ArrivalNS) }
	reordered = !slices.IsSortedFunc(reqs, byArrival)
	slices.SortStableFunc(reqs, byArrival)
	meta := r.Meta()
	if reordered {
		if meta.Extra == nil {
			meta.Extra = map[string]string{}
		}
		meta.Extra["sorted_by"] = "batchkit trace sort (stable by arrival_ns)"
	}
	return reordered, WriteFile(out, meta, reqs, opts...)
}
