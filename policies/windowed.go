package policies

import (
	"time"
)

// none dispatches whatever is queued whenever the engine can accept.
type none struct {
	core
	spec string
	q    ring[Request]
}

// Ignores implements EventFilter: Step only re-evaluates the queue on
// EventAccepted and EventRequestDone.
func (p *none) Ignores() EventMask { return MaskOf(EventAccepted, EventRequestDone) }

// Skips implements Skipper: with nothing queued or no room in the engine,
// Step has nothing to dispatch.
func (p *none) Skips(k EventKind, eng Engine) bool {
	return k != EventArrival && (p.q.len() == 0 || eng.Free <= 0 || eng.Batches <= 0)
}

func (p *none) Spec() string { return p.spec }
func (p *none) Queued() int  { return p.q.len() }

func (p *none) Step(now time.Duration, ev Event, eng Engine) Decision {
	return *p.StepRef(now, &ev, eng)
}

// StepRef implements RefStepper.
func (p *none) StepRef(now time.Duration, ev *Event, eng Engine) *Decision {
	p.begin(eng)
	if ev.Kind == EventArrival {
		p.q.push(ev.Request)
	}
	for p.q.len() > 0 && p.canDispatch() {
		p.emitFront(&p.q, p.room(p.q.len(), p.free))
	}
	return p.decisionRef(now, NoWake)
}

// anchor says when a fixed window starts.
type anchor uint8

const (
	anchorFirst anchor = iota
	anchorOldest
	anchorCollector
	anchorBatchEnd
)

var anchorNames = []string{"first", "oldest", "collector", "batchend"}

// windowed is fixed, fastpath and tiered: hold requests for a window whose
// length may depend on the queue depth, dispatch at its end or when a batch
// is full.
type windowed struct {
	core
	spec     string
	q        ring[Request]
	depths   []int           // ascending upper bounds of the depth tiers
	windows  []time.Duration // len(depths)+1
	maxBatch int
	anchor   anchor
	fast     bool

	start   time.Duration // first, collector: when the current window began
	cycling bool          // collector: waiting in a window, not for the engine
	lastEnd time.Duration // batchend: when the last batch finished
}

// Ignores implements EventFilter: Step only re-evaluates the queue on
// EventAccepted and EventRequestDone. With anchor=batchend the window
// hangs on EventBatchDone, so EventRequestDone, which comes before it,
// must still be seen.
func (p *windowed) Ignores() EventMask {
	if p.anchor == anchorBatchEnd {
		return MaskOf(EventAccepted)
	}
	return MaskOf(EventAccepted, EventRequestDone)
}

// Skips implements Skipper. With an empty queue Step only breaks out of
// its loop, except where the anchor reacts: batchend records the batch's
// end, and collector starts a cycle when the engine can accept. A due
// timer that finds the engine unable to take a batch also only breaks out
// (its window has ended, and the timer is still armed for it), leaving
// the next dispatch to the Step that brings capacity back.
func (p *windowed) Skips(k EventKind, eng Engine) bool {
	if k == EventArrival {
		return false
	}
	full := eng.Free <= 0 || eng.Batches <= 0
	if p.q.len() > 0 {
		return k == EventTimer && full
	}
	switch p.anchor {
	case anchorBatchEnd:
		return k != EventBatchDone
	case anchorCollector:
		return p.cycling || full
	}
	return true
}

func (p *windowed) Spec() string { return p.spec }
func (p *windowed) Queued() int  { return p.q.len() }

func (p *windowed) window(depth int) time.Duration {
	for i, d := range p.depths {
		if depth <= d {
			return p.windows[i]
		}
	}
	return p.windows[len(p.windows)-1]
}

func (p *windowed) Step(now time.Duration, ev Event, eng Engine) Decision {
	return *p.StepRef(now, &ev, eng)
}

// StepRef implements RefStepper.
func (p *windowed) StepRef(now time.Duration, ev *Event, eng Engine) *Decision {
	p.begin(eng)
	switch ev.Kind {
	case EventArrival:
		if p.fast && p.q.len() == 0 && eng.Idle && p.canDispatch() {
			// Nagle's exception: nothing to coalesce with and nothing in
			// flight, so waiting can only add latency.
			p.openBatch()
			p.add(ev.Request)
			p.closeBatch()
			break
		}
		if p.q.len() == 0 {
			switch p.anchor {
			case anchorFirst:
				p.start = now
			case anchorCollector:
				p.skipEmptyTiles(now)
			}
		}
		p.q.push(ev.Request)
	case EventBatchDone:
		p.lastEnd = now
	}
	wake := NoWake
	for {
		if p.anchor == anchorCollector && !p.cycling {
			if !p.canDispatch() {
				break // the collector waits for the engine before its next window
			}
			p.cycling, p.start = true, now
		}
		if p.q.len() == 0 {
			break // idle windows need no wake-up: skipEmptyTiles replays them
		}
		fire := p.windowEnd(now)
		if now < fire && p.q.len() < p.maxBatch {
			wake = fire
			break
		}
		if !p.canDispatch() {
			break // the driver steps us again when capacity returns
		}
		p.emitFront(&p.q, p.room(p.q.len(), p.maxBatch))
		switch p.anchor {
		case anchorFirst:
			p.start = now // leftovers start a fresh window
		case anchorCollector:
			p.cycling = false
		}
	}
	return p.decisionRef(now, wake)
}

// windowEnd is when the current window's timer fires.
func (p *windowed) windowEnd(now time.Duration) time.Duration {
	w := p.window(p.q.len())
	switch p.anchor {
	case anchorOldest:
		return p.tm.at(now, p.q.front().Arrival+w)
	case anchorBatchEnd:
		return p.tm.at(p.lastEnd, p.lastEnd+w)
	default:
		return p.tm.at(p.start, p.start+w)
	}
}

// skipEmptyTiles advances the collector over the windows that ended empty
// before now: the loop slept through them and started the next at each end.
// A window ending exactly at now is still current, so an arrival at that
// instant is taken by it.
func (p *windowed) skipEmptyTiles(now time.Duration) {
	if !p.cycling {
		return
	}
	per := p.tm.period(p.window(0))
	if per <= 0 || now <= p.start+per {
		return
	}
	p.start += (now - p.start - 1) / per * per
}

func newWindowed(a *Args, fast bool) (Policy, error) {
	p := &windowed{fast: fast, maxBatch: a.Int("max_batch"), cycling: true}
	w := a.Duration("window")
	p.windows = []time.Duration{w}
	an := a.Choice("anchor", anchorNames...)
	p.tm.tick = a.Duration(TickKey)
	if err := a.Err(); err != nil {
		return nil, err
	}
	for i, n := range anchorNames {
		if n == an {
			p.anchor = anchor(i)
		}
	}
	if w < 0 {
		return nil, a.Invalid("window", "must be ≥ 0")
	}
	return finishWindowed(a, p)
}

func finishWindowed(a *Args, p *windowed) (Policy, error) {
	if p.maxBatch < 1 {
		return nil, a.Invalid("max_batch", "must be ≥ 1")
	}
	if p.tm.tick < 0 {
		return nil, a.Invalid(TickKey, "must be ≥ 0")
	}
	p.spec = a.Spec()
	return p, nil
}

func newTiered(a *Args) (Policy, error) {
	p := &windowed{maxBatch: a.Int("max_batch"), cycling: true}
	p.depths = a.Ints("depths")
	p.windows = a.Durations("windows")
	an := a.Choice("anchor", anchorNames...)
	p.tm.tick = a.Duration(TickKey)
	if err := a.Err(); err != nil {
		return nil, err
	}
	for i, n := range anchorNames {
		if n == an {
			p.anchor = anchor(i)
		}
	}
	for i, d := range p.depths {
		if d < 0 || (i > 0 && d <= p.depths[i-1]) {
			return nil, a.Invalid("depths", "must be ascending and ≥ 0")
		}
	}
	if len(p.windows) != len(p.depths)+1 {
		return nil, a.Invalid("windows", "needs one more entry than depths")
	}
	for _, w := range p.windows {
		if w <= 0 {
			return nil, a.Invalid("windows", "each must be > 0")
		}
	}
	return finishWindowed(a, p)
}

func newNone(a *Args) (Policy, error) {
	p := &none{}
	if t := a.Duration(TickKey); t < 0 {
		return nil, a.Invalid(TickKey, "must be ≥ 0")
	}
	if err := a.Err(); err != nil {
		return nil, err
	}
	p.spec = a.Spec()
	return p, nil
}

var fixedParams = []Param{
	{"window", "1ms", "how long a window holds requests"},
	{"max_batch", "8", "largest batch; a full batch goes at once"},
	{"anchor", "first", "when the window starts: first (arrival into an empty queue), oldest (oldest request's age, Triton), collector (when the collector loop starts waiting, the seed's Python scheduler), batchend (end of the previous batch)"},
}

func init() {
	mustRegister(Def{Name: "none", Meaning: "dispatch whatever is queued whenever the engine can accept (the bare-engine baseline)", New: newNone})
	mustRegister(Def{Name: "fixed", Meaning: "hold a window, dispatch up to max_batch when it ends or the batch is full",
		Params: fixedParams, New: func(a *Args) (Policy, error) { return newWindowed(a, false) }})
	mustRegister(Def{Name: "fastpath", Meaning: "fixed, but a request arriving to an empty queue while the engine is idle goes at once (Nagle)",
		Params: fixedParams, New: func(a *Args) (Policy, error) { return newWindowed(a, true) }})
	mustRegister(Def{Name: "tiered", Meaning: "the seed system's window chosen by queue depth (≤1: 0.75ms, 2–5: 1ms, ≥6: 2ms)",
		Params: []Param{
			{"depths", "1/5", "ascending upper bounds of the depth tiers"},
			{"windows", "750us/1ms/2ms", "window per tier, one more than depths (the last is for deeper queues)"},
			{"max_batch", "8", "largest batch; a full batch goes at once"},
			{"anchor", "collector", "when the window starts (see fixed)"},
		}, New: newTiered})
}
