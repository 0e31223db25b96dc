package sim

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/policies"
	"github.com/batchkit/batchkit/trace"
)

// unfiltered hides a policy's EventFilter, so the server steps it with
// every event.
type unfiltered struct{ policies.Policy }

// mixSource streams Poisson requests with varied prompt and output lengths,
// so that sequences of one batch finish at different steps.
type mixSource struct {
	n, i int
	rate float64
	t    float64
	r    *rand.Rand
}

func (g *mixSource) Read(buf []trace.Request) (int, error) {
	k := 0
	for ; k < len(buf) && g.i < g.n; k++ {
		g.t += g.r.ExpFloat64() / g.rate * 1e9
		buf[k] = trace.Request{RequestID: int64(g.i), ArrivalNS: int64(g.t),
			InputTokens: 1 + g.r.Int32N(400), OutputTokens: 1 + g.r.Int32N(80)}
		g.i++
	}
	if g.i == g.n {
		return k, io.EOF
	}
	return k, nil
}

// Skipping the events a policy declares ignored must not change a single
// result: every record, in the same order, and the summary.
func TestEventFilterKeepsResults(t *testing.T) {
	specs := []string{
		"none", "fixed:window=2ms,max_batch=4", "fixed:window=5ms,max_batch=16,anchor=oldest",
		"fixed:window=3ms,max_batch=8,anchor=collector", "fixed:window=3ms,max_batch=8,anchor=batchend",
		"fixed:window=1ms,max_batch=8,tick=700us", "fastpath:window=2ms,max_batch=8", "tiered",
		"aimd:slo=30ms,window=2ms", "adaptive:max_window=5ms,target_batch=8,slo=200ms",
	}
	run := func(p Profile, pol policies.Policy, rate float64, clients int) ([]Result, Summary) {
		var out []Result
		cfg := Config{Profile: p, Policy: pol, Seed: 7, Clients: clients, Think: time.Millisecond,
			Results: func(r *Result) error { out = append(out, *r); return nil }}
		s, _, err := Run(cfg, &mixSource{n: 3000, rate: rate, r: rand.New(rand.NewPCG(3, 4))})
		require.NoError(t, err)
		return out, s
	}
	for _, name := range BuiltinProfiles() {
		p, _ := BuiltinProfile(name)
		rates := []float64{20, 200, 2000}
		if p.Mode == Sequential {
			rates = []float64{1, 5, 50}
		}
		for _, spec := range specs {
			for _, rate := range rates {
				for _, clients := range []int{0, 6} {
					t.Run(fmt.Sprintf("%s/%s/%g/%d", name, spec, rate, clients), func(t *testing.T) {
						_, isF := mustPolicy(t, spec).(policies.EventFilter)
						require.True(t, isF, "built-in %s should declare what it ignores", spec)
						want, ws := run(p, unfiltered{mustPolicy(t, spec)}, rate, clients)
						got, gs := run(p, mustPolicy(t, spec), rate, clients)
						require.Equal(t, ws, gs)
						require.Equal(t, len(want), len(got))
						for i := range want {
							require.Equal(t, want[i], got[i], "result %d", i)
						}
					})
				}
			}
		}
	}
}

func TestRadixSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{0, 1, 255, 256, 1000, 70000} {
		for _, span := range []uint32{1, 300, 1 << 24, 1<<32 - 1} {
			a := make([]uint32, n)
			for i := range a {
				a[i] = r.Uint32N(span) + (1<<32-1-span)*uint32(i%2)
			}
			want := slices.Clone(a)
			slices.Sort(want)
			radixSort(a)
			require.Equal(t, want, a, "n %d span %d", n, span)
		}
	}
}

// The dense counts are filled in three ways (directly while one chunk
// holds every value, batched by chunk, and beyond the dense range); each
// must keep the quantiles exact.
func TestSamplesDensePathsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	gens := map[string]func(i int) int64{
		"narrow": func(int) int64 { return int64(r.ExpFloat64() * 3e6) },
		"wide":   func(int) int64 { return int64(r.ExpFloat64() * 2e9) },
		"narrow-then-wide": func(i int) int64 {
			if i < 150_000 {
				return int64(r.ExpFloat64() * 3e6)
			}
			return int64(r.ExpFloat64() * 4e9)
		},
		"chunk-edges": func(i int) int64 { return (int64(i%4)<<chunkBits - int64(i%2)) * 1000 },
		// More than 65536 of one value wrap its 16-bit count, counted
		// directly (narrow) and in batches (wide).
		"repeated-narrow": func(i int) int64 { return int64(i%3) * 1000 },
		"repeated-wide": func(i int) int64 {
			switch i % 4 {
			case 0, 2:
				return 5_000_000
			case 1:
				return 400_000_000
			}
			return int64(r.ExpFloat64() * 2e9)
		},
	}
	for name, gen := range gens {
		for _, n := range []int{denseAfter + 1, 300_000, denseAfter + pendLen + 12345} {
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) {
				var m samples
				vals := make([]float64, n)
				for i := range vals {
					ns := gen(i)
					m.add(ns)
					vals[i] = math.Round(float64(max(ns, 0)) / 1e3)
				}
				slices.Sort(vals)
				q := m.quantiles()
				for i, p := range quantileProbs {
					h := p * float64(n-1)
					lo := int(math.Floor(h))
					hi := min(lo+1, n-1)
					want := vals[lo] + (h-float64(lo))*(vals[hi]-vals[lo])
					require.InDelta(t, want, q[i], 1e-6, "p=%v", p)
				}
				var sum float64
				for _, v := range vals {
					sum += v
				}
				mean := sum / float64(n)
				var ss float64
				for _, v := range vals {
					ss += (v - mean) * (v - mean)
				}
				require.InEpsilon(t, ss, m.sumSq(mean), 1e-9)
			})
		}
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fpSource is mixSource with priorities and, on every third request, a
// deadline, so that deadline-aware policies drop and reorder.
type fpSource struct{ mixSource }

func (g *fpSource) Read(buf []trace.Request) (int, error) {
	n, err := g.mixSource.Read(buf)
	for i := range buf[:n] {
		q := &buf[i]
		if q.RequestID%3 == 0 {
			d := q.ArrivalNS + int64(50+q.RequestID%7*40)*int64(time.Millisecond)
			p := int32(q.RequestID % 4)
			q.DeadlineNS, q.Priority = &d, &p
		}
	}
	return n, err
}

// TestResultsFingerprint pins every record and summary of a matrix of
// runs (every mode, with and without overhead and jitter, open and closed
// loop, trimming, the built-in policies) to a hash, so that a change made
// for speed cannot move a single nanosecond unnoticed. Regenerate with
// -update only for a deliberate change of the model's output.
func TestResultsFingerprint(t *testing.T) {
	specs := []string{
		"none", "fixed:window=2ms,max_batch=4", "fixed:window=5ms,max_batch=16,anchor=oldest",
		"fixed:window=3ms,max_batch=8,anchor=collector", "fixed:window=3ms,max_batch=8,anchor=batchend",
		"fixed:window=1ms,max_batch=8,tick=700us", "fastpath:window=2ms,max_batch=8", "tiered",
		"aimd:slo=30ms,window=2ms", "adaptive:max_window=5ms,target_batch=8,slo=200ms",
		"triton:preferred=4/8,timeout=20ms,max_queue_size=64", "deadline:slo=300ms",
	}
	var profs []Profile
	for _, name := range BuiltinProfiles() {
		p, _ := BuiltinProfile(name)
		profs = append(profs, p)
		q := p
		q.Name += "+overhead-nojitter"
		q.RequestOverheadMS, q.JitterCV, q.TokenBudget = 1.5, 0, 0
		profs = append(profs, q)
	}
	var out strings.Builder
	for _, p := range profs {
		rates := []float64{20, 400}
		if p.Mode == Sequential {
			rates = []float64{1, 8}
		}
		for _, spec := range specs {
			for _, rate := range rates {
				for _, clients := range []int{0, 5} {
					h := sha256.New()
					cfg := Config{Profile: p, Policy: mustPolicy(t, spec), Seed: 11, Clients: clients, Think: 300 * time.Microsecond,
						Trim: Trim{WarmupN: 50, CooldownNS: int64(200 * time.Millisecond)}, Speedup: 1.5,
						Results: func(r *Result) error { fmt.Fprintf(h, "%+v\n", *r); return nil }}
					s, st, err := Run(cfg, &fpSource{mixSource{n: 1500, rate: rate, r: rand.New(rand.NewPCG(5, 6))}})
					require.NoError(t, err)
					js, err := s.JSON()
					require.NoError(t, err)
					h.Write(js)
					fmt.Fprintf(h, "%d %d %d\n", st.Requests, st.Plans, st.Steps)
					fmt.Fprintf(&out, "%s %s %g %d %x\n", p.Name, spec, rate, clients, h.Sum(nil)[:12])
				}
			}
		}
	}
	// Long runs reach the summary's dense counts and the cost model's
	// cached jitter spreads.
	for _, name := range []string{"seed-llama3.2-3b", "gpu-static", "gpu-continuous"} {
		p, _ := BuiltinProfile(name)
		rate := map[Mode]float64{Sequential: 0.7 / 0.406, Static: 25, Continuous: 40}[p.Mode]
		s, st, err := Run(Config{Profile: p, Policy: mustPolicy(t, "fixed:window=2ms,max_batch=8"), Seed: 3},
			&mixSource{n: 100_000, rate: rate, r: rand.New(rand.NewPCG(7, 8))})
		require.NoError(t, err)
		js, err := s.JSON()
		require.NoError(t, err)
		fmt.Fprintf(&out, "%s 100k %x %d %d %d\n", name, sha256.Sum256(js), st.Requests, st.Plans, st.Steps)
	}
	path := filepath.Join("testdata", "fingerprints.txt")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(out.String()), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	require.Equal(t, string(want), out.String())
}
