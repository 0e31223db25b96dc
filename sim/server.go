package sim

import (
	"fmt"
	"time"

	"github.com/batchkit/batchkit/policies"
)

// Request is what a client sends to the serving model.
type Request struct {
	// ID is the trace's request id, copied to the Result.
	ID           int64
	InputTokens  int32
	OutputTokens int32
	Priority     int32
	// Deadline is absolute (since run start); 0 means none.
	Deadline time.Duration
	// Client is returned in the Result's callback so a closed-loop driver
	// knows whose request finished; -1 for open loop.
	Client int32
}

// StepPlan is what the serving model asks the engine to run next: one
// step, optionally followed by Steps-1 decode-only steps in which nothing
// joins or leaves. It is the seam between the serving model and the source
// of step durations (the profile's cost model here, a real engine in
// replay).
type StepPlan struct {
	// Prefill sequences are prefilled in the first step, which yields each
	// its first token; PrefillTokens (P) is the sum of their prompts and
	// PrefillSquares the sum of their squares (attention over a prompt).
	Prefill        int
	PrefillTokens  int64
	PrefillSquares int64
	// Decode (D) sequences decode one token in the first step; Context (K)
	// is their total context (prompt plus tokens so far).
	Decode  int
	Context int64
	// Steps >= 1. In steps 2..Steps all Prefill+Decode sequences decode;
	// step i (1-based) has context Context+PrefillTokens+(Prefill+Decode)·(i-1).
	Steps int
	// Admitted are the Request IDs prefilled in the first step and Retired
	// those that finished at the end of the previous plan (an engine frees
	// their KV cache); valid until the next call on the Server.
	Admitted []int64
	Retired  []int64
}

// ServerConfig configures a Server.
type ServerConfig struct {
	Profile Profile
	// MultiStep lets plans span several steps (the simulator); a driver of
	// a real engine leaves it false and runs one step per plan.
	MultiStep bool
	// Done receives every request's Result when it leaves (finished,
	// rejected or dropped); the pointer is valid only during the call.
	// seq is the request's arrival order at the server (0, 1, ...).
	Done func(r *Result, client int32, seq int64)
}

type reqState struct {
	res       Result
	availEnq  int64
	prompt    int64
	prefillAt int64 // global step index of the prefill step
	client    int32
	prio      int32
	deadline  time.Duration
	live      bool
}

type batchState struct {
	size, left int
	start      int64
	live       bool
}

type finishItem struct {
	step int64
	seq  int64
}

// Server is the serving model: per-request overhead, the policy's queue,
// the engine queue and the engine's running set in one of the three modes.
// It never reads a clock: a driver passes now to every call and tells it
// when each StepPlan is done. Not safe for concurrent use.
//
// Driver protocol: call Arrive for client sends, Timer when NextTimer is
// due, StepDone when the plan in flight ends; after any of them, if no plan
// is in flight call NextStep, else if CutWanted, end the plan early at its
// first step boundary after now (Cut).
type Server struct {
	prof      Profile
	multi     bool
	done      func(*Result, int32, int64)
	pol       policies.Policy
	overhead  int64
	wake      time.Duration
	maxBatch  int
	nextSeq   int64
	nextBatch int64

	reqs    table[reqState]
	batches table[batchState]
	ovq     ring[int64] // seqs inside the fixed overhead, FIFO
	eq      ring[int64] // dispatched, not yet started

	// running set; G counts completed steps.
	g        int64
	running  int
	decoding int   // D: sequences past prefill
	sumPmS   int64 // Σ(prompt - prefillAt) over decoding sequences: K(g) = sumPmS + decoding·g
	fin      finHeap
	admitted []int64 // trace IDs prefilled by the plan in flight
	squares  int64   // sum of their prompts squared
	retired  []int64 // trace IDs that left the engine since the last plan was handed out
	handed   bool    // retired was handed out in a plan: clear it before adding
	admSeq   []int64 // seqs prefilled by the plan in flight
	doneSeq  []int64
	plan     StepPlan
	inFlight bool
	planAt   int64

	// avail integrates the time the engine could accept work, for the
	// window-wait split.
	canAccept  bool
	availAcc   int64
	availSince int64

	accq []int // sizes of accepted batches not yet told
	told policies.Engine
	err  error
	// skipAcc and skipDone: the policy declared EventAccepted and
	// EventRequestDone ignored (policies.EventFilter).
	skipAcc, skipDone bool
	skipper           policies.Skipper
	ref               policies.RefStepper
	// ev is the event being fed: kept here, not on the stack, so that
	// handing the policy a pointer to it allocates nothing.
	ev policies.Event

	// Counters for reports.
	Events int64
}

// NewServer returns a serving model using pol.
func NewServer(cfg ServerConfig, pol policies.Policy) (*Server, error) {
	if err := cfg.Profile.Validate(); err != nil {
		return nil, fmt.Errorf("profile %s: %v", cfg.Profile.Name, err)
	}
	s := &Server{
		prof: cfg.Profile, multi: cfg.MultiStep, done: cfg.Done, pol: pol,
		overhead: int64(cfg.Profile.RequestOverhead()), wake: policies.NoWake,
		maxBatch: cfg.Profile.MaxBatch,
	}
	if f, ok := pol.(policies.EventFilter); ok {
		m := f.Ignores()
		s.skipAcc, s.skipDone = m.Has(policies.EventAccepted), m.Has(policies.EventRequestDone)
	}
	s.skipper, _ = pol.(policies.Skipper)
	s.ref, _ = pol.(policies.RefStepper)
	if s.done == nil {
		s.done = func(*Result, int32, int64) {}
	}
	s.canAccept = true
	return s, nil
}

// Policy returns the policy the server drives.
func (s *Server) Policy() policies.Policy { return s.pol }

// InFlight reports whether a plan is running on the engine.
func (s *Server) InFlight() bool { return s.inFlight }

// Pending is the number of requests inside the server (overhead, policy
// queue, engine queue, running).
func (s *Server) Pending() int { return s.reqs.live }

// NextTimer is the earliest time the server wants Timer called: the end
// of the oldest request's overhead or the policy's wake-up; NoWake if none.
func (s *Server) NextTimer() time.Duration {
	t := s.wake
	if s.ovq.len() > 0 {
		if e := time.Duration(s.reqs.at(s.ovq.front()).res.EnqueueNS); e < t {
			t = e
		}
	}
	return t
}

// Arrive hands a request to the server at now.
func (s *Server) Arrive(now time.Duration, r Request) {
	seq := s.nextSeq
	s.nextSeq++
	st := s.reqs.add(seq)
	// Every field, one by one: a composite literal would be built aside
	// and moved under the write barrier (Result holds strings), which
	// costs more than the stores.
	st.live, st.client, st.prio, st.deadline, st.prompt = true, r.Client, r.Priority, r.Deadline, int64(r.InputTokens)
	st.availEnq, st.prefillAt = 0, 0
	res := &st.res
	res.RequestID, res.ArrivalNS, res.EnqueueNS = r.ID, int64(now), int64(now)+s.overhead
	res.DispatchNS, res.EngineStartNS, res.FirstTokenNS, res.FinishNS, res.BatchID = -1, -1, -1, -1, -1
	res.InputTokens, res.OutputTokens, res.BatchSize = r.InputTokens, r.OutputTokens, 0
	res.WindowWaitNS, res.EngineQueueWaitNS, res.OverheadNS = 0, 0, s.overhead
	res.Status, res.Error = "", ""
	if s.overhead == 0 && s.ovq.len() == 0 {
		s.enqueue(now, seq, st)
		return
	}
	s.ovq.push(seq)
}

func (s *Server) enqueue(now time.Duration, seq int64, st *reqState) {
	st.availEnq = s.avail(int64(now))
	// Field by field: a composite literal is built on the stack and
	// copied with 16-byte moves that straddle its 8-byte stores, which
	// stalls store forwarding (~5 ns a request).
	ev := &s.ev
	ev.Kind, ev.BatchSize, ev.Service, ev.Latency = policies.EventArrival, 0, 0, 0
	s.policyRequest(&ev.Request, seq, st)
	s.feed(now, ev)
}

// policyRequest is the request as the policy sees it: its ID is the
// server's sequence number, unique for the run, so that the server finds
// its state without a map.
func (s *Server) policyRequest(q *policies.Request, seq int64, st *reqState) {
	q.ID, q.Arrival, q.InputTokens = seq, time.Duration(st.res.EnqueueNS), st.res.InputTokens
	q.OutputTokens, q.Priority, q.Deadline = st.res.OutputTokens, st.prio, st.deadline
}

// Timer runs what is due at now: overheads ending, then the policy's
// wake-up.
func (s *Server) Timer(now time.Duration) {
	for s.ovq.len() > 0 {
		seq := s.ovq.front()
		st := s.reqs.at(seq)
		if time.Duration(st.res.EnqueueNS) > now {
			break
		}
		s.ovq.pop()
		s.enqueue(now, seq, st)
	}
	if s.wake <= now {
		s.wake = policies.NoWake
		s.ev = policies.Event{Kind: policies.EventTimer}
		s.feed(now, &s.ev)
	}
}

func (s *Server) engine() policies.Engine {
	idle := s.running == 0 && s.eq.len() == 0
	if s.prof.Mode != Continuous {
		if idle {
			return policies.Engine{Idle: true, Free: s.maxBatch, Batches: 1}
		}
		return policies.Engine{}
	}
	free := s.maxBatch - s.running - s.eq.len()
	return policies.Engine{Idle: idle, Free: free, Batches: free}
}

func (s *Server) avail(now int64) int64 {
	if s.canAccept {
		return s.availAcc + now - s.availSince
	}
	return s.availAcc
}

func (s *Server) capChanged(now int64) {
	e := s.engine()
	c := e.Free > 0 && e.Batches > 0
	if c == s.canAccept {
		return
	}
	if s.canAccept {
		s.availAcc += now - s.availSince
	} else {
		s.availSince = now
	}
	s.canAccept = c
}

// feed passes ev and the events its decisions cause to the policy. The
// only events a decision causes are EventAccepted, one per batch, so only
// their sizes are queued.
func (s *Server) feed(now time.Duration, ev *policies.Event) {
	s.step(now, ev)
	for i := 0; i < len(s.accq); i++ {
		if s.skipAcc && s.wake > now {
			// The policy has seen this engine as far as its decisions go
			// (policies.EventFilter).
			s.told = s.engine()
			continue
		}
		s.ev = policies.Event{Kind: policies.EventAccepted, BatchSize: s.accq[i]}
		s.step(now, &s.ev)
	}
	s.accq = s.accq[:0]
}

func (s *Server) step(now time.Duration, ev *policies.Event) {
	eng := s.engine()
	s.told = eng
	if s.skipper != nil && ev.Kind != policies.EventArrival && s.skipper.Skips(ev.Kind, eng) {
		s.wake = policies.NoWake
		return
	}
	s.Events++
	var d *policies.Decision
	if s.ref != nil {
		d = s.ref.StepRef(now, ev, eng)
	} else {
		dv := s.pol.Step(now, *ev, eng)
		d = &dv
	}
	if d.Wake < now {
		panic(fmt.Sprintf("sim: policy %s asked to wake at %v, before now %v", s.pol.Spec(), d.Wake, now))
	}
	s.wake = d.Wake
	for _, dr := range d.Drops {
		s.drop(now, dr)
	}
	free, nb := eng.Free, eng.Batches
	for _, b := range d.Batches {
		if len(b) == 0 || len(b) > free || nb < 1 {
			panic(fmt.Sprintf("sim: policy %s dispatched a batch of %d with engine free %d, batches %d", s.pol.Spec(), len(b), free, nb))
		}
		free -= len(b)
		nb--
		s.accept(now, b)
		s.accq = append(s.accq, len(b))
	}
}

func (s *Server) live(seq int64) *reqState {
	if seq < s.reqs.lo || seq >= s.reqs.hi {
		panic(fmt.Sprintf("sim: policy %s returned unknown request %d", s.pol.Spec(), seq))
	}
	st := s.reqs.at(seq)
	if !st.live || st.res.DispatchNS >= 0 {
		panic(fmt.Sprintf("sim: policy %s returned request %d that is not in its queue", s.pol.Spec(), seq))
	}
	return st
}

func (s *Server) drop(now time.Duration, d policies.Drop) {
	st := s.live(d.Request.ID)
	st.res.Status = StatusDropped
	if d.Reason == policies.Rejected {
		st.res.Status = StatusRejected
	}
	st.res.Error = d.Why
	st.res.FinishNS = int64(now)
	st.res.WindowWaitNS = s.avail(int64(now)) - st.availEnq
	st.res.EngineQueueWaitNS = int64(now) - st.res.EnqueueNS - st.res.WindowWaitNS
	s.retire(d.Request.ID, st)
}

func (s *Server) retire(seq int64, st *reqState) {
	s.done(&st.res, st.client, seq)
	st.live = false
	s.reqs.free(seq)
}

func (s *Server) accept(now time.Duration, b policies.Batch) {
	bid := s.nextBatch
	s.nextBatch++
	bs := s.batches.add(bid)
	*bs = batchState{size: len(b), left: len(b), start: -1, live: true}
	av := s.avail(int64(now))
	for _, r := range b {
		st := s.live(r.ID)
		st.res.DispatchNS = int64(now)
		st.res.WindowWaitNS = av - st.availEnq
		st.res.BatchID = bid
		st.res.BatchSize = int32(len(b))
		s.eq.push(r.ID)
	}
	s.capChanged(int64(now))
}

// NextStep admits what the mode allows at this step boundary and returns
// the plan to run; ok is false when the engine has nothing to do. It
// panics if a plan is in flight.
func (s *Server) NextStep(now time.Duration) (StepPlan, bool) {
	if p := s.nextStep(now); p != nil {
		return *p, true
	}
	return StepPlan{}, false
}

// nextStep is NextStep without copying the plan: the simulator's loop
// runs it once per plan. The plan is valid until the next call.
func (s *Server) nextStep(now time.Duration) *StepPlan {
	if s.inFlight {
		panic("sim: NextStep with a plan in flight")
	}
	s.admitted = s.admitted[:0]
	s.squares = 0
	var p int64
	switch s.prof.Mode {
	case Sequential:
		if s.running == 0 && s.eq.len() > 0 {
			p += s.admit(now, s.eq.pop())
		}
	case Static:
		if s.running == 0 && s.eq.len() > 0 {
			bid := s.reqs.at(s.eq.front()).res.BatchID
			for s.eq.len() > 0 && s.reqs.at(s.eq.front()).res.BatchID == bid {
				p += s.admit(now, s.eq.pop())
			}
		}
	case Continuous:
		budget := s.prof.TokenBudget
		for s.eq.len() > 0 && s.running < s.maxBatch {
			pr := s.reqs.at(s.eq.front()).prompt
			if budget > 0 && p+pr+int64(s.decoding) > budget && (len(s.admitted) > 0 || s.decoding > 0) {
				break
			}
			p += s.admit(now, s.eq.pop())
		}
	}
	if s.running == 0 {
		return nil
	}
	steps := 1
	// A request left waiting with room in the running set (the token
	// budget stopped it) may join at the very next step.
	if s.multi && !(s.prof.Mode == Continuous && s.eq.len() > 0 && s.running < s.maxBatch) {
		steps = int(s.fin.min().step - s.g)
	}
	// Field by field: a composite literal would be built aside and then
	// moved with its slices under the write barrier.
	pl := &s.plan
	pl.Prefill, pl.PrefillTokens, pl.PrefillSquares = len(s.admitted), p, s.squares
	pl.Decode, pl.Context = s.decoding, s.sumPmS+int64(s.decoding)*(s.g+1)
	pl.Steps = steps
	pl.Admitted, pl.Retired = s.admitted, s.retired
	s.handed = true
	s.inFlight = true
	s.planAt = int64(now)
	s.capChanged(int64(now))
	return &s.plan
}

func (s *Server) admit(now time.Duration, seq int64) int64 {
	st := s.reqs.at(seq)
	st.res.EngineStartNS = int64(now)
	st.res.EngineQueueWaitNS = int64(now) - st.res.EnqueueNS - st.res.WindowWaitNS
	st.prefillAt = s.g + 1
	s.running++
	s.fin.push(finishItem{step: s.g + int64(st.res.OutputTokens), seq: seq})
	bs := s.batches.at(st.res.BatchID)
	if bs.start < 0 {
		bs.start = int64(now)
	}
	s.admitted = append(s.admitted, st.res.RequestID)
	// admitted holds trace IDs for engines; keep seqs apart for StepDone.
	s.admSeq = append(s.admSeq, seq)
	s.squares += st.prompt * st.prompt
	return st.prompt
}

// CutWanted reports whether the plan in flight should end at its next
// step boundary because a dispatched request could join the running set.
func (s *Server) CutWanted() bool {
	return s.inFlight && s.plan.Steps > 1 && s.prof.Mode == Continuous && s.eq.len() > 0 && s.running < s.maxBatch
}

// Cut shortens the plan in flight to steps steps (1 <= steps <= Steps).
func (s *Server) Cut(steps int) {
	if !s.inFlight || steps < 1 || steps > s.plan.Steps {
		panic(fmt.Sprintf("sim: Cut(%d) of a plan of %d steps", steps, s.plan.Steps))
	}
	s.plan.Steps = steps
}

func (s *Server) clearRetired() {
	if s.handed {
		s.retired = s.retired[:0]
		s.handed = false
	}
}

// leave retires doneSeq and tells the policy.
func (s *Server) leave(now time.Duration) {
	for _, seq := range s.doneSeq {
		st := s.reqs.at(seq)
		lat := time.Duration(st.res.FinishNS - st.res.ArrivalNS)
		bs := s.batches.at(st.res.BatchID)
		bs.left--
		batchDone := bs.left == 0
		svc := time.Duration(st.res.FinishNS - bs.start)
		size := bs.size
		if batchDone {
			bs.live = false
			s.batches.free(st.res.BatchID)
		}
		if s.skipDone && s.wake > now {
			// The EventBatchDone below or the EventCapacity after the loop
			// steps the policy at this now instead (policies.EventFilter).
			s.retire(seq, st)
		} else {
			var pr policies.Request
			s.policyRequest(&pr, seq, st)
			s.retire(seq, st)
			s.ev = policies.Event{Kind: policies.EventRequestDone, Request: pr, Latency: lat}
			s.feed(now, &s.ev)
		}
		if batchDone {
			s.ev = policies.Event{Kind: policies.EventBatchDone, BatchSize: size, Service: svc}
			s.feed(now, &s.ev)
		}
	}
	s.doneSeq = s.doneSeq[:0]
	if s.engine() != s.told {
		s.ev = policies.Event{Kind: policies.EventCapacity}
		s.feed(now, &s.ev)
	}
}

// Retired hands out the trace IDs that left the engine since the last
// plan or Retired call (a plan carries them too), for an engine to free
// their state when no plan follows. Valid until the next call.
func (s *Server) Retired() []int64 {
	s.clearRetired()
	s.handed = true
	return s.retired
}

// Fail takes the running request with trace ID id out of the engine with
// StatusFailed and the error text, as replay does when the engine fails
// it or it times out. Call it between plans; it reports whether the
// request was running.
func (s *Server) Fail(now time.Duration, id int64, msg string) bool {
	if s.inFlight {
		panic("sim: Fail with a plan in flight")
	}
	for i, it := range s.fin.a {
		st := s.reqs.at(it.seq)
		if st.res.RequestID != id {
			continue
		}
		s.fin.remove(i)
		s.running--
		if st.res.FirstTokenNS >= 0 {
			s.decoding--
			s.sumPmS -= st.prompt - st.prefillAt
		}
		st.res.Status = StatusFailed
		st.res.Error = msg
		st.res.FinishNS = int64(now)
		s.clearRetired()
		s.retired = append(s.retired, id)
		s.doneSeq = append(s.doneSeq[:0], it.seq)
		s.capChanged(int64(now))
		s.leave(now)
		return true
	}
	return false
}

// StepDone ends the plan in flight: firstStepEnd is when its first step
// ended (the first token of the sequences it prefilled), now when its last
// step did.
func (s *Server) StepDone(now, firstStepEnd time.Duration) {
	if !s.inFlight {
		panic("sim: StepDone with no plan in flight")
	}
	s.inFlight = false
	for _, seq := range s.admSeq {
		st := s.reqs.at(seq)
		st.res.FirstTokenNS = int64(firstStepEnd)
		s.decoding++
		s.sumPmS += st.prompt - st.prefillAt
	}
	s.admSeq = s.admSeq[:0]
	s.g += int64(s.plan.Steps)
	s.clearRetired()
	for s.fin.len() > 0 && s.fin.min().step <= s.g {
		it := s.fin.pop()
		st := s.reqs.at(it.seq)
		s.decoding--
		s.running--
		s.sumPmS -= st.prompt - st.prefillAt
		st.res.FinishNS = int64(now)
		st.res.Status = StatusOK
		s.retired = append(s.retired, st.res.RequestID)
		s.doneSeq = append(s.doneSeq, it.seq)
	}
	s.capChanged(int64(now))
	// Requests leave before the policy hears of it, so that every event
	// carries the engine's state after the step.
	s.leave(now)
}
