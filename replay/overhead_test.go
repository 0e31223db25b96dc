package replay_test

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/batchkit/batchkit/policies"
	"github.com/batchkit/batchkit/realengine"
	"github.com/batchkit/batchkit/replay"
	"github.com/batchkit/batchkit/sim"
	"github.com/batchkit/batchkit/sim/stats"
	"github.com/batchkit/batchkit/trace"
)

var (
	benchEngine = flag.String("bench.engine", "cpu", "BenchmarkHarnessOverhead: engine (mlx needs -tags mlx)")
	benchModel  = flag.String("bench.model", "small", "BenchmarkHarnessOverhead: model preset")
	benchDevice = flag.String("bench.device", "", "BenchmarkHarnessOverhead: engine device")
)

// BenchmarkHarnessOverhead measures what replay adds to a request's
// latency: the seed workload shape (one closed-loop client, 32-token
// prompts, 16 output tokens) on the small cpu engine (or -bench.engine,
// -bench.model, -bench.device), through replay with policy none, against a
// plain loop that calls the same engine directly. Each request runs both
// ways back to back, in alternating order, so that the engine's own drift
// cancels in the per-request differences; overhead_% is their mean over
// the plain loop's mean latency, with its 95 % paired-t interval
// (overhead_lo_%, overhead_hi_%). Goal: ≤ 0.5 %. gap_% is the part of it
// outside the engine's step compute (latency minus the steps' Wall, paired
// the same way): the harness's own code and hand-offs, free of the
// engine's step-to-step noise that dominates overhead_%'s interval.
func BenchmarkHarnessOverhead(b *testing.B) {
	const prompt, out = 32, 16
	eng, err := realengine.Open(*benchEngine, realengine.Options{Model: *benchModel, Device: *benchDevice, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	prof := sim.Profile{Name: "bench", Mode: sim.Sequential, MaxBatch: 1, Step: sim.StepCost{BaseMS: 1}} // step costs unused: the engine is the cost
	ctx := context.Background()
	pol, err := policies.Parse("none")
	if err != nil {
		b.Fatal(err)
	}
	next := int64(0)
	// Each run returns the request's latency and the part of it spent
	// outside the engine's step compute (StepResult.Wall).
	direct := func() (time.Duration, time.Duration) {
		next++
		id := realengine.SeqID(1_000_000 + next)
		start := time.Now()
		if err := eng.Admit(realengine.Sequence{ID: id, Prompt: replay.PromptTokens(next, prompt, eng.Info().Config.VocabSize, 1), MaxNewTokens: out}); err != nil {
			b.Fatal(err)
		}
		var wall time.Duration
		for s := 0; s < out; s++ {
			res, err := eng.Step(ctx)
			if err != nil {
				b.Fatal(err)
			}
			wall += res.Wall
		}
		// A request is done with its last token, as replay counts it;
		// freeing its cache comes after.
		d := time.Since(start)
		if err := eng.Retire(id); err != nil {
			b.Fatal(err)
		}
		return d, d - wall
	}
	replayed := func() (time.Duration, time.Duration) {
		next++
		var lat time.Duration
		rep, err := replay.Run(ctx, replay.Config{Engine: eng, Policy: pol, Profile: prof, Clients: 1, Seed: 1,
			Requests: []trace.Request{{RequestID: next, InputTokens: prompt, OutputTokens: out}},
			Results:  func(r *sim.Result) error { lat = time.Duration(r.FinishNS - r.ArrivalNS); return nil }})
		if err != nil {
			b.Fatal(err)
		}
		wall := time.Duration(0)
		for _, s := range rep.Steps {
			wall += time.Duration(s.WallNS)
		}
		return lat, lat - wall
	}
	var plain, harness, plainGap, harnessGap []float64
	for i := 0; i < b.N; i++ {
		var d, r, dg, rg time.Duration
		if i%2 == 0 {
			d, dg = direct()
			r, rg = replayed()
		} else {
			r, rg = replayed()
			d, dg = direct()
		}
		plain = append(plain, float64(d.Microseconds()))
		harness = append(harness, float64(r.Microseconds()))
		plainGap = append(plainGap, float64(dg.Nanoseconds())/1e3)
		harnessGap = append(harnessGap, float64(rg.Nanoseconds())/1e3)
	}
	if b.N < 2 {
		return
	}
	iv, _, _ := stats.PairedDiff(plain, harness, 0.95)
	m := stats.Mean(plain)
	b.ReportMetric(m, "direct_us/req")
	b.ReportMetric(stats.Mean(harness), "replay_us/req")
	b.ReportMetric(100*iv.Est/m, "overhead_%")
	b.ReportMetric(100*iv.Lo/m, "overhead_lo_%")
	b.ReportMetric(100*iv.Hi/m, "overhead_hi_%")
	gap, _, _ := stats.PairedDiff(plainGap, harnessGap, 0.95)
	b.ReportMetric(100*gap.Est/m, "gap_%")
}
