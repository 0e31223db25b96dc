package replay

import (
	"slices"
	"time"
)

// Lateness summarises how late the loop was against the times it was
// asked to keep, in µs.
type Lateness struct {
	Count int64   `json:"count"`
	P50US float64 `json:"p50_us"`
	P99US float64 `json:"p99_us"`
	MaxUS float64 `json:"max_us"`
}

// lateRec keeps every lateness sample: a replay against a real engine has
// at most a few hundred thousand events.
type lateRec struct{ ns []int64 }

func (l *lateRec) add(d int64) {
	if d < 0 {
		d = 0
	}
	l.ns = append(l.ns, d)
}

func (l *lateRec) summary() Lateness {
	out := Lateness{Count: int64(len(l.ns))}
	if len(l.ns) == 0 {
		return out
	}
	s := slices.Clone(l.ns)
	slices.Sort(s)
	q := func(p float64) float64 {
		// Nearest rank: the smallest value with at least p of the sample at
		// or below it.
		i := int(float64(len(s))*p+0.999999999) - 1
		i = max(0, min(len(s)-1, i))
		return float64(s[i]) / float64(time.Microsecond)
	}
	out.P50US, out.P99US = q(0.5), q(0.99)
	out.MaxUS = float64(s[len(s)-1]) / float64(time.Microsecond)
	return out
}
