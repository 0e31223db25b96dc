package policies

import (
	"fmt"
	"time"
)

// ring is a FIFO of T that grows by doubling and never shrinks, so a queue
// that has reached its steady-state size costs no allocation per request.
type ring[T any] struct {
	buf  []T
	head int
	n    int
}

func (r *ring[T]) len() int { return r.n }

func (r *ring[T]) at(i int) T { return r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *ring[T]) front() T { return r.buf[r.head] }

func (r *ring[T]) grow() {
	c := 2 * len(r.buf)
	if c == 0 {
		c = 16
	}
	buf := make([]T, c)
	for i := 0; i < r.n; i++ {
		buf[i] = r.at(i)
	}
	r.buf, r.head = buf, 0
}

func (r *ring[T]) push(x T) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = x
	r.n++
}

func (r *ring[T]) pop() T {
	var zero T
	x := r.buf[r.head]
	r.buf[r.head] = zero
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return x
}

// popN appends the first n elements to dst and removes them, for the
// batches a policy dispatches on every Step: element by element, as
// batches are mostly small and a memmove call costs more than the copy.
func (r *ring[T]) popN(dst []T, n int) []T {
	var zero T
	l := len(dst)
	if cap(dst)-l < n {
		dst = append(dst, make([]T, n)...)
	} else {
		dst = dst[:l+n]
	}
	out := dst[l : l+n]
	mask := len(r.buf) - 1
	for i := range out {
		j := (r.head + i) & mask
		out[i] = r.buf[j]
		r.buf[j] = zero
	}
	r.head = (r.head + n) & mask
	r.n -= n
	return dst
}

// insert puts x at position i (0 = front), shifting the later elements back.
func (r *ring[T]) insert(i int, x T) {
	if r.n == len(r.buf) {
		r.grow()
	}
	mask := len(r.buf) - 1
	for j := r.n; j > i; j-- {
		r.buf[(r.head+j)&mask] = r.buf[(r.head+j-1)&mask]
	}
	r.buf[(r.head+i)&mask] = x
	r.n++
}

// timer models one OS timer of granularity tick. A policy asks at(armAt,
// want) for the moment its wake-up for want really fires: exactly want when
// tick is 0, else armAt plus (want-armAt) rounded up to a multiple of tick.
// The timer stays armed while want stays the same, so asking again at a
// later now does not re-round relative to that now and push the firing
// further out on every Step.
type timer struct {
	tick  time.Duration
	want  time.Duration
	fire  time.Duration
	armed bool
}

func (t *timer) at(armAt, want time.Duration) time.Duration {
	if t.tick <= 0 || want == NoWake {
		return want
	}
	if t.armed && t.want == want {
		return t.fire
	}
	d := want - armAt
	if d < 0 {
		d = 0
	}
	t.want, t.fire, t.armed = want, armAt+roundUp(d, t.tick), true
	return t.fire
}

// period is what a timer armed for d fires after.
func (t *timer) period(d time.Duration) time.Duration {
	if t.tick <= 0 {
		return d
	}
	return roundUp(d, t.tick)
}

func roundUp(d, tick time.Duration) time.Duration {
	if r := d % tick; r != 0 {
		return d + tick - r
	}
	return d
}

// core is the state every built-in policy shares: the decision buffers,
// reused across Steps, and the engine capacity left in the current Step.
type core struct {
	tm    timer
	out   []Request
	start int // index in out where the open batch starts
	free  int // requests the engine can still accept in this Step
	nb    int // batches the engine can still accept in this Step
	// dec holds the Step's batches and drops as it builds them, so that
	// StepRef hands it out without copying.
	dec Decision
}

func (c *core) begin(eng Engine) {
	// Batches handed out earlier alias out; they are valid only until this
	// call, as Decision documents.
	c.out = c.out[:0]
	c.dec.Batches = c.dec.Batches[:0]
	c.dec.Drops = c.dec.Drops[:0]
	c.free, c.nb = eng.Free, eng.Batches
}

func (c *core) canDispatch() bool { return c.free > 0 && c.nb > 0 }

// room is how many requests the next batch may hold given n queued and a
// batch cap.
func (c *core) room(n, cap int) int { return min(n, cap, c.free) }

func (c *core) openBatch() { c.start = len(c.out) }

func (c *core) add(r Request) { c.out = append(c.out, r) }

func (c *core) closeBatch() {
	n := len(c.out) - c.start
	if n <= 0 || n > c.free || c.nb <= 0 {
		panic(fmt.Sprintf("policies: batch of %d with engine free %d and batches %d", n, c.free, c.nb))
	}
	// A full slice expression so that a driver appending to a Batch cannot
	// overwrite the next one.
	c.dec.Batches = append(c.dec.Batches, Batch(c.out[c.start:len(c.out):len(c.out)]))
	c.free -= n
	c.nb--
}

func (c *core) emitFront(q *ring[Request], n int) {
	c.openBatch()
	c.out = q.popN(c.out, n)
	c.closeBatch()
}

func (c *core) drop(r Request, reason DropReason, why string) {
	c.dec.Drops = append(c.dec.Drops, Drop{Request: r, Reason: reason, Why: why})
}

func (c *core) decision(now, wake time.Duration) Decision {
	if wake < now {
		panic(fmt.Sprintf("policies: wake %v before now %v", wake, now))
	}
	return Decision{Batches: c.dec.Batches, Drops: c.dec.Drops, Wake: wake}
}

// decisionRef is decision kept in the policy, for RefStepper.
func (c *core) decisionRef(now, wake time.Duration) *Decision {
	if wake < now {
		panic(fmt.Sprintf("policies: wake %v before now %v", wake, now))
	}
	c.dec.Wake = wake
	return &c.dec
}

// serviceModel predicts how long a batch of b requests takes on the engine,
// from EventBatchDone observations: an EWMA per batch size, falling back to
// a linear prior base+per*b when configured, else to the nearest observed
// size. With neither it predicts 0, so the policy plans on waiting alone.
type serviceModel struct {
	est  []time.Duration
	seen []bool
	base time.Duration
	per  time.Duration
}

func newServiceModel(maxBatch int, base, per time.Duration) serviceModel {
	return serviceModel{est: make([]time.Duration, maxBatch+1), seen: make([]bool, maxBatch+1), base: base, per: per}
}

func (m *serviceModel) observe(size int, svc time.Duration) {
	if size < 1 || svc < 0 {
		return
	}
	size = min(size, len(m.est)-1)
	if !m.seen[size] {
		m.est[size], m.seen[size] = svc, true
		return
	}
	// Weight 1/4: recent batches dominate after a handful of samples.
	m.est[size] += (svc - m.est[size]) / 4
}

func (m *serviceModel) predict(b int) time.Duration {
	b = max(1, min(b, len(m.est)-1))
	if m.seen[b] {
		return m.est[b]
	}
	if m.base > 0 || m.per > 0 {
		return m.base + m.per*time.Duration(b)
	}
	for i := b - 1; i >= 1; i-- {
		if m.seen[i] {
			return m.est[i]
		}
	}
	for i := b + 1; i < len(m.est); i++ {
		if m.seen[i] {
			return m.est[i]
		}
	}
	return 0
}
