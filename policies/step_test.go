package policies_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/policies"
)

// render writes a decision compactly: "[1 2] [3] drop(4 queue full) wake=1.5ms".
func render(d policies.Decision) string {
	var parts []string
	for _, b := range d.Batches {
		ids := make([]string, len(b))
		for i, r := range b {
			ids[i] = fmt.Sprint(r.ID)
		}
		parts = append(parts, "["+strings.Join(ids, " ")+"]")
	}
	for _, x := range d.Drops {
		kind := "reject"
		if x.Reason == policies.Dropped {
			kind = "drop"
		}
		parts = append(parts, fmt.Sprintf("%s(%d %s)", kind, x.Request.ID, x.Why))
	}
	if d.Wake == policies.NoWake {
		parts = append(parts, "wake=never")
	} else {
		parts = append(parts, "wake="+d.Wake.String())
	}
	return strings.Join(parts, " ")
}

var (
	idle  = policies.Engine{Idle: true, Free: 8, Batches: 1}
	busy  = policies.Engine{}
	cont3 = policies.Engine{Free: 3, Batches: 3}
)

type step struct {
	at   string // a duration
	ev   policies.Event
	eng  policies.Engine
	want string
}

func arrive(id int64, at string) policies.Event {
	return policies.Event{Kind: policies.EventArrival, Request: policies.Request{ID: id, Arrival: dur(at)}}
}

func arriveDL(id int64, at, dl string) policies.Event {
	ev := arrive(id, at)
	ev.Request.Deadline = dur(dl)
	return ev
}

func dur(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

var (
	timer    = policies.Event{Kind: policies.EventTimer}
	capacity = policies.Event{Kind: policies.EventCapacity}
)

func done(size int, svc string) policies.Event {
	return policies.Event{Kind: policies.EventBatchDone, BatchSize: size, Service: dur(svc)}
}

func TestStep(t *testing.T) {
	tests := []struct {
		name  string
		spec  string
		steps []step
	}{
		{"none dispatches at once up to free", "none", []step{
			{"1ms", arrive(1, "1ms"), idle, "[1] wake=never"},
			{"2ms", arrive(2, "2ms"), busy, "wake=never"},
			{"2ms", arrive(3, "2ms"), busy, "wake=never"},
			{"2ms", arrive(4, "2ms"), busy, "wake=never"},
			{"3ms", capacity, cont3, "[2 3 4] wake=never"},
		}},
		{"fixed first: window from the arrival into an empty queue", "fixed:window=1ms,max_batch=3", []step{
			{"500us", arrive(1, "500us"), idle, "wake=1.5ms"},
			{"900us", arrive(2, "900us"), idle, "wake=1.5ms"},
			{"1.5ms", timer, idle, "[1 2] wake=never"},
			{"2ms", arrive(3, "2ms"), busy, "wake=3ms"},
			{"2.1ms", arrive(4, "2.1ms"), busy, "wake=3ms"},
			{"2.2ms", arrive(5, "2.2ms"), busy, "wake=never"}, // full but engine busy
			{"2.3ms", arrive(6, "2.3ms"), busy, "wake=never"},
			{"2.5ms", done(2, "1ms"), idle, "[3 4 5] wake=3.5ms"}, // leftovers start a new window
			{"3.5ms", timer, idle, "[6] wake=never"},
		}},
		{"fixed oldest: Triton's max_queue_delay", "fixed:window=1ms,anchor=oldest", []step{
			{"0s", arrive(1, "0s"), busy, "wake=1ms"},
			{"600us", arrive(2, "600us"), busy, "wake=1ms"},
			{"1ms", timer, busy, "wake=never"},
			{"1.2ms", capacity, policies.Engine{Free: 1, Batches: 1}, "[1] wake=1.6ms"},
			{"1.6ms", timer, idle, "[2] wake=never"},
		}},
		{"fixed collector: windows tile time from run start", "fixed:window=1ms,anchor=collector", []step{
			{"2.3ms", arrive(1, "2.3ms"), idle, "wake=3ms"},
			{"2.9ms", arrive(2, "2.9ms"), idle, "wake=3ms"},
			{"3ms", timer, idle, "[1 2] wake=never"},
			{"3ms", arrive(3, "3ms"), busy, "wake=never"}, // collector waits for the engine
			{"4.7ms", done(2, "1.7ms"), idle, "wake=5.7ms"},
			{"5.7ms", timer, idle, "[3] wake=never"},
			{"6ms", done(1, "300us"), idle, "wake=never"},
			{"9ms", arrive(4, "9ms"), idle, "[4] wake=never"}, // the window 8ms–9ms ends at 9ms and takes it
		}},
		{"fixed collector with a coarse timer", "fixed:window=750us,anchor=collector,tick=1ms", []step{
			{"100us", arrive(1, "100us"), idle, "wake=1ms"},
			{"1ms", timer, idle, "[1] wake=never"},
			{"1ms", done(1, "0s"), idle, "wake=never"},
			{"3.5ms", arrive(2, "3.5ms"), idle, "wake=4ms"},
		}},
		{"fixed batchend: window from the end of the previous batch", "fixed:window=1ms,anchor=batchend", []step{
			{"0s", arrive(1, "0s"), idle, "wake=1ms"},
			{"1ms", timer, idle, "[1] wake=never"},
			{"3ms", done(1, "2ms"), idle, "wake=never"},
			{"3.4ms", arrive(2, "3.4ms"), idle, "wake=4ms"},
			{"4ms", timer, idle, "[2] wake=never"},
			{"9ms", done(1, "2ms"), idle, "wake=never"},
			{"12ms", arrive(3, "12ms"), idle, "[3] wake=never"}, // its window ended at 10ms
		}},
		{"tick rounds from when the timer was armed, once", "fixed:window=1ms,tick=600us", []step{
			{"100us", arrive(1, "100us"), idle, "wake=1.3ms"},
			{"1.2ms", arrive(2, "1.2ms"), idle, "wake=1.3ms"}, // not re-rounded from 1.2ms
			{"1.3ms", timer, idle, "[1 2] wake=never"},
		}},
		{"fastpath: lone request on an idle engine goes at once", "fastpath:window=1ms", []step{
			{"0s", arrive(1, "0s"), idle, "[1] wake=never"},
			{"100us", arrive(2, "100us"), busy, "wake=1.1ms"},
			{"200us", arrive(3, "200us"), busy, "wake=1.1ms"},
			{"1.1ms", timer, busy, "wake=never"},
			{"1.5ms", done(1, "1.5ms"), idle, "[2 3] wake=never"},
		}},
		{"tiered: the window grows with the queue", "tiered:anchor=first", []step{
			{"0s", arrive(1, "0s"), busy, "wake=750µs"},
			{"100us", arrive(2, "100us"), busy, "wake=1ms"},
			{"200us", arrive(3, "200us"), busy, "wake=1ms"},
			{"300us", arrive(4, "300us"), busy, "wake=1ms"},
			{"400us", arrive(5, "400us"), busy, "wake=1ms"},
			{"500us", arrive(6, "500us"), busy, "wake=2ms"},
			{"2ms", timer, idle, "[1 2 3 4 5 6] wake=never"},
		}},
		{"adaptive: low rate goes at once, a burst waits W*", "adaptive:tau=10ms,max_window=1ms,target_batch=4", []step{
			{"50ms", arrive(1, "50ms"), idle, "[1] wake=never"},
			{"50ms", arrive(2, "50ms"), busy, "wake=never"},
			// λ̂ ≈ 300/s: 3 arrivals expected in W* = 1ms? no, 0.3 < theta
			{"50ms", arrive(3, "50ms"), busy, "wake=never"},
			{"51ms", done(1, "1ms"), idle, "[2 3] wake=never"},
		}},
		{"adaptive: high rate waits for the batch", "adaptive:tau=1ms,max_window=5ms,target_batch=3", []step{
			// λ̂ = (1/τ)/(1−e^{−10}) ≈ 1000/s, W* = 2/λ̂ ≈ 2ms.
			{"10ms", arrive(1, "10ms"), busy, "wake=11.999909ms"},
			// λ̂ ≈ 1000·(1+e^{−0.1}) ≈ 1905/s, W* ≈ 1.05ms from the oldest.
			{"10.1ms", arrive(2, "10.1ms"), busy, "wake=11.049915ms"},
			{"10.2ms", arrive(3, "10.2ms"), idle, "[1 2 3] wake=never"},
		}},
		{"triton: preferred sizes at once, else max_queue_delay", "triton:max_batch=8,preferred=2/4,max_queue_delay=1ms,max_queue_size=3", []step{
			{"0s", arrive(1, "0s"), idle, "wake=1ms"},
			{"100us", arrive(2, "100us"), busy, "wake=never"}, // no wake while busy: the delay is moot
			{"100us", arrive(3, "100us"), busy, "wake=never"},
			{"200us", arrive(4, "200us"), busy, "reject(4 queue full) wake=never"},
			{"300us", capacity, idle, "[1 2] wake=never"},
			{"900us", capacity, idle, "wake=1.1ms"},
			{"1.1ms", timer, idle, "[3] wake=never"},
		}},
		{"triton: queue timeout rejects", "triton:max_queue_delay=5ms,timeout=2ms", []step{
			{"0s", arrive(1, "0s"), busy, "wake=2ms"},
			{"1ms", arrive(2, "1ms"), busy, "wake=2ms"},
			{"2ms", timer, busy, "drop(1 queue timeout) wake=3ms"},
			{"2.5ms", capacity, idle, "wake=3ms"},
			{"3ms", timer, idle, "drop(2 queue timeout) wake=never"},
		}},
		{"triton: queue timeout delays", "triton:max_queue_delay=3ms,timeout=2ms,timeout_action=delay,preferred=2", []step{
			{"0s", arrive(1, "0s"), busy, "wake=2ms"},
			{"2ms", timer, busy, "wake=never"},
			{"2.5ms", arrive(2, "2.5ms"), busy, "wake=4.5ms"},
			{"3ms", capacity, policies.Engine{Free: 1, Batches: 1}, "[2] wake=never"}, // the delayed request goes last
			{"3ms", capacity, idle, "[1] wake=never"},
		}},
		{"aimd: cap grows within slo and shrinks past it", "aimd:slo=2ms,start=2,add=1,mult=0.5", []step{
			{"0s", arrive(1, "0s"), busy, "wake=never"},
			{"0s", arrive(2, "0s"), busy, "wake=never"},
			{"0s", arrive(3, "0s"), busy, "wake=never"},
			{"0s", arrive(4, "0s"), busy, "wake=never"},
			{"0s", arrive(5, "0s"), busy, "wake=never"},
			{"1ms", done(2, "1ms"), idle, "[1 2 3] wake=never"},
			{"4ms", done(3, "3ms"), idle, "[4] wake=never"},
			{"5ms", done(1, "1ms"), idle, "[5] wake=never"},
		}},
		{"deadline: EDF, largest batch that meets the earliest deadline", "deadline:max_batch=4,max_wait=10ms,batch_base=1ms,batch_per=1ms", []step{
			// Predicted batch time: 1ms + 1ms per request.
			{"0s", arriveDL(1, "0s", "20ms"), idle, "wake=10ms"}, // max_wait
			{"0s", arriveDL(2, "0s", "5ms"), idle, "wake=2ms"},   // latest start of [2 1] as one batch
			{"0s", arriveDL(3, "0s", "1ms"), idle, "drop(3 deadline) wake=2ms"},
			{"0s", arriveDL(4, "0s", "4ms"), idle, "[4 2 1] wake=never"}, // 4ms of work meets 4ms
			{"1ms", arriveDL(5, "1ms", "6ms"), busy, "wake=4.000001ms"},
			{"4.000001ms", timer, busy, "drop(5 deadline) wake=never"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := policies.Parse(tt.spec)
			require.NoError(t, err)
			for i, s := range tt.steps {
				got := render(p.Step(dur(s.at), s.ev, s.eng))
				assert.Equal(t, s.want, got, "step %d at %s", i, s.at)
			}
		})
	}
}
