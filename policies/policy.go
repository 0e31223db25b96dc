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
// This package imports no other package of the project.
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
