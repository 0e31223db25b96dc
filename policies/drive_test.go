package policies_test

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/batchkit/batchkit/policies"
)

// engineModel is a toy engine for the test driver: a static engine takes one
// batch at a time of up to slots requests; a continuous one takes batches as
// long as fewer than slots requests are in flight.
type engineModel struct {
	continuous bool
	slots      int
	base, per  time.Duration // batch time = base + per·size
}

type flight struct {
	end  time.Duration
	reqs []policies.Request
}

// driver feeds a scripted arrival sequence to a policy on a virtual clock,
// checks every invariant of the Policy contract at each Step, and can write
// a readable transcript.
type driver struct {
	p        policies.Policy
	eng      engineModel
	arrivals []policies.Request // sorted by Arrival
	noise    []uint8            // optional extra EventCapacity steps, consumed in order

	now     time.Duration
	wake    time.Duration
	running []flight
	queued  map[int64]policies.Request
	outcome map[int64]string
	log     *strings.Builder
	steps   int
	// twin, for a policies.Skipper, is a second copy stepped only with the
	// events Skips does not skip: it must decide exactly as p.
	twin policies.Policy
}

func newDriver(p policies.Policy, eng engineModel, arrivals []policies.Request) *driver {
	d := &driver{p: p, eng: eng, arrivals: arrivals, wake: policies.NoWake,
		queued: map[int64]policies.Request{}, outcome: map[int64]string{}}
	if _, ok := p.(policies.Skipper); ok {
		d.twin, _ = policies.Parse(p.Spec())
	}
	return d
}

// checkTwin steps the twin unless the policy skips ev, and compares.
func (d *driver) checkTwin(ev policies.Event, eng policies.Engine, dec policies.Decision) error {
	if d.twin == nil {
		return nil
	}
	if ev.Kind != policies.EventArrival && d.twin.(policies.Skipper).Skips(ev.Kind, eng) {
		if len(dec.Batches) > 0 || len(dec.Drops) > 0 || dec.Wake != policies.NoWake {
			return fmt.Errorf("%s: at %s Skips(%d) but Step decided %+v", d.p.Spec(), ms(d.now), ev.Kind, dec)
		}
		return nil
	}
	tw := d.twin.Step(d.now, ev, eng)
	if fmt.Sprint(tw) != fmt.Sprint(dec) || d.twin.Queued() != d.p.Queued() {
		return fmt.Errorf("%s: at %s a twin that skipped Steps decided %+v, not %+v", d.p.Spec(), ms(d.now), tw, dec)
	}
	return nil
}

func (d *driver) engine() policies.Engine {
	inflight := 0
	for _, f := range d.running {
		inflight += len(f.reqs)
	}
	if !d.eng.continuous {
		if len(d.running) > 0 {
			return policies.Engine{}
		}
		return policies.Engine{Idle: true, Free: d.eng.slots, Batches: 1}
	}
	free := d.eng.slots - inflight
	return policies.Engine{Idle: len(d.running) == 0, Free: free, Batches: free}
}

func ms(t time.Duration) string {
	if t == policies.NoWake {
		return "never"
	}
	return fmt.Sprintf("%.3fms", float64(t)/1e6)
}

// step sends one event and checks the decision against the contract.
func (d *driver) step(ev policies.Event) error {
	d.steps++
	if d.steps > 200000 {
		return fmt.Errorf("%s: no progress after %d steps at %s", d.p.Spec(), d.steps, ms(d.now))
	}
	eng := d.engine()
	if ev.Kind == policies.EventArrival {
		d.queued[ev.Request.ID] = ev.Request
	}
	dec := d.p.Step(d.now, ev, eng)
	if err := d.checkTwin(ev, eng, dec); err != nil {
		return err
	}
	if dec.Wake < d.now {
		return fmt.Errorf("%s: at %s wake %s is in the past", d.p.Spec(), ms(d.now), ms(dec.Wake))
	}
	if len(dec.Batches) > eng.Batches {
		return fmt.Errorf("%s: at %s %d batches, engine takes %d", d.p.Spec(), ms(d.now), len(dec.Batches), eng.Batches)
	}
	total := 0
	var line strings.Builder
	for _, b := range dec.Batches {
		if len(b) == 0 {
			return fmt.Errorf("%s: at %s empty batch", d.p.Spec(), ms(d.now))
		}
		total += len(b)
		ids := make([]string, len(b))
		for i, r := range b {
			if r.Arrival > d.now {
				return fmt.Errorf("%s: at %s request %d dispatched before its arrival %s", d.p.Spec(), ms(d.now), r.ID, ms(r.Arrival))
			}
			if err := d.resolve(r.ID, "dispatched"); err != nil {
				return err
			}
			ids[i] = fmt.Sprint(r.ID)
		}
		fmt.Fprintf(&line, " dispatch[%s]", strings.Join(ids, " "))
		svc := d.eng.base + d.eng.per*time.Duration(len(b))
		d.running = append(d.running, flight{end: d.now + svc, reqs: slices.Clone(b)})
	}
	if total > eng.Free {
		return fmt.Errorf("%s: at %s dispatched %d, engine free %d", d.p.Spec(), ms(d.now), total, eng.Free)
	}
	for _, x := range dec.Drops {
		if x.Reason != policies.Rejected && x.Reason != policies.Dropped || x.Why == "" {
			return fmt.Errorf("%s: at %s drop of %d without reason", d.p.Spec(), ms(d.now), x.Request.ID)
		}
		if err := d.resolve(x.Request.ID, "dropped"); err != nil {
			return err
		}
		kind := "reject"
		if x.Reason == policies.Dropped {
			kind = "drop"
		}
		fmt.Fprintf(&line, " %s[%d: %s]", kind, x.Request.ID, x.Why)
	}
	if d.p.Queued() != len(d.queued) {
		return fmt.Errorf("%s: at %s policy says %d queued, driver counts %d", d.p.Spec(), ms(d.now), d.p.Queued(), len(d.queued))
	}
	d.wake = dec.Wake
	if d.log != nil {
		what := map[policies.EventKind]string{policies.EventArrival: fmt.Sprintf("arrive %d", ev.Request.ID),
			policies.EventBatchDone: fmt.Sprintf("done %d", ev.BatchSize), policies.EventTimer: "timer",
			policies.EventCapacity: "capacity", policies.EventAccepted: "accepted", policies.EventRequestDone: "req-done"}[ev.Kind]
		if ev.Kind != policies.EventAccepted && ev.Kind != policies.EventRequestDone || line.Len() > 0 {
			fmt.Fprintf(d.log, "%10s %-10s q=%-2d%s wake=%s\n", ms(d.now), what, d.p.Queued(), line.String(), ms(dec.Wake))
		}
	}
	for _, b := range dec.Batches {
		if err := d.step(policies.Event{Kind: policies.EventAccepted, BatchSize: len(b)}); err != nil {
			return err
		}
	}
	return nil
}

func (d *driver) resolve(id int64, how string) error {
	if _, ok := d.queued[id]; !ok {
		return fmt.Errorf("%s: at %s request %d %s but it is not queued (was %q)", d.p.Spec(), ms(d.now), id, how, d.outcome[id])
	}
	delete(d.queued, id)
	d.outcome[id] = how
	return nil
}

// run drives the policy until every arrival is in and the system drains.
func (d *driver) run() error {
	next := 0
	for {
		tArr, tDone := policies.NoWake, policies.NoWake
		if next < len(d.arrivals) {
			tArr = d.arrivals[next].Arrival
		}
		first := -1
		for i, f := range d.running {
			if f.end < tDone {
				tDone, first = f.end, i
			}
		}
		t := min(tArr, tDone, d.wake)
		if t == policies.NoWake {
			break
		}
		if t < d.now {
			return fmt.Errorf("%s: clock went back to %s", d.p.Spec(), ms(t))
		}
		d.now = t
		var err error
		switch {
		case tDone == t:
			f := d.running[first]
			d.running = slices.Delete(d.running, first, first+1)
			svc := d.eng.base + d.eng.per*time.Duration(len(f.reqs))
			err = d.step(policies.Event{Kind: policies.EventBatchDone, BatchSize: len(f.reqs), Service: svc})
			for _, r := range f.reqs {
				if err == nil {
					err = d.step(policies.Event{Kind: policies.EventRequestDone, Request: r, Latency: d.now - r.Arrival})
				}
			}
		case tArr == t:
			err = d.step(policies.Event{Kind: policies.EventArrival, Request: d.arrivals[next]})
			next++
			if err == nil && len(d.noise) > 0 {
				if d.noise[0]&1 == 1 {
					err = d.step(policies.Event{Kind: policies.EventCapacity})
				}
				d.noise = d.noise[1:]
			}
		default:
			d.wake = policies.NoWake
			err = d.step(policies.Event{Kind: policies.EventTimer})
		}
		if err != nil {
			return err
		}
	}
	if len(d.queued) != 0 || d.p.Queued() != 0 {
		return fmt.Errorf("%s: drained with %d requests still queued (policy says %d)", d.p.Spec(), len(d.queued), d.p.Queued())
	}
	if len(d.outcome) != len(d.arrivals) {
		return fmt.Errorf("%s: %d of %d requests resolved", d.p.Spec(), len(d.outcome), len(d.arrivals))
	}
	return nil
}
