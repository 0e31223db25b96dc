package sim

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/batchkit/batchkit/trace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stepDriver drives Server the way replay does: one step per plan, step
// durations from an "engine" (here the cost model without jitter), and it
// checks the engine-side bookkeeping: every admitted ID is retired once.
func stepDriver(t *testing.T, p Profile, spec string, reqs []trace.Request, fail map[int64]bool) []Result {
	var out []Result
	srv, err := NewServer(ServerConfig{Profile: p, Done: func(r *Result, _ int32, _ int64) { out = append(out, *r) }}, mustPolicy(t, spec))
	require.NoError(t, err)
	cost := NewCostModel(p, 1)
	inEngine := map[int64]bool{}
	retire := func(ids []int64) {
		for _, id := range ids {
			require.True(t, inEngine[id], "retired %d not in engine", id)
			delete(inEngine, id)
		}
	}
	i := 0
	var stepEnd int64
	for {
		tA, tT, tS := int64(math.MaxInt64), int64(srv.NextTimer()), int64(math.MaxInt64)
		if i < len(reqs) {
			tA = reqs[i].ArrivalNS
		}
		if srv.InFlight() {
			tS = stepEnd
		}
		now := min(tA, tT, tS)
		if now == math.MaxInt64 {
			break
		}
		switch {
		case tS == now:
			srv.StepDone(time.Duration(now), time.Duration(now))
			for id := range fail {
				if inEngine[id] && srv.Fail(time.Duration(now), id, "engine: out of memory") {
					delete(fail, id)
				}
			}
		case tA == now:
			q := reqs[i]
			i++
			srv.Arrive(time.Duration(now), Request{ID: q.RequestID, InputTokens: q.InputTokens, OutputTokens: q.OutputTokens})
		default:
			srv.Timer(time.Duration(now))
		}
		if !srv.InFlight() {
			if plan, ok := srv.NextStep(time.Duration(now)); ok {
				require.Equal(t, 1, plan.Steps)
				retire(plan.Retired)
				for _, id := range plan.Admitted {
					inEngine[id] = true
				}
				tm := cost.Time(plan)
				stepEnd = now + tm.Boundary(1)
			} else {
				retire(srv.Retired())
			}
		}
	}
	retire(srv.Retired())
	assert.Empty(t, inEngine, "sequences never retired")
	assert.Zero(t, srv.Pending())
	return out
}

// The simulator's multi-step plans are an optimisation only: stepping one
// step at a time, as replay does, gives identical per-request results.
func TestOneStepPlansMatchSimulator(t *testing.T) {
	reqs := poisson(3000, 60, 11, 0, func(r *rand.Rand) int32 { return 1 + r.Int32N(40) })
	r := rand.New(rand.NewPCG(2, 2))
	for i := range reqs {
		reqs[i].InputTokens = 1 + r.Int32N(300)
	}
	for _, name := range BuiltinProfiles() {
		for _, spec := range []string{"none", "fixed:window=3ms", "adaptive"} {
			p, _ := BuiltinProfile(name)
			p.JitterCV = 0
			p.TokenBudget = min(p.TokenBudget, 400)
			if p.Mode == Sequential {
				p.Step.PerPrefillTokenMS = 0.01
			}
			_, sim := run(t, Config{Profile: p, Policy: mustPolicy(t, spec)}, reqs)
			stepped := stepDriver(t, p, spec, reqs, nil)
			require.Equal(t, len(sim), len(stepped))
			byID := map[int64]Result{}
			for _, r := range sim {
				byID[r.RequestID] = r
			}
			diff := 0
			for _, r := range stepped {
				if r != byID[r.RequestID] {
					diff++
				}
			}
			assert.Zero(t, diff, "%s %s: %d requests differ", name, spec, diff)
		}
	}
}

func TestFailRunningRequest(t *testing.T) {
	reqs := poisson(200, 100, 4, 10, func(*rand.Rand) int32 { return 20 })
	p, _ := BuiltinProfile("gpu-continuous")
	p.JitterCV = 0
	rs := stepDriver(t, p, "none", reqs, map[int64]bool{5: true, 17: true})
	require.Len(t, rs, 200)
	failed := 0
	for _, r := range rs {
		if r.Status == StatusFailed {
			failed++
			assert.Equal(t, "engine: out of memory", r.Error)
			assert.Contains(t, []int64{5, 17}, r.RequestID)
		}
	}
	assert.Equal(t, 2, failed)
}

// A plan's first step pays per prompt and per prompt token squared: two
// prompts of 10 and 30 tokens prefilled together cost base + 2·seq +
// 40·token + (100+900)·sq.
func TestPlanPaysPerPromptAndSquare(t *testing.T) {
	p := Profile{Name: "x", Mode: Continuous, MaxBatch: 4,
		Step: StepCost{BaseMS: 1, PerPrefillSeqMS: 2, PerPrefillTokenMS: 0.1, PerPrefillTokenSqMS: 0.001}}
	srv, err := NewServer(ServerConfig{Profile: p}, mustPolicy(t, "none"))
	require.NoError(t, err)
	srv.Arrive(0, Request{ID: 1, InputTokens: 10, OutputTokens: 5})
	srv.Arrive(0, Request{ID: 2, InputTokens: 30, OutputTokens: 5})
	plan, ok := srv.NextStep(0)
	require.True(t, ok)
	assert.Equal(t, 2, plan.Prefill)
	assert.Equal(t, int64(40), plan.PrefillTokens)
	assert.Equal(t, int64(1000), plan.PrefillSquares)
	tm := NewCostModel(p, 1).Time(plan)
	assert.Equal(t, int64(math.Round((1+2*2+40*0.1+1000*0.001)*1e6)), tm.Boundary(1))
}
