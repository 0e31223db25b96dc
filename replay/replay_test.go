package replay_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/batchkit/batchkit/policies"
	"github.com/batchkit/batchkit/realengine"
	"github.com/batchkit/batchkit/replay"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/trace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var fakeCost = sim.StepCost{BaseMS: 2, PerPrefillTokenMS: 0.01, PerDecodeSeqMS: 0.1, PerKVTokenMS: 0.001}

func profile(mode sim.Mode, maxBatch int, overheadMS float64) sim.Profile {
	return sim.Profile{Name: "fake", Mode: mode, MaxBatch: maxBatch, Step: fakeCost, RequestOverheadMS: overheadMS}
}

// testTrace spreads arrivals so that no event time of one request ever
// equals one of another: every time in a run is some arrival's odd ns
// offset plus whole µs, and the offsets differ mod 1 µs. A tie between a
// step's end and a timer would be decided by goroutine scheduling.
func testTrace(n int, gap time.Duration) []trace.Request {
	out := make([]trace.Request, n)
	for i := range out {
		out[i] = trace.Request{
			RequestID:    int64(100 + i),
			ArrivalNS:    int64(i)*int64(gap) + int64((i*7919)%997) + 13,
			InputTokens:  int32(5 + (i*37)%60),
			OutputTokens: int32(1 + (i*13)%9),
		}
	}
	return out
}

func simulate(t *testing.T, prof sim.Profile, spec string, reqs []trace.Request, clients int, think time.Duration) []sim.Result {
	t.Helper()
	pol, err := policies.Parse(spec)
	require.NoError(t, err)
	var res []sim.Result
	_, _, err = sim.Run(sim.Config{Profile: prof, Policy: pol, Clients: clients, Think: think,
		Results: func(r *sim.Result) error { res = append(res, *r); return nil }}, &sim.SliceSource{Reqs: reqs})
	require.NoError(t, err)
	return byID(res)
}

func byID(res []sim.Result) []sim.Result {
	slices.SortFunc(res, func(a, b sim.Result) int { return int(a.RequestID - b.RequestID) })
	return res
}

type runOut struct {
	rep replay.Report
	res []sim.Result
	err error
}

// replayFake runs replay in the calling bubble.
func replayFake(ctx context.Context, eng realengine.Engine, cfg replay.Config, spec string) runOut {
	pol, err := policies.Parse(spec)
	if err != nil {
		return runOut{err: err}
	}
	var res []sim.Result
	cfg.Engine, cfg.Policy, cfg.Clock = eng, pol, replay.WallClock{}
	cfg.Results = func(r *sim.Result) error { res = append(res, *r); return nil }
	rep, err := replay.Run(ctx, cfg)
	return runOut{rep: rep, res: byID(res), err: err}
}

// TestTimelineMatchesSimulator is the check that replay and the
// simulator share one serving model: with an engine whose steps take
// exactly the profile's cost, every request's timeline is the same to the
// nanosecond.
func TestTimelineMatchesSimulator(t *testing.T) {
	cases := []struct {
		name    string
		mode    sim.Mode
		batch   int
		ovMS    float64
		spec    string
		clients int
		think   time.Duration
		gap     time.Duration
	}{
		{"continuous none", sim.Continuous, 8, 0, "none", 0, 0, 900 * time.Microsecond},
		{"continuous fixed", sim.Continuous, 8, 0, "fixed:window=1ms,max_batch=4", 0, 0, 700 * time.Microsecond},
		{"continuous fastpath overhead", sim.Continuous, 4, 0.3, "fastpath:window=1500us,max_batch=4", 0, 0, 1100 * time.Microsecond},
		{"static fixed", sim.Static, 4, 0, "fixed:window=2ms,max_batch=4", 0, 0, 600 * time.Microsecond},
		{"sequential tiered", sim.Sequential, 4, 0, "tiered", 0, 0, 3 * time.Millisecond},
		{"closed loop adaptive", sim.Continuous, 8, 0, "adaptive", 3, 333331 * time.Nanosecond, 0},
		{"closed loop none", sim.Static, 2, 0.2, "none", 2, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prof := profile(tc.mode, tc.batch, tc.ovMS)
			reqs := testTrace(40, tc.gap)
			want := simulate(t, prof, tc.spec, reqs, tc.clients, tc.think)
			for _, pin := range []bool{false, true} {
				synctest.Test(t, func(t *testing.T) {
					var eng realengine.Engine = newFake(fakeCost)
					if pin {
						eng = newPinnedFake(fakeCost)
					}
					got := replayFake(t.Context(), eng, replay.Config{Profile: prof, Requests: reqs, Clients: tc.clients, Think: tc.think}, tc.spec)
					require.NoError(t, got.err)
					require.Len(t, got.res, len(want))
					for i := range want {
						assert.Equal(t, want[i], got.res[i], "request %d", want[i].RequestID)
					}
					if p, ok := eng.(*pinnedFake); ok {
						assert.Equal(t, int32(1), p.pins.Load(), "the worker pins once")
					}
					assert.Equal(t, len(reqs), got.rep.Sent)
					// In a bubble nothing is ever late.
					assert.Zero(t, got.rep.Dispatch.MaxUS)
					assert.Zero(t, got.rep.Send.MaxUS)
					if tc.clients == 0 {
						assert.Equal(t, int64(len(reqs)), got.rep.Send.Count)
					}
					assert.NotEmpty(t, got.rep.Steps)
					for _, s := range got.rep.Steps {
						assert.Equal(t, s.EndNS-s.StartNS, s.WallNS)
					}
				})
			}
		})
	}
}

func TestEngineErrorsFailOneRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		eng := newFake(fakeCost)
		reqs := testTrace(10, time.Millisecond)
		eng.failAdmit = map[realengine.SeqID]bool{102: true}
		eng.failStep = map[realengine.SeqID]int{105: 2}
		got := replayFake(t.Context(), eng, replay.Config{Profile: profile(sim.Continuous, 8, 0), Requests: reqs}, "none")
		require.NoError(t, got.err)
		require.Len(t, got.res, 10)
		for _, r := range got.res {
			switch r.RequestID {
			case 102:
				assert.Equal(t, sim.StatusFailed, r.Status)
				assert.Contains(t, r.Error, "injected admit failure")
			case 105:
				assert.Equal(t, sim.StatusFailed, r.Status)
				assert.Contains(t, r.Error, "injected step failure")
			default:
				assert.Equal(t, sim.StatusOK, r.Status, "request %d: %s", r.RequestID, r.Error)
			}
		}
		assert.Equal(t, 2, got.rep.Failed)
		assert.Equal(t, int64(2), got.rep.Summary.Failed)
		assert.Zero(t, eng.Stats().Sequences, "engine holds sequences after the run")
	})
}

func TestTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reqs := testTrace(6, 10*time.Millisecond)
		reqs[3].OutputTokens = 200 // ~200 steps of ≥2 ms
		eng := newFake(fakeCost)
		got := replayFake(t.Context(), eng, replay.Config{Profile: profile(sim.Continuous, 8, 0), Requests: reqs, Timeout: 50 * time.Millisecond}, "none")
		require.NoError(t, got.err)
		require.Len(t, got.res, 6)
		r := got.res[3]
		assert.Equal(t, sim.StatusFailed, r.Status)
		assert.Contains(t, r.Error, "timeout")
		lat := time.Duration(r.FinishNS - r.ArrivalNS)
		assert.GreaterOrEqual(t, lat, 50*time.Millisecond)
		assert.Less(t, lat, 55*time.Millisecond, "a timeout is noticed at the next step boundary")
		for i, r := range got.res {
			if i != 3 {
				assert.Equal(t, sim.StatusOK, r.Status)
			}
		}
		assert.Zero(t, eng.Stats().Sequences)
	})
}

// A request that waited in the policy's queue past the timeout fails when
// the policy dispatches it, without reaching the engine.
func TestTimeoutInQueue(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		expired bool
	}{{20 * time.Millisecond, true}, {time.Second, false}} {
		t.Run(tc.timeout.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reqs := testTrace(6, time.Millisecond)
				eng := newFake(fakeCost)
				got := replayFake(t.Context(), eng, replay.Config{Profile: profile(sim.Continuous, 8, 0), Requests: reqs, Timeout: tc.timeout},
					"fixed:window=30ms,max_batch=8")
				require.NoError(t, got.err)
				require.Len(t, got.res, 6)
				for _, r := range got.res {
					if tc.expired {
						assert.Equal(t, sim.StatusFailed, r.Status)
						assert.Contains(t, r.Error, "before reaching the engine")
					} else {
						assert.Equal(t, sim.StatusOK, r.Status, r.Error)
					}
				}
				admitted := 0
				for _, st := range got.rep.Steps {
					admitted += int(st.Admitted)
				}
				if tc.expired {
					assert.Zero(t, admitted, "expired requests never reach the engine")
					assert.Equal(t, 6, got.rep.Failed)
				} else {
					assert.Equal(t, 6, admitted)
				}
				assert.Zero(t, eng.Stats().Sequences)
			})
		})
	}
}

func TestCancelStopsSendsAndKeepsFinished(t *testing.T) {
	for _, drain := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run("drain="+drain.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reqs := testTrace(100, time.Millisecond)
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(30*time.Millisecond+7, cancel)
				eng := newFake(fakeCost)
				start := time.Now()
				got := replayFake(ctx, eng, replay.Config{Profile: profile(sim.Continuous, 4, 0), Requests: reqs, Drain: drain}, "fixed:window=1ms,max_batch=4")
				require.NoError(t, got.err)
				stopped := time.Since(start)
				assert.True(t, got.rep.Interrupted)
				assert.Less(t, got.rep.Sent, 40)
				assert.Greater(t, got.rep.Sent, 20)
				// Bounded: the drain plus at most one step.
				assert.LessOrEqual(t, stopped, 30*time.Millisecond+drain+5*time.Millisecond)
				assert.Equal(t, len(got.res)+got.rep.Unfinished, got.rep.Sent)
				assert.NotEmpty(t, got.res)
				for _, r := range got.res {
					assert.Equal(t, sim.StatusOK, r.Status)
					assert.LessOrEqual(t, r.FinishNS, int64(stopped))
				}
				assert.Equal(t, int64(len(got.res)), got.rep.Summary.Requests)
				assert.True(t, slices.ContainsFunc(got.rep.Summary.Warnings, func(w string) bool { return strings.HasPrefix(w, "interrupted") }))
				assert.Zero(t, eng.Stats().Sequences)
			})
		})
	}
}

func TestDurationAndStuckPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reqs := testTrace(50, time.Millisecond)
		got := replayFake(t.Context(), newFake(fakeCost), replay.Config{Profile: profile(sim.Continuous, 8, 0), Requests: reqs, Clients: 2, Duration: 20 * time.Millisecond}, "none")
		require.NoError(t, got.err)
		assert.Less(t, got.rep.Sent, 50)
		assert.Len(t, got.res, got.rep.Sent)
		assert.False(t, got.rep.Interrupted)
	})
}
