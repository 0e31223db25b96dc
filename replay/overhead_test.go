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
// -bench.model, -bench.device), through replay with
// policy none, against a plain loop that calls the same engine directly.
// The overhead_% metric is the mean latency's excess (goal ≤ 0.5 %).
func BenchmarkHarnessOverhead(b *testing.B) {
	const n, prompt, out = 20, 32, 16
	eng, err := realengine.Open(*benchEngine, realengine.Options{Model: *benchModel, Device: *benchDevice, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	reqs := make([]trace.Request, n)
	for i := range reqs {
		reqs[i] = trace.Request{RequestID: int64(i), InputTokens: prompt, OutputTokens: out}
	}
	prof := sim.Profile{Name: "bench", Mode: sim.Sequential, MaxBatch: 1, Step: sim.StepCost{BaseMS: 1}} // step costs unused: the engine is the cost
	ctx := context.Background()

	var direct, replayed time.Duration
	for i := 0; i < b.N; i++ {
		// Plain loop: admit, step until the last token, retire.
		start := time.Now()
		for r := range reqs {
			id := realengine.SeqID(1_000_000*(i+1) + r)
			if err := eng.Admit(realengine.Sequence{ID: id, Prompt: replay.PromptTokens(int64(r), prompt, 2048, 1), MaxNewTokens: out}); err != nil {
				b.Fatal(err)
			}
			for s := 0; s < out; s++ {
				if _, err := eng.Step(ctx); err != nil {
					b.Fatal(err)
				}
			}
			if err := eng.Retire(id); err != nil {
				b.Fatal(err)
			}
		}
		direct += time.Since(start)

		pol, err := policies.Parse("none")
		if err != nil {
			b.Fatal(err)
		}
		var lat time.Duration
		_, err = replay.Run(ctx, replay.Config{Engine: eng, Policy: pol, Profile: prof, Requests: reqs, Clients: 1, Seed: 1,
			Results: func(r *sim.Result) error { lat += time.Duration(r.FinishNS - r.ArrivalNS); return nil }})
		if err != nil {
			b.Fatal(err)
		}
		replayed += lat
	}
	b.ReportMetric(float64(direct.Microseconds())/float64(b.N*n), "direct_us/req")
	b.ReportMetric(float64(replayed.Microseconds())/float64(b.N*n), "replay_us/req")
	b.ReportMetric(100*(float64(replayed)/float64(direct)-1), "overhead_%")
}
