package policies

import (
	"time"
)

// aimd is Clipper's adaptive batch cap: after each batch, grow the cap by
// add if the batch's engine time stayed within slo, else multiply it by
// mult (Clipper backs off by 10%). Requests go as soon as the engine can
// take them, up to the cap, after an optional window on the oldest request.
type aimd struct {
	core
	spec     string
	q        ring[Request]
	slo      time.Duration
	window   time.Duration
	maxBatch int
	add      float64
	mult     float64
	cap      float64
}

// Ignores implements EventFilter: Step only re-evaluates the queue on
// EventAccepted. EventRequestDone must still be seen: a decision at it
// uses the state before the EventBatchDone that follows.
func (p *aimd) Ignores() EventMask { return MaskOf(EventAccepted) }

func (p *aimd) Spec() string { return p.spec }
func (p *aimd) Queued() int  { return p.q.len() }

func (p *aimd) limit() int { return max(1, int(p.cap)) }

func (p *aimd) Step(now time.Duration, ev Event, eng Engine) Decision {
	return *p.StepRef(now, &ev, eng)
}

// StepRef implements RefStepper.
func (p *aimd) StepRef(now time.Duration, ev *Event, eng Engine) *Decision {
	p.begin(eng)
	switch ev.Kind {
	case EventArrival:
		p.q.push(ev.Request)
	case EventBatchDone:
		if ev.Service > p.slo {
			p.cap = max(1, p.cap*p.mult)
		} else {
			p.cap = min(float64(p.maxBatch), p.cap+p.add)
		}
	}
	wake := NoWake
	for p.q.len() > 0 && p.canDispatch() {
		if p.q.len() < p.limit() && p.window > 0 {
			fire := p.tm.at(now, p.q.front().Arrival+p.window)
			if now < fire {
				wake = fire
				break
			}
		}
		p.emitFront(&p.q, p.room(p.q.len(), p.limit()))
	}
	return p.decisionRef(now, wake)
}

func newAIMD(a *Args) (Policy, error) {
	p := &aimd{
		slo:      a.Duration("slo"),
		window:   a.Duration("window"),
		maxBatch: a.Int("max_batch"),
		add:      a.Float("add"),
		mult:     a.Float("mult"),
	}
	start := a.Int("start")
	p.tm.tick = a.Duration(TickKey)
	if err := a.Err(); err != nil {
		return nil, err
	}
	switch {
	case p.slo <= 0:
		return nil, a.Invalid("slo", "must be > 0")
	case p.window < 0:
		return nil, a.Invalid("window", "must be ≥ 0")
	case p.maxBatch < 1:
		return nil, a.Invalid("max_batch", "must be ≥ 1")
	case p.add <= 0:
		return nil, a.Invalid("add", "must be > 0")
	case p.mult <= 0 || p.mult >= 1:
		return nil, a.Invalid("mult", "must be between 0 and 1, exclusive")
	case start < 1 || start > p.maxBatch:
		return nil, a.Invalid("start", "must be between 1 and max_batch")
	case p.tm.tick < 0:
		return nil, a.Invalid(TickKey, "must be ≥ 0")
	}
	p.cap = float64(start)
	p.spec = a.Spec()
	return p, nil
}

func init() {
	mustRegister(Def{Name: "aimd", Meaning: "Clipper's additive-increase/multiplicative-decrease of the batch cap against a batch-time slo",
		Params: []Param{
			{"slo", "20ms", "batch engine time the cap must keep within"},
			{"max_batch", "32", "the cap never grows past this"},
			{"start", "1", "initial cap"},
			{"add", "1", "cap increase after a batch within slo"},
			{"mult", "0.9", "cap factor after a batch over slo (Clipper: 0.9)"},
			{"window", "0s", "longest the oldest request waits for a batch to fill the cap (0s = none)"},
		}, New: newAIMD})
}
