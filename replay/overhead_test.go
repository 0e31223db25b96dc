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
// (overhead_lo_%, overhead_hi_%). Goal: ≤ 0.5 %.
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
	direct := func() time.Duration {
		next++
		id := realengine.SeqID(1_000_000 + next)
		start := time.Now()
		if err := eng.Admit(realengine.Sequence{ID: id, Prompt: replay.PromptTokens(next, prompt, eng.Info().Config.VocabSize, 1), MaxNewTokens: out}); err != nil {
			b.Fatal(err)
		}
		for s := 0; s < out; s++ {
			if _, err := eng.Step(ctx); err != nil {
				b.Fatal(err)
			}
		}
		// A request is done with its last token, as replay counts it;
		// freeing its cache comes after.
		d := time.Since(start)
		if err := eng.Retire(id); err != nil {
			b.Fatal(err)
		}
		return d
	}
	replayed := func() time.Duration {
		next++
		var lat time.Duration
		_, err = replay.Run(ctx, replay.Config{Engine: eng, Policy: pol, Profile: prof, Clients: 1, Seed: 1,
			Requests: []trace.Request{{RequestID: next, InputTokens: prompt, OutputTokens: out}},
			Results:  func(r *sim.Result) error { lat = time.Duration(r.FinishNS - r.ArrivalNS); return nil }})
		if err != nil {
			b.Fatal(err)
		}
		return lat
	}
	var plain, harness []float64
	for i := 0; i < b.N; i++ {
		var d, r time.Duration
		if i%2 == 0 {
			d, r = direct(), replayed()
		} else {
			r, d = replayed(), direct()
		}
		plain = append(plain, float64(d.Microseconds()))
		harness = append(harness, float64(r.Microseconds()))
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
}
