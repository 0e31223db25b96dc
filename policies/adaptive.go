package policies

import (
	"math"
	"time"
)

// adaptive sizes its window from an estimate of the arrival rate; the rule
// and its sources are in the package doc.
type adaptive struct {
	core
	spec      string
	q         ring[Request]
	tau       float64 // seconds
	maxWindow time.Duration
	target    int
	theta     float64
	slo       time.Duration
	svc       serviceModel

	count   float64       // exponentially decayed arrival count / tau, at lastArr
	lastArr time.Duration // time of the last arrival
	rate    float64       // bias-corrected λ̂ per second, frozen between arrivals
}

// Ignores implements EventFilter: Step only re-evaluates the queue on
// EventAccepted. EventRequestDone must still be seen: a decision at it
// uses the state before the EventBatchDone that follows.
func (p *adaptive) Ignores() EventMask { return MaskOf(EventAccepted) }

func (p *adaptive) Spec() string { return p.spec }
func (p *adaptive) Queued() int  { return p.q.len() }

// observe updates λ̂ at an arrival. The decayed count r ← r·e^{−Δ/τ} + 1/τ
// has expectation λ(1 − e^{−t/τ}) for Poisson arrivals at rate λ since the
// run started, so dividing by that factor removes the start-up bias (as
// Adam does for its moments) and needs no inter-arrival division, which a
// burst of simultaneous arrivals would break.
func (p *adaptive) observe(now time.Duration) {
	dt := (now - p.lastArr).Seconds()
	p.count = p.count*math.Exp(-dt/p.tau) + 1/p.tau
	p.lastArr = now
	corr := -math.Expm1(-now.Seconds() / p.tau)
	if corr < 1e-9 {
		corr = 1e-9
	}
	p.rate = p.count / corr
}

// windowStar is W* = min(max_window, (target_batch−1)/λ̂).
func (p *adaptive) windowStar() time.Duration {
	w := p.maxWindow
	if p.rate > 0 {
		if s := float64(p.target-1) / p.rate; s < w.Seconds() {
			w = time.Duration(s * 1e9)
		}
	}
	return w
}

func (p *adaptive) Step(now time.Duration, ev Event, eng Engine) Decision {
	return *p.StepRef(now, &ev, eng)
}

// StepRef implements RefStepper.
func (p *adaptive) StepRef(now time.Duration, ev *Event, eng Engine) *Decision {
	p.begin(eng)
	switch ev.Kind {
	case EventArrival:
		p.observe(now)
		p.q.push(ev.Request)
	case EventBatchDone:
		p.svc.observe(ev.BatchSize, ev.Service)
	}
	wake := NoWake
	for p.q.len() > 0 {
		w := p.windowStar()
		due := p.rate*w.Seconds() < p.theta || p.q.len() >= p.target
		if !due {
			head := p.q.front().Arrival
			want := head + w
			if p.slo > 0 {
				// Leave room for the batch itself inside the slo.
				want = min(want, head+p.slo-p.svc.predict(min(p.q.len(), p.target)))
			}
			fire := p.tm.at(now, max(want, head))
			if now < fire {
				wake = fire
				break
			}
		}
		if !p.canDispatch() {
			break
		}
		p.emitFront(&p.q, p.room(p.q.len(), p.target))
	}
	return p.decisionRef(now, wake)
}

func newAdaptive(a *Args) (Policy, error) {
	tau := a.Duration("tau")
	p := &adaptive{
		maxWindow: a.Duration("max_window"),
		target:    a.Int("target_batch"),
		theta:     a.Float("theta"),
		slo:       a.Duration("slo"),
	}
	base, per := a.Duration("batch_base"), a.Duration("batch_per")
	p.tm.tick = a.Duration(TickKey)
	if err := a.Err(); err != nil {
		return nil, err
	}
	switch {
	case tau <= 0:
		return nil, a.Invalid("tau", "must be > 0")
	case p.maxWindow <= 0:
		return nil, a.Invalid("max_window", "must be > 0")
	case p.target < 1:
		return nil, a.Invalid("target_batch", "must be ≥ 1")
	case p.theta < 0:
		return nil, a.Invalid("theta", "must be ≥ 0")
	case p.slo < 0:
		return nil, a.Invalid("slo", "must be ≥ 0 (0 = none)")
	case base < 0:
		return nil, a.Invalid("batch_base", "must be ≥ 0")
	case per < 0:
		return nil, a.Invalid("batch_per", "must be ≥ 0")
	case p.tm.tick < 0:
		return nil, a.Invalid(TickKey, "must be ≥ 0")
	}
	p.tau = tau.Seconds()
	p.svc = newServiceModel(p.target, base, per)
	p.spec = a.Spec()
	return p, nil
}

// Shared by the policies that predict batch time before any batch finished.
var batchPriorParams = []Param{
	{"batch_base", "0s", "prior batch time: fixed part, until batches are observed (0s with batch_per=0s: learn only)"},
	{"batch_per", "0s", "prior batch time: per request"},
}

func init() {
	mustRegister(Def{Name: "adaptive", Meaning: "window W* = min(max_window, (target_batch−1)/λ̂) from an EWMA arrival rate; no wait when λ̂·W* < theta",
		Params: append([]Param{
			{"tau", "1s", "time constant of the arrival-rate EWMA"},
			{"max_window", "1ms", "longest window"},
			{"target_batch", "8", "batch size the window aims for, and the largest batch"},
			{"theta", "1", "dispatch at once when fewer than theta arrivals are expected within W*"},
			{"slo", "0s", "latency budget: dispatch before oldest age + predicted batch time exceeds it (0s = none)"},
		}, batchPriorParams...), New: newAdaptive})
}
