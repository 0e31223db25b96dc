package policies

import (
	"slices"
	"time"
)

// triton follows Triton Inference Server's dynamic batcher: dispatch at once
// the largest preferred batch size that the queue can fill, else wait until
// the oldest request has waited max_queue_delay and dispatch what there is;
// reject arrivals beyond max_queue_size; a request queued longer than
// timeout is rejected, or with timeout_action=delay moved behind every
// request that has not timed out.
type triton struct {
	core
	spec      string
	q         ring[Request]
	late      ring[Request] // timed out under timeout_action=delay
	maxBatch  int
	preferred []int // ascending
	delay     time.Duration
	maxQueue  int
	timeout   time.Duration
	delayLate bool
}

func (p *triton) Spec() string { return p.spec }
func (p *triton) Queued() int  { return p.q.len() + p.late.len() }

func (p *triton) oldest() time.Duration {
	switch {
	case p.late.len() > 0:
		// Everything in late timed out, so it is older than the main queue.
		return p.late.front().Arrival
	case p.q.len() > 0:
		return p.q.front().Arrival
	}
	return NoWake
}

// want is the earliest moment something is due: a queue timeout, or the
// oldest request's max_queue_delay when the engine could take a batch.
func (p *triton) want() time.Duration {
	w := NoWake
	if p.timeout > 0 && p.q.len() > 0 {
		w = p.q.front().Arrival + p.timeout
	}
	if p.canDispatch() && p.Queued() > 0 {
		w = min(w, p.oldest()+p.delay)
	}
	return w
}

// expire handles the main queue's requests whose timeout has passed.
func (p *triton) expire(now time.Duration) bool {
	moved := false
	for p.timeout > 0 && p.q.len() > 0 && p.q.front().Arrival+p.timeout <= now {
		r := p.q.pop()
		if p.delayLate {
			p.late.push(r)
		} else {
			p.drop(r, Dropped, "queue timeout")
		}
		moved = true
	}
	return moved
}

func (p *triton) Step(now time.Duration, ev Event, eng Engine) Decision {
	return *p.StepRef(now, &ev, eng)
}

// StepRef implements RefStepper.
func (p *triton) StepRef(now time.Duration, ev *Event, eng Engine) *Decision {
	p.begin(eng)
	if ev.Kind == EventArrival {
		if p.maxQueue > 0 && p.Queued() >= p.maxQueue {
			p.drop(ev.Request, Rejected, "queue full")
		} else {
			p.q.push(ev.Request)
		}
	}
	wake := NoWake
	for {
		want := p.want()
		fire := p.tm.at(now, want)
		fired := fire != NoWake && now >= fire
		if fired && p.expire(now) {
			continue
		}
		if p.Queued() == 0 || !p.canDispatch() {
			if !fired {
				wake = fire
			}
			break
		}
		lim := p.room(p.Queued(), p.maxBatch)
		n := 0
		if fired && p.oldest()+p.delay <= now {
			n = lim
		} else if i, _ := slices.BinarySearch(p.preferred, lim+1); i > 0 {
			n = p.preferred[i-1]
		}
		if n == 0 {
			wake = fire
			break
		}
		p.openBatch()
		for range n {
			if p.q.len() > 0 {
				p.add(p.q.pop())
			} else {
				p.add(p.late.pop())
			}
		}
		p.closeBatch()
	}
	return p.decisionRef(now, wake)
}

func newTriton(a *Args) (Policy, error) {
	p := &triton{
		maxBatch:  a.Int("max_batch"),
		preferred: a.Ints("preferred"),
		delay:     a.Duration("max_queue_delay"),
		maxQueue:  a.Int("max_queue_size"),
		timeout:   a.Duration("timeout"),
		delayLate: a.Choice("timeout_action", "reject", "delay") == "delay",
	}
	p.tm.tick = a.Duration(TickKey)
	if err := a.Err(); err != nil {
		return nil, err
	}
	switch {
	case p.maxBatch < 1:
		return nil, a.Invalid("max_batch", "must be ≥ 1")
	case p.delay < 0:
		return nil, a.Invalid("max_queue_delay", "must be ≥ 0")
	case p.maxQueue < 0:
		return nil, a.Invalid("max_queue_size", "must be ≥ 0 (0 = unbounded)")
	case p.timeout < 0:
		return nil, a.Invalid("timeout", "must be ≥ 0 (0 = none)")
	case p.tm.tick < 0:
		return nil, a.Invalid(TickKey, "must be ≥ 0")
	}
	for i, s := range p.preferred {
		if s < 1 || s > p.maxBatch || (i > 0 && s <= p.preferred[i-1]) {
			return nil, a.Invalid("preferred", "must be ascending sizes between 1 and max_batch")
		}
	}
	if len(p.preferred) == 0 {
		// Triton treats max_batch_size as the preferred size when none is given.
		p.preferred = []int{p.maxBatch}
	}
	p.spec = a.Spec()
	return p, nil
}

func init() {
	mustRegister(Def{Name: "triton", Meaning: "Triton's dynamic batcher: largest preferred size at once, else wait max_queue_delay; queue limit and timeouts",
		Params: []Param{
			{"max_batch", "8", "largest batch"},
			{"preferred", "", "preferred batch sizes, ascending, '/'-separated, e.g. 4/8 (empty = max_batch)"},
			{"max_queue_delay", "1ms", "longest the oldest request waits for a preferred batch (Triton's own default is 0)"},
			{"max_queue_size", "0", "reject arrivals when this many are queued (0 = unbounded)"},
			{"timeout", "0s", "per-request queue timeout (0s = none)"},
			{"timeout_action", "reject", "what a timeout does: reject (drop the request) or delay (serve it after the rest)"},
		}, New: newTriton})
}
