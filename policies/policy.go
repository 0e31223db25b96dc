// Package policies holds the batching policies: pure decision code that
// decides when queued requests go to the engine and in which batches.
//
// A policy is a state machine in the style of etcd-io/raft's core and
// golang.org/x/time/rate: it never reads a clock, sleeps, starts goroutines or
// touches a global random source. The driver — the simulator on a virtual
// clock, or replay on the wall clock — passes the time since the run started
// and one event at a time, and the policy answers with a Decision. The same
// policy value therefore decides the same way whichever driver runs it.
//
// Policies are built from spec strings, "name:key=value,key=value" with
// durations as Go durations (Parse), and listed with their parameters (List).
// Users add their own with Register. Every policy accepts tick=D: its timer
// fires only on multiples of D counted from when it was armed, as with
// Node's setTimeout or a coarse OS timer; the seed system's sub-millisecond
// windows were rounded like this.
//
// The built-in policies:
//
//   - none: dispatch whatever is queued whenever the engine can accept.
//   - fixed: hold a window, dispatch up to max_batch when it ends or the
//     batch is full. The anchor says when the window starts: first (the
//     arrival into an empty queue), oldest (dispatch when the oldest queued
//     request's age reaches the window, Triton's max_queue_delay), collector
//     (the seed's Python GPU scheduler: the collector loop starts a window
//     when it starts waiting, at run start or when the engine can accept
//     again after a batch; windows tile time while the queue is empty, and at
//     a window end a non-empty queue is dispatched and a new cycle starts),
//     batchend (the window starts at the end of the previous batch, old Ray
//     Serve).
//   - fastpath: fixed, but a request arriving to an empty queue while the
//     engine is idle goes at once (Nagle's rule, RFC 896: only hold small
//     segments back while earlier data is unacknowledged).
//   - tiered: the seed system's window chosen by queue depth (≤1: 0.75 ms,
//     2–5: 1 ms, ≥6: 2 ms), re-read as the queue grows.
//   - adaptive: a rate-based window, below.
//   - triton: Triton Inference Server's dynamic batcher (preferred sizes,
//     max_queue_delay, max_queue_size, per-request timeout with reject or
//     delay).
//   - aimd: Clipper's additive-increase/multiplicative-decrease batch cap
//     (Crankshaw et al., NSDI 2017), backed off when a batch's engine
//     time exceeds the slo.
//   - deadline: earliest deadline first, the largest batch whose predicted
//     engine time still meets the earliest deadline in it (as in Clockwork,
//     OSDI 2020, and Nexus, SOSP 2019); drop or mark late what cannot.
//
// # The adaptive rule
//
// Waiting only pays if more requests will come while we wait. adaptive
// keeps an exponentially weighted estimate λ̂ of the arrival rate with time
// constant tau (a decayed event count, bias-corrected for the run's start),
// updated at each arrival and frozen between arrivals so a timer once armed
// is not moved by the passing of time alone. The window is
//
//	W* = min(max_window, (target_batch−1)/λ̂)
//
// the expected time for target_batch−1 more arrivals, capped. If λ̂·W* <
// theta — fewer than theta arrivals are expected within the window, so
// waiting would mostly produce batches of one — the queue goes at once
// (Nagle's insight, made rate-aware). Otherwise the queue goes when the
// oldest request's age reaches W*, when target_batch requests are queued,
// or when the oldest request's age plus the predicted engine time of the
// batch would exceed slo (if set): Clipper's and Triton's bounded queue
// delay, with the SLO-aware cut-off of Clockwork and Nexus. Predicted
// batch times come from an EWMA per batch size of the observed
// EventBatchDone service times. Under Poisson arrivals at rate λ the
// expected time to collect B−1 more requests is (B−1)/λ, so a longer window
// only adds latency while a shorter one leaves batches small; bulk-service
// queues (Bailey, "On queueing processes with bulk service", 1954) give the
// same trade-off in closed form.
//
// Drivers must Step a policy whenever the engine's capacity grows
// (EventBatchDone, EventRequestDone or EventCapacity): a policy that is due
// but finds the engine full returns NoWake and waits for that call. The
// built-in policies ignore Request.Priority and the token counts.
//
// A policy must not read the clock, sleep, start goroutines or use a global
// random source. This package imports no other package of the project.
package policies

import (
	"math"
	"time"
)

// NoWake is Decision.Wake when the policy wants no wake-up.
const NoWake = time.Duration(math.MaxInt64)

// Request is what a policy sees of a request.
type Request struct {
	ID int64
	// Arrival is when the request reached the policy's queue, since the run
	// started (after any fixed per-request overhead the driver models).
	Arrival      time.Duration
	InputTokens  int32
	OutputTokens int32
	Priority     int32
	// Deadline is the absolute time, since the run started, by which the
	// request should finish; 0 means none.
	Deadline time.Duration
}

// Engine is what the driver tells the policy about the engine's capacity
// at the moment of the call.
type Engine struct {
	// Idle: nothing running and nothing accepted but not yet started.
	Idle bool
	// Free is how many more requests the engine can accept now.
	Free int
	// Batches is how many more batches the engine can accept now: static and
	// sequential engines take one batch at a time (1 when idle, else 0); a
	// continuous engine takes any number as long as Free allows.
	Batches int
}

// EventKind says what happened.
type EventKind uint8

const (
	// EventArrival: Event.Request joined the queue.
	EventArrival EventKind = iota + 1
	// EventAccepted: the engine accepted a batch the policy dispatched
	// (Event.BatchSize requests).
	EventAccepted
	// EventBatchDone: a batch finished; Event.BatchSize and Event.Service (the
	// engine time the batch took, from start to its last request's finish).
	EventBatchDone
	// EventRequestDone: Event.Request finished; Event.Latency is its time
	// from Arrival to its last token.
	EventRequestDone
	// EventTimer: the wake-up the policy asked for is due.
	EventTimer
	// EventCapacity: the engine's free capacity changed (see the Engine
	// argument).
	EventCapacity
)

// EventMask is a set of event kinds: bit k stands for EventKind k.
type EventMask uint16

// MaskOf returns the set of the given kinds.
func MaskOf(kinds ...EventKind) EventMask {
	var m EventMask
	for _, k := range kinds {
		m |= 1 << k
	}
	return m
}

// Has reports whether k is in the set.
func (m EventMask) Has(k EventKind) bool { return m&(1<<k) != 0 }

// EventFilter is optionally implemented by a policy whose Step is
// redundant for some event kinds, so that a driver may save those calls (a
// simulator makes millions of them). Ignores is read once, when the driver
// is built, and must not change afterwards.
//
// Only EventAccepted and EventRequestDone may be declared, and only by a
// policy whose Step reads nothing from such an event and whose decision
// would not change if it came later at the same now: its Step re-evaluates
// its queue from its state, now and the Engine alone. Such a Step after
// EventAccepted is a no-op, because the Step that dispatched already
// reached a fixed point with the capacity that remains; after
// EventRequestDone it is done instead by the EventBatchDone or
// EventCapacity that the driver delivers at the same now before doing
// anything else. A policy that changes state on EventBatchDone (a service
// model, a batch-end anchor) or drops requests at arbitrary Steps must
// not declare EventRequestDone: skipping it would move a decision past
// the EventBatchDone, or reorder the drops among the finished requests.
//
// A driver that skips an ignored event must still, before acting on the
// engine again at that now, Step the policy with EventCapacity whenever
// the Engine differs from the one the policy last saw (as if it had seen
// the Engine after every skipped EventAccepted), and must not skip while
// the policy's wake-up is due. Every driver of a policy must skip the
// same events (sim and replay share sim.Server, which does this), so that
// a policy decides the same way in both.
type EventFilter interface {
	Ignores() EventMask
}

// Skipper is optionally implemented by a policy that can tell, cheaply
// and from its own state, that a Step would be a no-op, so that a driver
// may save the call (most of a simulator's Steps find an empty queue or an
// engine that cannot take a batch).
//
// Skips(k, eng) reports that Step(now, ev, eng) with ev.Kind == k would
// change nothing that any later Step reads, dispatch nothing, drop
// nothing and return Wake NoWake, whatever now and the rest of ev. A
// driver that skips the Step takes NoWake as its Decision's Wake and
// counts eng as seen. Drivers ask only for an EventTimer that is due, and
// never for EventArrival. Every driver of a policy must skip alike (sim
// and replay share sim.Server, which does this).
type Skipper interface {
	Skips(k EventKind, eng Engine) bool
}

// RefStepper is optionally implemented by a policy to take its Step's
// event by reference and hand back its Decision by reference: a
// simulator steps a policy millions of times a second, and copying both
// costs more than the Step of a simple policy. StepRef(now, &ev, eng)
// must do exactly what Step(now, ev, eng) does; it does not keep ev, and
// the Decision it points to, like its slices, stays valid only until the
// next call.
type RefStepper interface {
	StepRef(now time.Duration, ev *Event, eng Engine) *Decision
}

// Event is one input to a policy.
type Event struct {
	Kind      EventKind
	Request   Request
	BatchSize int
	Service   time.Duration
	Latency   time.Duration
}

// Batch is a group of requests dispatched together, in dispatch order.
type Batch []Request

// DropReason says why a policy gave up on a request.
type DropReason uint8

const (
	// Rejected: refused on admission (queue full, or a policy's own limit).
	Rejected DropReason = iota + 1
	// Dropped: taken out of the queue later (deadline or queue timeout).
	Dropped
)

// Drop is a request the policy will never dispatch.
type Drop struct {
	Request Request
	Reason  DropReason
	// Why is a short static phrase, e.g. "queue full", "deadline".
	Why string
}

// Decision is a policy's answer to one Step. Its slices belong to the
// policy and stay valid only until the next call to Step.
type Decision struct {
	// Batches to dispatch now, in order. Together they never exceed the
	// Engine's Free and Batches, and never hold a request before its arrival.
	Batches []Batch
	// Drops lists requests rejected or dropped by this step.
	Drops []Drop
	// Wake is the absolute time at which the policy next wants an
	// EventTimer if nothing else happens first; NoWake if none. Each
	// Decision's Wake replaces the previous one. It is never before now.
	Wake time.Duration
}

// Policy is a batching policy. Calls are not safe for concurrent use; one
// driver owns a policy value.
type Policy interface {
	// Step feeds one event at time now (non-decreasing across calls) with
	// the engine's capacity at that moment.
	Step(now time.Duration, ev Event, eng Engine) Decision
	// Queued is the number of requests waiting in the policy's queue.
	Queued() int
	// Spec is the canonical spec string that rebuilds this policy with Parse,
	// e.g. "fixed:window=2ms,max_batch=8,anchor=first".
	Spec() string
}
