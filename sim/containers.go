package sim

import "fmt"

// ring is a FIFO on a power-of-two slice.
type ring[T any] struct {
	buf  []T
	head int
	n    int
}

func (r *ring[T]) len() int { return r.n }
func (r *ring[T]) front() T { return r.buf[r.head] }

func (r *ring[T]) push(x T) {
	if r.n == len(r.buf) {
		nb := make([]T, max(16, 2*len(r.buf)))
		for i := 0; i < r.n; i++ {
			nb[i] = r.buf[(r.head+i)&(len(r.buf)-1)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = x
	r.n++
}

func (r *ring[T]) pop() T {
	x := r.buf[r.head]
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return x
}

// table maps consecutive keys lo..hi-1 to values in a ring, for state keyed
// by a counter (request sequence numbers, batch ids): no hashing, and
// memory proportional to the span between the oldest live key and the
// newest, which is the work in flight.
type table[T any] struct {
	buf    []T
	used   []bool
	lo, hi int64
	live   int
}

func (t *table[T]) at(k int64) *T { return &t.buf[k&int64(len(t.buf)-1)] }

func (t *table[T]) add(k int64) *T {
	if k != t.hi {
		panic(fmt.Sprintf("sim: table add %d, want %d", k, t.hi))
	}
	if t.hi-t.lo == int64(len(t.buf)) {
		n := max(64, 2*len(t.buf))
		nb, nu := make([]T, n), make([]bool, n)
		for i := t.lo; i < t.hi; i++ {
			nb[i&int64(n-1)] = t.buf[i&int64(len(t.buf)-1)]
			nu[i&int64(n-1)] = t.used[i&int64(len(t.buf)-1)]
		}
		t.buf, t.used = nb, nu
	}
	t.hi++
	t.live++
	t.used[k&int64(len(t.buf)-1)] = true
	return t.at(k)
}

func (t *table[T]) free(k int64) {
	m := int64(len(t.buf) - 1)
	t.used[k&m] = false
	t.live--
	for t.lo < t.hi && !t.used[t.lo&m] {
		t.lo++
	}
}

// minHeap is a binary min-heap of T ordered by O's less, which must be a
// total order (ties broken by a sequence number) so that runs are
// deterministic; O is a zero-size type naming the order.
type minHeap[T any, O interface{ less(x, y *T) bool }] struct{ a []T }

func (h *minHeap[T, O]) len() int { return len(h.a) }
func (h *minHeap[T, O]) min() *T  { return &h.a[0] }

func (h *minHeap[T, O]) push(x T) {
	var o O
	h.a = append(h.a, x)
	for i := len(h.a) - 1; i > 0; {
		p := (i - 1) / 2
		if !o.less(&h.a[i], &h.a[p]) {
			break
		}
		h.a[i], h.a[p] = h.a[p], h.a[i]
		i = p
	}
}

func (h *minHeap[T, O]) pop() T {
	var o O
	x := h.a[0]
	n := len(h.a) - 1
	h.a[0] = h.a[n]
	h.a = h.a[:n]
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && o.less(&h.a[r], &h.a[l]) {
			c = r
		}
		if !o.less(&h.a[c], &h.a[i]) {
			break
		}
		h.a[i], h.a[c] = h.a[c], h.a[i]
		i = c
	}
	return x
}

// finHeap orders running sequences by the step at which they finish, ties
// by sequence number so finishing order is deterministic. It is minHeap
// written out for finishItem: it sits on the event loop, where the generic
// version's comparisons cost 7 % of the continuous benchmark.
type finHeap struct{ a []finishItem }

func (h *finHeap) len() int        { return len(h.a) }
func (h *finHeap) min() finishItem { return h.a[0] }
func less(x, y finishItem) bool    { return x.step < y.step || (x.step == y.step && x.seq < y.seq) }

func (h *finHeap) push(x finishItem) {
	h.a = append(h.a, x)
	i := len(h.a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !less(h.a[i], h.a[p]) {
			break
		}
		h.a[i], h.a[p] = h.a[p], h.a[i]
		i = p
	}
}

func (h *finHeap) pop() finishItem { return h.remove(0) }

// remove takes out the item at index i.
func (h *finHeap) remove(i int) finishItem {
	x := h.a[i]
	n := len(h.a) - 1
	h.a[i] = h.a[n]
	h.a = h.a[:n]
	if i == n {
		return x
	}
	for i > 0 && less(h.a[i], h.a[(i-1)/2]) {
		p := (i - 1) / 2
		h.a[i], h.a[p] = h.a[p], h.a[i]
		i = p
	}
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && less(h.a[r], h.a[l]) {
			c = r
		}
		if !less(h.a[c], h.a[i]) {
			break
		}
		h.a[i], h.a[c] = h.a[c], h.a[i]
		i = c
	}
	return x
}
