package sim

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/batchkit/batchkit/policies"
	"github.com/batchkit/batchkit/trace"
)

// Source yields trace requests in arrival order; *trace.Reader is one.
// Read may return n > 0 with io.EOF.
type Source interface {
	Read(buf []trace.Request) (int, error)
}

// SliceSource serves requests from memory.
type SliceSource struct {
	Reqs []trace.Request
	i    int
}

// Read implements Source.
func (s *SliceSource) Read(buf []trace.Request) (int, error) {
	n := copy(buf, s.Reqs[s.i:])
	s.i += n
	if s.i == len(s.Reqs) {
		return n, io.EOF
	}
	return n, nil
}

// Config is one simulation run.
type Config struct {
	Profile Profile
	Policy  policies.Policy
	// Clients > 0 selects a closed loop: each client sends the trace's next
	// request Think after its previous one left. 0 is open loop at the
	// trace's arrival times divided by Speedup (0 means 1).
	Clients int
	Think   time.Duration
	Speedup float64
	Seed    uint64
	Trim    Trim
	// Total is the number of requests the source holds, if known.
	Total int64
	// Trace and profile names for the summary.
	Trace string
	// SkipSummary leaves the Summary empty (only names set): for callers
	// that want the results stream alone, and to benchmark the model.
	SkipSummary bool
	// Results, if set, receives every request's record in the order they
	// leave the server.
	Results func(*Result) error
}

// Stats counts the simulator's work.
type Stats struct {
	Requests int64
	// Events: arrivals, timers and plan completions the driver handled,
	// plus policy steps.
	Events int64
	Plans  int64
	Steps  int64
}

// Run simulates the serving model on a virtual clock: the thin driver
// around Server that replay mirrors on the wall clock.
func Run(cfg Config, src Source) (Summary, Stats, error) {
	var st Stats
	col, err := NewCollector(cfg.Trim, cfg.Total)
	if err != nil {
		return Summary{}, st, err
	}
	speed := cfg.Speedup
	if speed == 0 {
		speed = 1
	}
	if !(speed > 0) || math.IsInf(speed, 0) {
		return Summary{}, st, fmt.Errorf("speedup %v must be a positive number", cfg.Speedup)
	}
	if cfg.Clients < 0 || cfg.Think < 0 {
		return Summary{}, st, fmt.Errorf("clients %d and think %v must not be negative", cfg.Clients, cfg.Think)
	}
	closed := cfg.Clients > 0
	cool := cfg.Trim.CooldownNS > 0 && !cfg.SkipSummary
	var sends ClientQueue
	var werr error
	srvCfg := ServerConfig{Profile: cfg.Profile, MultiStep: true}
	srvCfg.Done = func(r *Result, client int32, seq int64) {
		if !cfg.SkipSummary {
			col.Add(r, seq)
		}
		st.Requests++
		if cfg.Results != nil && werr == nil {
			werr = cfg.Results(r)
		}
		if closed {
			sends.Push(ClientSend{T: r.FinishNS + int64(cfg.Think), Client: client})
		}
	}
	srv, err := NewServer(srvCfg, cfg.Policy)
	if err != nil {
		return Summary{}, st, err
	}
	cost := NewCostModel(cfg.Profile, cfg.Seed)

	buf := make([]trace.Request, 4096)
	bi, bn := 0, 0
	eof := false
	var row int64
	next := func() (*trace.Request, error) {
		if bi == bn {
			if eof {
				return nil, nil
			}
			n, err := src.Read(buf)
			if errors.Is(err, io.EOF) {
				eof = true
			} else if err != nil {
				return nil, err
			}
			bi, bn = 0, n
			if n == 0 {
				return nil, nil
			}
		}
		bi++
		row++
		return &buf[bi-1], nil
	}
	scale := func(ns int64) int64 {
		if speed == 1 {
			return ns
		}
		return int64(math.Round(float64(ns) / speed))
	}
	toReq := func(q *trace.Request, at int64, client int32) Request {
		r := Request{ID: q.RequestID, InputTokens: q.InputTokens, OutputTokens: q.OutputTokens, Client: client}
		if q.Priority != nil {
			r.Priority = *q.Priority
		}
		if q.DeadlineNS != nil {
			r.Deadline = time.Duration(at + max(1, scale(*q.DeadlineNS-q.ArrivalNS)))
		}
		return r
	}

	const inf = int64(math.MaxInt64)
	var pending *trace.Request // open loop: the next arrival
	var pendingAt int64
	if closed {
		for c := 0; c < cfg.Clients; c++ {
			sends.Push(ClientSend{T: 0, Client: int32(c)})
		}
	} else {
		if pending, err = next(); err != nil {
			return Summary{}, st, err
		}
		if pending != nil {
			pendingAt = scale(pending.ArrivalNS)
		}
	}
	var timing PlanTiming
	var planStart, stepEnd int64
	var planSteps int
	now := int64(0)
	for {
		tA := inf
		if closed {
			if !eof || bi < bn {
				if sends.Len() > 0 {
					tA = sends.Min().T
				}
			}
		} else if pending != nil {
			tA = pendingAt
		}
		tT := int64(srv.NextTimer())
		tS := inf
		if srv.InFlight() {
			tS = stepEnd
		}
		now = min(tA, tT, tS)
		if now == inf {
			break
		}
		st.Events++
		switch {
		case tS == now:
			srv.StepDone(time.Duration(now), time.Duration(planStart+timing.Boundary(1)))
			st.Steps += int64(planSteps)
		case tA == now && closed:
			c := sends.Pop()
			q, err := next()
			if err != nil {
				return Summary{}, st, err
			}
			if q == nil {
				continue
			}
			if row == 1 {
				col.FirstArrival(now)
			}
			if cool {
				col.Arrived(now)
			}
			srv.Arrive(time.Duration(now), toReq(q, now, c.Client))
		case tA == now:
			if row == 1 {
				col.FirstArrival(now)
			}
			if cool {
				col.Arrived(now)
			}
			srv.Arrive(time.Duration(now), toReq(pending, now, -1))
			if pending, err = next(); err != nil {
				return Summary{}, st, err
			}
			if pending != nil {
				at := scale(pending.ArrivalNS)
				if at < now {
					return Summary{}, st, fmt.Errorf("trace row %d: field arrival_ns: %d goes back in time", row, pending.ArrivalNS)
				}
				pendingAt = at
			}
		default:
			srv.Timer(time.Duration(now))
		}
		if werr != nil {
			return Summary{}, st, werr
		}
		if !srv.InFlight() {
			if plan := srv.nextStep(time.Duration(now)); plan != nil {
				cost.time(plan, &timing)
				planStart, planSteps = now, plan.Steps
				stepEnd = now + timing.Boundary(plan.Steps)
				st.Plans++
			}
		} else if srv.CutWanted() {
			if j := timing.StepsBy(now - planStart); j < planSteps {
				srv.Cut(j)
				planSteps = j
				stepEnd = planStart + timing.Boundary(j)
			}
		}
	}
	st.Events += srv.Events
	if srv.Pending() > 0 {
		return Summary{}, st, fmt.Errorf("policy %s holds %d requests with no wake-up and an idle engine at %v", cfg.Policy.Spec(), srv.Pending(), time.Duration(now))
	}
	return col.Summary(cfg.Policy.Spec(), cfg.Trace, cfg.Profile.Name, cfg.Seed), st, nil
}
