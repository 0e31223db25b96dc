package sim

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPeakRSS10M simulates 10 M streamed requests and checks peak RSS
// stays under 200 MB. It takes ~10 s, so it runs only with
// BATCHKIT_MEMTEST=1 (the figure goes in the closing note).
func TestPeakRSS10M(t *testing.T) {
	if os.Getenv("BATCHKIT_MEMTEST") == "" {
		t.Skip("set BATCHKIT_MEMTEST=1 to simulate 10 M requests and measure peak RSS")
	}
	for _, name := range []string{"seed-llama3.2-3b", "gpu-continuous"} {
		p, _ := BuiltinProfile(name)
		// 70% load on the seed engine (40-token prompts, 406 ms each).
		rate, in := 0.7/0.406, int32(40)
		if name == "gpu-continuous" {
			rate, in = 40, 200
		}
		s, st, err := Run(Config{Profile: p, Policy: mustPolicy(t, "fixed:window=2ms"), Seed: 1}, newGen(10_000_000, rate, in, 50))
		require.NoError(t, err)
		t.Logf("%s: %d requests, %d events, p99 latency %.3f ms, VmHWM %d MB", name, s.Requests, st.Events, s.LatencyMS.P99, peakRSSMB(t))
	}
	require.Less(t, peakRSSMB(t), 200)
}

func peakRSSMB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, "VmHWM:"), "kB")))
			return kb / 1024
		}
	}
	t.Skip("no VmHWM in /proc/self/status")
	return 0
}

// The serving model keeps only in-flight state: simulating 8× more
// requests allocates next to nothing more.
func TestMemoryFlatInRequests(t *testing.T) {
	alloc := func(n int) uint64 {
		p, _ := BuiltinProfile("gpu-continuous")
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, _, err := Run(Config{Profile: p, Policy: mustPolicy(t, "fixed:window=2ms"), SkipSummary: true}, newGen(n, 40, 200, 50))
		require.NoError(t, err)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, big := alloc(25_000), alloc(200_000)
	t.Logf("allocated %d B for 25k requests, %d B for 200k", small, big)
	assert.Less(t, big, small+1<<20, "allocation grows with the number of requests")
}
