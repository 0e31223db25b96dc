package replay_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/batchkit/batchkit/realengine"
	"github.com/batchkit/batchkit/sim"
)

// fakeEngine is a deterministic realengine.Engine whose step takes exactly
// the simulator's step cost (no jitter), slept on the clock of the
// synctest bubble it runs in.
type fakeEngine struct {
	cost  sim.StepCost
	seqs  map[realengine.SeqID]*fakeSeq
	order []realengine.SeqID
	// failAdmit and failStep (id -> 1-based step of the sequence at which
	// it fails) inject errors.
	failAdmit map[realengine.SeqID]bool
	failStep  map[realengine.SeqID]int
	maxCtx    int
	steps     int
}

type fakeSeq struct {
	prompt, gen int
	pending     bool
	failed      bool
}

func newFake(c sim.StepCost) *fakeEngine {
	return &fakeEngine{cost: c, seqs: map[realengine.SeqID]*fakeSeq{}, maxCtx: 4096}
}

func (e *fakeEngine) Info() realengine.Info {
	return realengine.Info{Engine: "fake", Model: "fake", Device: "none",
		Config: realengine.Config{VocabSize: 100, MaxPositionEmbeddings: e.maxCtx}}
}

func (e *fakeEngine) Admit(s realengine.Sequence) error {
	if _, dup := e.seqs[s.ID]; dup {
		return fmt.Errorf("sequence %d: already admitted", s.ID)
	}
	if e.failAdmit[s.ID] {
		return errors.New("injected admit failure")
	}
	for _, t := range s.Prompt {
		if t < 0 || t >= 100 {
			return fmt.Errorf("token %d outside vocabulary", t)
		}
	}
	e.seqs[s.ID] = &fakeSeq{prompt: len(s.Prompt), pending: true}
	e.order = append(e.order, s.ID)
	return nil
}

func (e *fakeEngine) Step(ctx context.Context) (realengine.StepResult, error) {
	var r realengine.StepResult
	for _, id := range e.order {
		s := e.seqs[id]
		if s.failed {
			continue
		}
		if s.pending {
			r.PrefillTokens += s.prompt
		} else {
			r.DecodeSeqs++
			r.KVTokens += s.prompt + s.gen
		}
	}
	d := time.Duration(1e6 * (e.cost.BaseMS + e.cost.PerPrefillTokenMS*float64(r.PrefillTokens) +
		e.cost.PerDecodeSeqMS*float64(r.DecodeSeqs) + e.cost.PerKVTokenMS*float64(r.KVTokens)))
	d = d.Round(time.Microsecond)
	start := time.Now()
	t := time.NewTimer(d)
	select {
	case <-ctx.Done():
		t.Stop()
		return realengine.StepResult{}, ctx.Err()
	case <-t.C:
	}
	r.Wall = time.Since(start)
	e.steps++
	for _, id := range e.order {
		s := e.seqs[id]
		if s.failed {
			continue
		}
		s.pending = false
		s.gen++
		out := realengine.SeqOutput{ID: id, Token: 1, Context: s.prompt + s.gen}
		if n, ok := e.failStep[id]; ok && s.gen >= n {
			s.failed = true
			out.Err = errors.New("injected step failure")
			out.Token = realengine.NoToken
		}
		r.Outputs = append(r.Outputs, out)
	}
	return r, nil
}

func (e *fakeEngine) Retire(id realengine.SeqID) error {
	if _, ok := e.seqs[id]; !ok {
		return realengine.ErrUnknownSequence
	}
	delete(e.seqs, id)
	for i, x := range e.order {
		if x == id {
			e.order = append(e.order[:i], e.order[i+1:]...)
			break
		}
	}
	return nil
}

func (e *fakeEngine) Stats() realengine.Stats { return realengine.Stats{Sequences: len(e.seqs)} }
func (e *fakeEngine) Close() error            { return nil }

// pinnedFake is a realengine.Pinned fakeEngine: Pin's view is the fake
// itself, and a call on the engine waits while it is pinned, as on a real
// one (on a channel, so that synctest reports a wait that never ends).
type pinnedFake struct {
	*fakeEngine
	lock chan struct{}
	pins atomic.Int32
}

func newPinnedFake(c sim.StepCost) *pinnedFake {
	return &pinnedFake{fakeEngine: newFake(c), lock: make(chan struct{}, 1)}
}

func (p *pinnedFake) Pin(f func(realengine.Engine)) {
	p.pins.Add(1)
	p.lock <- struct{}{}
	defer func() { <-p.lock }()
	f(p.fakeEngine)
}

// wait returns once no Pin is running and holds Pin off until done runs.
func (p *pinnedFake) wait() (done func()) {
	p.lock <- struct{}{}
	return func() { <-p.lock }
}

func (p *pinnedFake) Admit(s realengine.Sequence) error {
	defer p.wait()()
	return p.fakeEngine.Admit(s)
}

func (p *pinnedFake) Retire(id realengine.SeqID) error {
	defer p.wait()()
	return p.fakeEngine.Retire(id)
}

func (p *pinnedFake) Stats() realengine.Stats {
	defer p.wait()()
	return p.fakeEngine.Stats()
}

func (p *pinnedFake) Step(ctx context.Context) (realengine.StepResult, error) {
	defer p.wait()()
	return p.fakeEngine.Step(ctx)
}
