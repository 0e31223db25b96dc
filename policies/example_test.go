package policies_test

import (
	"fmt"
	"sync"
	"time"

	"github.com/batchkit/batchkit/policies"
)

// everyN dispatches as soon as n requests are queued and the engine can take
// them; a user's own policy, written against the public API only.
type everyN struct {
	spec  string
	n     int
	queue []policies.Request
	out   []policies.Batch
}

func (p *everyN) Step(now time.Duration, ev policies.Event, eng policies.Engine) policies.Decision {
	if ev.Kind == policies.EventArrival {
		p.queue = append(p.queue, ev.Request)
	}
	p.out = p.out[:0]
	if len(p.queue) >= p.n && eng.Batches > 0 && eng.Free >= p.n {
		p.out = append(p.out, policies.Batch(p.queue[:p.n:p.n]))
		p.queue = append([]policies.Request(nil), p.queue[p.n:]...)
	}
	return policies.Decision{Batches: p.out, Wake: policies.NoWake}
}

func (p *everyN) Queued() int  { return len(p.queue) }
func (p *everyN) Spec() string { return p.spec }

// registerEvery registers the policy once per process, as an init function
// of the user's package would; sync.Once keeps `go test -count=2` working.
var registerEvery = sync.OnceValue(func() error {
	return policies.Register(policies.Def{
		Name:    "every",
		Meaning: "dispatch exactly n requests at a time",
		Params:  []policies.Param{{Key: "n", Default: "4", Meaning: "batch size"}},
		New: func(a *policies.Args) (policies.Policy, error) {
			n := a.Int("n")
			if err := a.Err(); err != nil {
				return nil, err
			}
			if n < 1 {
				return nil, a.Invalid("n", "must be ≥ 1")
			}
			return &everyN{spec: a.Spec(), n: n}, nil
		},
	})
})

func ExampleRegister() {
	if err := registerEvery(); err != nil {
		fmt.Println(err)
		return
	}
	p, err := policies.Parse("every:n=2")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Spec())
	idle := policies.Engine{Idle: true, Free: 8, Batches: 1}
	for i := range 2 {
		d := p.Step(time.Duration(i)*time.Millisecond, policies.Event{Kind: policies.EventArrival, Request: policies.Request{ID: int64(i + 1)}}, idle)
		fmt.Println("batches:", len(d.Batches))
	}
	_, err = policies.Parse("every:n=0")
	fmt.Println(err)
	// Output:
	// every:n=2
	// batches: 0
	// batches: 1
	// policies: every: n=0: must be ≥ 1
}

func ExampleParse() {
	p, err := policies.Parse("fixed:window=750us,anchor=collector")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Spec())
	// The collector's first window runs from the start of the run to 750us.
	d := p.Step(200*time.Microsecond, policies.Event{Kind: policies.EventArrival, Request: policies.Request{ID: 1, Arrival: 200 * time.Microsecond}},
		policies.Engine{Idle: true, Free: 8, Batches: 1})
	fmt.Println("wake at", d.Wake)
	_, err = policies.Parse("fixed:window=-1ms")
	fmt.Println(err)
	_, err = policies.Parse("fixed:windw=1ms")
	fmt.Println(err)
	// Output:
	// fixed:window=750us,max_batch=8,anchor=collector
	// wake at 750µs
	// policies: fixed: window=-1ms: must be ≥ 0
	// policies: fixed: unknown key "windw" (valid keys: window, max_batch, anchor, tick)
}
