package replay

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/batchkit/batchkit/policies"
	"github.com/batchkit/batchkit/realengine"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/trace"
)

// Config is one replay run.
type Config struct {
	Engine realengine.Engine
	Policy policies.Policy
	// Profile gives the serving model's mode, max_batch, token_budget and
	// request_overhead_ms (the driver waits that long before a request
	// reaches the policy); its step costs are not used: the engine is the
	// cost.
	Profile sim.Profile
	// Requests in trace order, already limited and fitted to the engine's
	// context (Limit, FitContext).
	Requests []trace.Request
	// Clients > 0 selects a closed loop: each client sends the next request
	// Think after its previous one left. 0 is open loop at the trace's
	// arrival times divided by Speedup (0 means 1).
	Clients int
	Think   time.Duration
	Speedup float64
	// Duration stops new sends that long after the start (0: no limit).
	Duration time.Duration
	// Timeout fails a request that long after its arrival: one still
	// waiting when the policy dispatches it never reaches the engine, one
	// in the engine fails at the next step boundary (0: none).
	Timeout time.Duration
	// Drain is how long, after ctx ends, the loop keeps stepping requests
	// already inside the server before it stops (0: stop after the step in
	// flight). Sends stop at once.
	Drain time.Duration
	// Seed draws the prompt token ids (PromptTokens).
	Seed uint64
	Trim sim.Trim
	// Trace names the trace in the summary.
	Trace string
	// Clock defaults to WallClock{Spin: DefaultSpin}.
	Clock Clock
	// Results, if set, receives every request's record when it leaves the
	// server (finished, rejected, dropped or failed).
	Results func(*sim.Result) error
	// Progress, if set, is kept up to date for a progress display read
	// from another goroutine.
	Progress *Progress
}

// Progress is a run's state for a display on another goroutine.
type Progress struct {
	Total    atomic.Int64 // requests the run may send
	Sent     atomic.Int64
	Done     atomic.Int64
	InFlight atomic.Int64 // sent and not done
}

// StepRecord is one measured engine step. StartNS is when the loop handed
// it to the worker, EndNS when the loop saw it finish (ns since the run
// started); WallNS is the engine's own measure of its compute.
type StepRecord struct {
	StartNS       int64 `parquet:"start_ns" json:"start_ns"`
	EndNS         int64 `parquet:"end_ns" json:"end_ns"`
	WallNS        int64 `parquet:"wall_ns" json:"wall_ns"`
	PrefillTokens int64 `parquet:"prefill_tokens" json:"prefill_tokens"` // P
	DecodeSeqs    int32 `parquet:"decode_seqs" json:"decode_seqs"`       // D
	KVTokens      int64 `parquet:"kv_tokens" json:"kv_tokens"`           // K
	Admitted      int32 `parquet:"admitted" json:"admitted"`
	// PrefillSeqs (S) are the sequences that prefilled in the step, and
	// PrefillSquares (Q) the sum of the squares of their prefill tokens:
	// with P, D and K the terms of the profile's step cost. Files written
	// before they existed read as 0.
	PrefillSeqs    int32 `parquet:"prefill_seqs" json:"prefill_seqs"`
	PrefillSquares int64 `parquet:"prefill_squares" json:"prefill_squares"`
}

// Report is what a run measured besides the per-request results.
type Report struct {
	Summary sim.Summary
	Steps   []StepRecord
	// Dispatch: lateness of every timer the server asked for (policy
	// wake-ups and ends of the per-request overhead); Send: of every
	// open-loop send against the trace.
	Dispatch, Send Lateness
	// Sent is how many requests were sent: Requests[:Sent].
	Sent int
	// Unfinished counts requests inside the server when an interrupted run
	// stopped; they have no result.
	Unfinished  int
	Interrupted bool
	// Failed counts requests the engine failed or that timed out.
	Failed int
}

type job struct {
	retire []int64
	admit  []realengine.Sequence
	// expired: dispatched after waiting longer than the timeout; they
	// never reach the engine and fail when this job's step ends.
	expired []int64
}

type outcome struct {
	res      realengine.StepResult
	admitErr map[int64]error
	err      error
	stepped  bool
}

// worker runs the engine; it never reads the clock (the engine measures
// its own compute). A pinned engine's worker runs on the engine's thread,
// so a job costs one hand-off there and back rather than one per call.
func worker(ctx context.Context, eng realengine.Engine, jobs <-chan job, out chan<- outcome) {
	run := func(eng realengine.Engine) {
		for j := range jobs {
			out <- runJob(ctx, eng, j)
		}
	}
	if p, ok := eng.(realengine.Pinned); ok {
		p.Pin(run)
		return
	}
	run(eng)
}

// runJob retires, admits and steps as job j says.
func runJob(ctx context.Context, eng realengine.Engine, j job) outcome {
	var o outcome
	for _, id := range j.retire {
		// A sequence whose Admit failed is unknown to the engine.
		if err := eng.Retire(realengine.SeqID(id)); err != nil && !errors.Is(err, realengine.ErrUnknownSequence) {
			o.err = fmt.Errorf("engine: retire %d: %w", id, err)
		}
	}
	for _, s := range j.admit {
		if err := eng.Admit(s); err != nil {
			if o.admitErr == nil {
				o.admitErr = map[int64]error{}
			}
			o.admitErr[int64(s.ID)] = err
		}
	}
	if o.err == nil && eng.Stats().Sequences > 0 {
		o.res, o.err = eng.Step(ctx)
		o.stepped = true
	}
	return o
}

type reqInfo struct {
	in, out int32
}

// Run replays cfg.Requests against cfg.Engine. When ctx ends it stops
// sending, drains for cfg.Drain, and returns the report of everything that
// finished with Interrupted set and no error. Engine-wide failures return
// an error together with the report so far; results already handed to
// cfg.Results stay valid.
func Run(ctx context.Context, cfg Config) (Report, error) {
	var rep Report
	if cfg.Engine == nil || cfg.Policy == nil {
		return rep, errors.New("replay: engine and policy are required")
	}
	speed := cfg.Speedup
	if speed == 0 {
		speed = 1
	}
	if !(speed > 0) || math.IsInf(speed, 0) {
		return rep, fmt.Errorf("speedup %v must be a positive number", cfg.Speedup)
	}
	if cfg.Clients < 0 || cfg.Think < 0 || cfg.Duration < 0 || cfg.Timeout < 0 || cfg.Drain < 0 {
		return rep, errors.New("clients, think, duration, timeout and drain must not be negative")
	}
	clk := cfg.Clock
	if clk == nil {
		clk = WallClock{Spin: DefaultSpin}
	}
	info := cfg.Engine.Info()
	vocab := info.Config.VocabSize
	if vocab < 1 {
		return rep, fmt.Errorf("engine %s: model has no vocabulary", info.Engine)
	}
	reqs := cfg.Requests
	col, err := sim.NewCollector(cfg.Trim, int64(len(reqs)))
	if err != nil {
		return rep, err
	}
	if cfg.Progress != nil {
		cfg.Progress.Total.Store(int64(len(reqs)))
	}
	byID := make(map[int64]reqInfo, len(reqs))
	for _, r := range reqs {
		if _, dup := byID[r.RequestID]; dup {
			return rep, fmt.Errorf("request_id %d appears twice", r.RequestID)
		}
		byID[r.RequestID] = reqInfo{r.InputTokens, r.OutputTokens}
	}

	closed := cfg.Clients > 0
	var sends sim.ClientQueue
	failMsg := map[int64]string{}
	running := map[int64]int64{} // trace id -> arrival ns, for timeouts
	arrivedAt := map[int64]int64{}
	var werr error
	srvCfg := sim.ServerConfig{Profile: cfg.Profile}
	srvCfg.Done = func(r *sim.Result, client int32, seq int64) {
		if msg, ok := failMsg[r.RequestID]; ok {
			// The engine failed it in the step that also finished it.
			r.Status, r.Error = sim.StatusFailed, msg
		}
		if r.Status == sim.StatusFailed {
			rep.Failed++
		}
		delete(running, r.RequestID)
		delete(arrivedAt, r.RequestID)
		col.Add(r, seq)
		if cfg.Results != nil && werr == nil {
			werr = cfg.Results(r)
		}
		if cfg.Progress != nil {
			cfg.Progress.Done.Add(1)
			cfg.Progress.InFlight.Add(-1)
		}
		if closed {
			sends.Push(sim.ClientSend{T: r.FinishNS + int64(cfg.Think), Client: client})
		}
	}
	srv, err := sim.NewServer(srvCfg, cfg.Policy)
	if err != nil {
		return rep, err
	}

	engCtx, engCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer engCancel()
	jobs := make(chan job)
	done := make(chan outcome, 1)
	go worker(engCtx, cfg.Engine, jobs, done)
	_, pinned := cfg.Engine.(realengine.Pinned)
	var dispatch, send lateRec
	var retireLeft []int64
	defer func() {
		close(jobs)
		// Free whatever the engine still holds so that it can be reused
		// (the bare-engine run follows in the same process).
		for _, id := range retireLeft {
			_ = cfg.Engine.Retire(realengine.SeqID(id))
		}
	}()

	const inf = int64(math.MaxInt64)
	t0 := clk.Now()
	nowNS := func() int64 { return int64(clk.Now().Sub(t0)) }
	scale := func(ns int64) int64 {
		if speed == 1 {
			return ns
		}
		return int64(math.Round(float64(ns) / speed))
	}
	next := 0 // index of the next request to send
	if closed {
		for c := 0; c < cfg.Clients; c++ {
			sends.Push(sim.ClientSend{T: 0, Client: int32(c)})
		}
	}
	stopSends := false
	stopAt := inf // drain deadline after ctx ended
	inFlight := false
	var stepStart int64
	var cur job
	ctxDone := ctx.Done()
	timer := clk.NewTimer(time.Hour)
	timer.Stop()

	arrive := func(now int64, q *trace.Request, client int32) {
		r := sim.Request{ID: q.RequestID, InputTokens: q.InputTokens, OutputTokens: q.OutputTokens, Client: client}
		if q.Priority != nil {
			r.Priority = *q.Priority
		}
		if q.DeadlineNS != nil {
			r.Deadline = time.Duration(now + max(1, scale(*q.DeadlineNS-q.ArrivalNS)))
		}
		if next == 1 {
			col.FirstArrival(now)
		}
		if cfg.Trim.CooldownNS > 0 {
			col.Arrived(now)
		}
		if cfg.Progress != nil {
			cfg.Progress.Sent.Add(1)
			cfg.Progress.InFlight.Add(1)
		}
		arrivedAt[q.RequestID] = now
		srv.Arrive(time.Duration(now), r)
	}

	finishStep := func(now int64, o outcome) error {
		inFlight = false
		if o.err != nil {
			return o.err
		}
		st := StepRecord{
			StartNS: stepStart, EndNS: now, WallNS: int64(o.res.Wall),
			PrefillTokens: int64(o.res.PrefillTokens), DecodeSeqs: int32(o.res.DecodeSeqs),
			KVTokens: int64(o.res.KVTokens), Admitted: int32(len(cur.admit)),
		}
		for _, so := range o.res.Outputs {
			if so.Prefill > 0 {
				st.PrefillSeqs++
				st.PrefillSquares += int64(so.Prefill) * int64(so.Prefill)
			}
		}
		rep.Steps = append(rep.Steps, st)
		var failed []int64
		for id, e := range o.admitErr {
			failMsg[id] = "engine: " + e.Error()
			failed = append(failed, id)
		}
		for _, id := range cur.expired {
			failMsg[id] = fmt.Sprintf("timeout: waited longer than %v before reaching the engine", cfg.Timeout)
			failed = append(failed, id)
		}
		for _, so := range o.res.Outputs {
			if so.Err != nil {
				id := int64(so.ID)
				failMsg[id] = "engine: " + so.Err.Error()
				failed = append(failed, id)
			}
		}
		srv.StepDone(time.Duration(now), time.Duration(now))
		// Map order is random: fail in id order for determinism.
		slices.Sort(failed)
		for _, id := range failed {
			srv.Fail(time.Duration(now), id, failMsg[id])
		}
		if cfg.Timeout > 0 {
			var late []int64
			for id, at := range running {
				if now-at > int64(cfg.Timeout) {
					late = append(late, id)
				}
			}
			slices.Sort(late)
			for _, id := range late {
				msg := fmt.Sprintf("timeout: still running %v after arrival", cfg.Timeout)
				failMsg[id] = msg
				srv.Fail(time.Duration(now), id, msg)
			}
		}
		return nil
	}

	// quiet says whether the loop has nothing to wait for but the engine:
	// no open-loop send left, no closed-loop client ready, no timer and no
	// drain deadline.
	quiet := func() bool {
		if stopAt != inf || ctx.Err() != nil || srv.NextTimer() != math.MaxInt64 {
			// A drain's deadline must be able to abort the step, and
			// Ctrl-C is seen by the loop's wait.
			return false
		}
		if stopSends || next >= len(reqs) {
			return true
		}
		return closed && sends.Len() == 0
	}

	var runErr error
loop:
	for {
		now := nowNS()
		if stopAt != inf && now >= stopAt {
			break
		}
		// Sends stop at the duration limit or when ctx ends.
		if !stopSends && cfg.Duration > 0 && now >= int64(cfg.Duration) {
			stopSends = true
		}
		tA := inf
		if !stopSends && next < len(reqs) {
			if closed {
				if sends.Len() > 0 {
					tA = sends.Min().T
				}
			} else {
				tA = scale(reqs[next].ArrivalNS)
			}
		}
		tT := int64(srv.NextTimer())
		// Priority at equal times follows sim.Run: step completion, then
		// a send, then the server's timer.
		if inFlight {
			select {
			case o := <-done:
				if runErr = finishStep(now, o); runErr != nil {
					break loop
				}
				goto plan
			default:
			}
		}
		if tA != inf && now >= tA {
			if closed {
				c := sends.Pop()
				q := &reqs[next]
				next++
				arrive(now, q, c.Client)
			} else {
				send.add(now - tA)
				q := &reqs[next]
				next++
				arrive(now, q, -1)
			}
			goto plan
		}
		if tT != inf && now >= tT {
			dispatch.add(now - tT)
			srv.Timer(time.Duration(now))
			goto plan
		}
		// Nothing due: finished, stuck, or wait.
		if !inFlight && tA == inf && tT == inf {
			if srv.Pending() == 0 || stopAt != inf {
				break loop
			}
			runErr = fmt.Errorf("policy %s holds %d requests with no wake-up and an idle engine at %v", cfg.Policy.Spec(), srv.Pending(), time.Duration(now))
			break loop
		}
		{
			deadline := min(tA, tT)
			var doneCh <-chan outcome
			if inFlight {
				doneCh = done
			}
			if stopAt != inf {
				deadline = min(deadline, stopAt)
			}
			got, o := wait(clk, t0, deadline, doneCh, ctxDone, timer)
			switch got {
			case waitDone:
				now = nowNS()
				if runErr = finishStep(now, o); runErr != nil {
					break loop
				}
			case waitCtx:
				ctxDone = nil
				stopSends = true
				rep.Interrupted = true
				stopAt = nowNS() + int64(cfg.Drain)
				continue
			default:
				continue
			}
		}
	plan:
		if werr != nil {
			runErr = werr
			break loop
		}
		now = nowNS()
		if !inFlight && (stopAt == inf || now < stopAt) {
			if p, ok := srv.NextStep(time.Duration(now)); ok {
				cur = job{retire: slices.Clone(p.Retired)}
				for _, id := range p.Admitted {
					if cfg.Timeout > 0 && now-arrivedAt[id] > int64(cfg.Timeout) {
						cur.expired = append(cur.expired, id)
						continue
					}
					ri := byID[id]
					cur.admit = append(cur.admit, realengine.Sequence{
						ID: realengine.SeqID(id), Prompt: PromptTokens(id, int(ri.in), vocab, cfg.Seed),
						MaxNewTokens: int(ri.out),
					})
					running[id] = arrivedAt[id]
				}
				stepStart = now
				if quiet() && !pinned {
					// Nothing can happen before this step ends (no send
					// due, no timer armed): run it on this goroutine
					// and spare the hand-offs to the worker and back.
					// (A pinned engine is the worker's until jobs close.)
					o := runJob(engCtx, cfg.Engine, cur)
					if runErr = finishStep(nowNS(), o); runErr != nil {
						break loop
					}
					goto plan
				}
				inFlight = true
				jobs <- cur
			}
		}
	}
	if inFlight {
		// Without a drain the step in flight finishes (one step is short
		// and its tokens are work already done); after a drain it is
		// aborted, and the engine rolls it back. Either way the worker is
		// quiet when Run returns.
		if rep.Interrupted && cfg.Drain > 0 {
			engCancel()
		}
		o := <-done
		if runErr == nil && !errors.Is(o.err, context.Canceled) {
			runErr = finishStep(nowNS(), o)
		}
	}
	if !srv.InFlight() {
		retireLeft = append(retireLeft, srv.Retired()...)
	}
	for id := range running {
		retireLeft = append(retireLeft, id)
	}
	rep.Unfinished = srv.Pending()
	rep.Sent = next
	rep.Dispatch, rep.Send = dispatch.summary(), send.summary()
	rep.Summary = col.Summary(cfg.Policy.Spec(), cfg.Trace, cfg.Profile.Name, cfg.Seed)
	if rep.Interrupted {
		rep.Summary.Warnings = append(rep.Summary.Warnings, fmt.Sprintf("interrupted: %d of %d requests sent, %d unfinished (no result)", rep.Sent, len(reqs), rep.Unfinished))
	}
	if rep.Failed > 0 {
		rep.Summary.Warnings = append(rep.Summary.Warnings, fmt.Sprintf("%d requests failed in the engine or timed out", rep.Failed))
	}
	return rep, runErr
}

const (
	waitTime = iota
	waitDone
	waitCtx
)

// wait blocks until deadline (ns since t0; MaxInt64: none), a step
// outcome on doneCh or the end of ctxDone, whichever comes first. It
// sleeps on timer until SpinMargin before the deadline and busy-waits the
// rest, still watching the channels.
func wait(clk Clock, t0 time.Time, deadline int64, doneCh <-chan outcome, ctxDone <-chan struct{}, timer *time.Timer) (int, outcome) {
	margin := clk.SpinMargin()
	var tc <-chan time.Time
	if deadline != math.MaxInt64 {
		d := time.Duration(deadline) - clk.Now().Sub(t0) - margin
		if d <= 0 {
			goto spin
		}
		timer.Reset(d)
		tc = timer.C
	}
	select {
	case o := <-doneCh:
		timer.Stop()
		return waitDone, o
	case <-ctxDone:
		timer.Stop()
		return waitCtx, outcome{}
	case <-tc:
	}
spin:
	for margin > 0 && int64(clk.Now().Sub(t0)) < deadline {
		select {
		case o := <-doneCh:
			return waitDone, o
		case <-ctxDone:
			return waitCtx, outcome{}
		default:
		}
		runtime.Gosched()
	}
	return waitTime, outcome{}
}
