package trace

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
)

// Stats summarises a trace. Quantiles are exact (linear interpolation
// between the two nearest ranks, like numpy's default), computed from
// per-value counts so memory is bounded by the number of distinct lengths,
// not the number of rows.
type Stats struct {
	Requests int64   `json:"requests"`
	SpanS    float64 `json:"span_s"`
	// RatePerS is Requests / SpanS (0 when every request arrives at once).
	RatePerS float64 `json:"rate_per_s"`
	// InterarrivalCV is the standard deviation of the gaps between
	// consecutive arrivals over their mean (1 for Poisson).
	InterarrivalCV float64 `json:"interarrival_cv"`
	// Peak1s and Peak1min count requests in the busiest aligned 1 s and
	// 1 min windows since the first arrival.
	Peak1s         int64      `json:"peak_1s_requests"`
	Peak1min       int64      `json:"peak_1min_requests"`
	Peak1minRate   float64    `json:"peak_1min_rate_per_s"`
	InputTokens    TokenStats `json:"input_tokens"`
	OutputTokens   TokenStats `json:"output_tokens"`
	WithSession    int64      `json:"with_session"`
	WithPrefix     int64      `json:"with_prefix_blocks"`
	WithClass      int64      `json:"with_request_class"`
	WithPriority   int64      `json:"with_priority"`
	WithDeadline   int64      `json:"with_deadline"`
	DistinctClass  int        `json:"distinct_request_classes"`
	Warnings       []string   `json:"warnings,omitempty"`
	firstArrival   int64
	lastArrival    int64
	gapMean, gapM2 float64
	gaps           int64
	bin1s, bin1m   int64
	cnt1s, cnt1m   int64
	in, out        tokenCounts
	classes        map[string]struct{}
}

// TokenStats summarises one token column.
type TokenStats struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  int32   `json:"max"`
}

// tokenCounts counts each length: a dense array for the common short
// lengths, a map for the long tail.
type tokenCounts struct {
	dense [1 << 16]int64
	tail  map[int32]int64
	n     int64
	sum   float64
	max   int32
}

func (c *tokenCounts) add(v int32) {
	if v < int32(len(c.dense)) {
		c.dense[v]++
	} else {
		if c.tail == nil {
			c.tail = map[int32]int64{}
		}
		c.tail[v]++
	}
	c.n++
	c.sum += float64(v)
	c.max = max(c.max, v)
}

// rank returns the k-th smallest value (0-based).
func (c *tokenCounts) rank(k int64, tailKeys []int32) int32 {
	for v, n := range c.dense {
		if k < n {
			return int32(v)
		}
		k -= n
	}
	for _, v := range tailKeys {
		if n := c.tail[v]; k < n {
			return v
		} else {
			k -= n
		}
	}
	return c.max
}

func (c *tokenCounts) stats() TokenStats {
	if c.n == 0 {
		return TokenStats{}
	}
	keys := make([]int32, 0, len(c.tail))
	for v := range c.tail {
		keys = append(keys, v)
	}
	slices.Sort(keys)
	q := func(p float64) float64 {
		h := p * float64(c.n-1)
		lo := int64(math.Floor(h))
		a := float64(c.rank(lo, keys))
		if lo+1 >= c.n {
			return a
		}
		b := float64(c.rank(lo+1, keys))
		return a + (h-float64(lo))*(b-a)
	}
	return TokenStats{Mean: c.sum / float64(c.n), P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: c.max}
}

// Add folds rows, in trace order, into the summary.
func (s *Stats) Add(reqs []Request) {
	for i := range reqs {
		q := &reqs[i]
		a := q.ArrivalNS
		if s.Requests == 0 {
			s.firstArrival, s.lastArrival = a, a
			s.bin1s, s.bin1m = 0, 0
		} else {
			gap := float64(a - s.lastArrival)
			s.gaps++
			d := gap - s.gapMean
			s.gapMean += d / float64(s.gaps)
			s.gapM2 += d * (gap - s.gapMean)
			s.lastArrival = a
		}
		rel := a - s.firstArrival
		if b := rel / 1e9; b != s.bin1s {
			s.bin1s, s.cnt1s = b, 0
		}
		if b := rel / 60e9; b != s.bin1m {
			s.bin1m, s.cnt1m = b, 0
		}
		s.cnt1s++
		s.cnt1m++
		s.Peak1s = max(s.Peak1s, s.cnt1s)
		s.Peak1min = max(s.Peak1min, s.cnt1m)
		s.Requests++
		s.in.add(q.InputTokens)
		s.out.add(q.OutputTokens)
		if q.SessionID != nil {
			s.WithSession++
		}
		if q.PrefixBlockIDs != nil {
			s.WithPrefix++
		}
		if q.RequestClass != nil {
			s.WithClass++
			if s.classes == nil {
				s.classes = map[string]struct{}{}
			}
			if len(s.classes) < 1<<16 {
				s.classes[*q.RequestClass] = struct{}{}
			}
		}
		if q.Priority != nil {
			s.WithPriority++
		}
		if q.DeadlineNS != nil {
			s.WithDeadline++
		}
	}
}

// Finish computes the derived figures; call it once after the last Add.
func (s *Stats) Finish() {
	s.SpanS = float64(s.lastArrival-s.firstArrival) / 1e9
	if s.SpanS > 0 {
		s.RatePerS = float64(s.Requests) / s.SpanS
	} else if s.Requests > 1 {
		s.Warnings = append(s.Warnings, "all requests arrive at the same instant (closed-loop order?): rate and inter-arrival CV are 0")
	}
	if s.gaps > 0 && s.gapMean > 0 {
		s.InterarrivalCV = math.Sqrt(s.gapM2/float64(s.gaps)) / s.gapMean
	}
	s.Peak1minRate = float64(s.Peak1min) / 60
	s.InputTokens, s.OutputTokens = s.in.stats(), s.out.stats()
	s.DistinctClass = len(s.classes)
	if s.Requests < 100 && s.Requests > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("only %d requests: p99 is close to the maximum", s.Requests))
	}
}

// ComputeStats streams r to its end and summarises it.
func ComputeStats(r *Reader) (*Stats, error) {
	s := &Stats{}
	buf := make([]Request, chunkRows)
	for {
		n, err := r.Read(buf)
		s.Add(buf[:n])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	s.Finish()
	return s, nil
}

// StatsFile summarises the trace at path.
func StatsFile(path string) (*Stats, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return ComputeStats(r)
}

// WriteTable prints s as an aligned human-readable table.
func (s *Stats) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "requests\t%d\n", s.Requests)
	fmt.Fprintf(tw, "span\t%.3f s\n", s.SpanS)
	fmt.Fprintf(tw, "mean rate\t%.3f req/s\n", s.RatePerS)
	fmt.Fprintf(tw, "inter-arrival CV\t%.3f\n", s.InterarrivalCV)
	fmt.Fprintf(tw, "peak 1 s\t%d req\n", s.Peak1s)
	fmt.Fprintf(tw, "peak 1 min\t%d req (%.3f req/s)\n", s.Peak1min, s.Peak1minRate)
	fmt.Fprintf(tw, "\tmean\tp50\tp90\tp99\tmax\n")
	for _, row := range []struct {
		name string
		t    TokenStats
	}{{"input tokens", s.InputTokens}, {"output tokens", s.OutputTokens}} {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%d\n", row.name, row.t.Mean, row.t.P50, row.t.P90, row.t.P99, row.t.Max)
	}
	if s.WithSession+s.WithPrefix+s.WithClass+s.WithPriority+s.WithDeadline > 0 {
		fmt.Fprintf(tw, "with session / prefix / class (distinct) / priority / deadline\t%d / %d / %d (%d) / %d / %d\n",
			s.WithSession, s.WithPrefix, s.WithClass, s.DistinctClass, s.WithPriority, s.WithDeadline)
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(tw, "warning\t%s\n", warn)
	}
	return tw.Flush()
}
