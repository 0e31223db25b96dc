package policies

import (
	"time"
)

type edfItem struct {
	r  Request
	dl time.Duration // absolute deadline; NoWake when none
}

// deadline serves earliest deadline first. At each chance it dispatches the
// largest batch whose predicted engine time still lets the earliest deadline
// in it be met; it waits for more requests only while the earliest deadline
// still leaves room for the whole queue as one batch, and at most max_wait.
// A request that cannot meet its deadline even alone is dropped, or with
// late=mark kept and served after every request that can still make it.
type deadline struct {
	core
	spec     string
	q        ring[edfItem] // sorted by dl, ties in arrival order
	late     ring[Request]
	maxBatch int
	slo      time.Duration
	maxWait  time.Duration
	mark     bool
	svc      serviceModel
	lateTm   timer // separate from core.tm so the two wake-ups do not re-arm each other
}

func (p *deadline) Spec() string { return p.spec }
func (p *deadline) Queued() int  { return p.q.len() + p.late.len() }

func (p *deadline) push(r Request) {
	dl := r.Deadline
	if dl <= 0 {
		dl = NoWake
		if p.slo > 0 {
			dl = r.Arrival + p.slo
		}
	}
	i := p.q.len()
	for i > 0 && p.q.at(i-1).dl > dl {
		i--
	}
	p.q.insert(i, edfItem{r: r, dl: dl})
}

// lateAfter is the last moment the head can still start alone and finish
// in time; NoWake when it has no deadline.
func (p *deadline) lateAfter() time.Duration {
	dl := p.q.front().dl
	if dl == NoWake {
		return NoWake
	}
	return dl - p.svc.predict(1)
}

func (p *deadline) oldest() time.Duration {
	o := NoWake
	for i := 0; i < p.q.len(); i++ {
		o = min(o, p.q.at(i).r.Arrival)
	}
	return o
}

func (p *deadline) Step(now time.Duration, ev Event, eng Engine) Decision {
	return *p.StepRef(now, &ev, eng)
}

// StepRef implements RefStepper.
func (p *deadline) StepRef(now time.Duration, ev *Event, eng Engine) *Decision {
	p.begin(eng)
	switch ev.Kind {
	case EventArrival:
		p.push(ev.Request)
	case EventBatchDone:
		p.svc.observe(ev.BatchSize, ev.Service)
	}
	wake := NoWake
	for p.Queued() > 0 {
		if p.q.len() > 0 && now > p.lateAfter() {
			it := p.q.pop()
			if p.mark {
				p.late.push(it.r)
			} else {
				p.drop(it.r, Dropped, "deadline")
			}
			continue
		}
		if !p.canDispatch() {
			if p.q.len() > 0 && p.lateAfter() != NoWake {
				// Wake to give up on the head when it can no longer make it.
				wake = p.lateTm.at(now, p.lateAfter()+1)
			}
			break
		}
		if p.q.len() == 0 {
			// Only late requests remain: they gain nothing by waiting.
			p.emitFront(&p.late, p.room(p.late.len(), p.maxBatch))
			continue
		}
		head := p.q.front().dl
		lim := p.room(p.q.len(), p.maxBatch)
		b := lim
		for b > 1 && now+p.svc.predict(b) > head {
			b--
		}
		if b < p.maxBatch {
			want := p.oldest() + p.maxWait
			if head != NoWake {
				n := min(p.q.len(), p.maxBatch)
				want = min(want, head-max(p.svc.predict(n), p.svc.predict(1)))
			}
			if fire := p.tm.at(now, want); now < fire {
				wake = fire
				break
			}
		}
		p.openBatch()
		for range b {
			p.add(p.q.pop().r)
		}
		p.closeBatch()
	}
	return p.decisionRef(now, wake)
}

func newDeadline(a *Args) (Policy, error) {
	p := &deadline{
		maxBatch: a.Int("max_batch"),
		slo:      a.Duration("slo"),
		maxWait:  a.Duration("max_wait"),
		mark:     a.Choice("late", "drop", "mark") == "mark",
	}
	base, per := a.Duration("batch_base"), a.Duration("batch_per")
	p.tm.tick = a.Duration(TickKey)
	p.lateTm.tick = p.tm.tick
	if err := a.Err(); err != nil {
		return nil, err
	}
	switch {
	case p.maxBatch < 1:
		return nil, a.Invalid("max_batch", "must be ≥ 1")
	case p.slo < 0:
		return nil, a.Invalid("slo", "must be ≥ 0 (0 = only the requests' own deadlines)")
	case p.maxWait < 0:
		return nil, a.Invalid("max_wait", "must be ≥ 0")
	case base < 0:
		return nil, a.Invalid("batch_base", "must be ≥ 0")
	case per < 0:
		return nil, a.Invalid("batch_per", "must be ≥ 0")
	case p.tm.tick < 0:
		return nil, a.Invalid(TickKey, "must be ≥ 0")
	}
	p.svc = newServiceModel(p.maxBatch, base, per)
	p.spec = a.Spec()
	return p, nil
}

func init() {
	mustRegister(Def{Name: "deadline", Meaning: "earliest deadline first; the largest batch that still meets the deadlines; drop or mark late what cannot",
		Params: append([]Param{
			{"max_batch", "8", "largest batch"},
			{"slo", "0s", "deadline for requests without one: arrival + slo (0s = none)"},
			{"max_wait", "1ms", "longest the oldest request waits for a batch to grow"},
			{"late", "drop", "a request that cannot meet its deadline: drop, or mark (serve it after the rest)"},
		}, batchPriorParams...), New: newDeadline})
}
