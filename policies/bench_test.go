package policies_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/batchkit/batchkit/policies"
)

var benchSpecs = []struct{ name, spec string }{
	{"none", "none"},
	{"fixed", "fixed"},
	{"fixed-collector-tick", "fixed:anchor=collector,tick=1ms"},
	{"fastpath", "fastpath"},
	{"adaptive", "adaptive:slo=10ms"},
	{"tiered", "tiered"},
	{"triton", "triton:preferred=4/8,timeout=5ms,max_queue_size=64"},
	{"aimd", "aimd:slo=4ms"},
	{"deadline", "deadline:slo=10ms"},
}

// loadLoop is an allocation-free driver: Poisson arrivals at 2000/s into a
// static engine taking 2ms + 0.25ms per request, each request with a 10ms
// deadline. Each call to step feeds the policy one event.
type loadLoop struct {
	p                        policies.Policy
	gaps                     []time.Duration
	now, nextArr, wake, busy time.Duration
	running                  int
	id                       int64
	i                        int
}

func newLoadLoop(tb testing.TB, spec string) *loadLoop {
	p, err := policies.Parse(spec)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	l := &loadLoop{p: p, gaps: make([]time.Duration, 4096), wake: policies.NoWake, busy: policies.NoWake}
	for i := range l.gaps {
		l.gaps[i] = time.Duration(rng.ExpFloat64() * float64(500*time.Microsecond))
	}
	// Warm up so that queues and decision buffers reach their steady size.
	for range 20000 {
		l.step()
	}
	return l
}

func (l *loadLoop) step() {
	var ev policies.Event
	switch t := min(l.nextArr, l.wake, l.busy); {
	case l.busy == t:
		l.now, l.busy = t, policies.NoWake
		ev = policies.Event{Kind: policies.EventBatchDone, BatchSize: l.running, Service: 2*time.Millisecond + time.Duration(l.running)*250*time.Microsecond}
		l.running = 0
	case l.nextArr == t:
		l.now = t
		l.id++
		ev = policies.Event{Kind: policies.EventArrival, Request: policies.Request{ID: l.id, Arrival: l.now, Deadline: l.now + 10*time.Millisecond}}
		l.i++
		l.nextArr += l.gaps[l.i&(len(l.gaps)-1)]
	default:
		l.now, l.wake = t, policies.NoWake
		ev = policies.Event{Kind: policies.EventTimer}
	}
	eng := policies.Engine{}
	if l.running == 0 {
		eng = policies.Engine{Idle: true, Free: 16, Batches: 1}
	}
	d := l.p.Step(l.now, ev, eng)
	for _, bt := range d.Batches {
		l.running = len(bt)
		l.busy = l.now + 2*time.Millisecond + time.Duration(l.running)*250*time.Microsecond
	}
	l.wake = d.Wake
}

// BenchmarkStep measures one Step (one event) per op in steady state; it
// must show 0 allocs/op.
func BenchmarkStep(b *testing.B) {
	for _, bs := range benchSpecs {
		b.Run(bs.name, func(b *testing.B) {
			l := newLoadLoop(b, bs.spec)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				l.step()
			}
		})
	}
}

func TestStepZeroAllocs(t *testing.T) {
	for _, bs := range benchSpecs {
		l := newLoadLoop(t, bs.spec)
		if n := testing.AllocsPerRun(5000, l.step); n != 0 {
			t.Errorf("%s: %v allocs per Step in steady state, want 0", bs.spec, n)
		}
	}
}
