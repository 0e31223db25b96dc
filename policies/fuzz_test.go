package policies_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/policies"
)

// fuzzSpecs covers every built-in policy, each anchor, tick rounding, and
// the rejecting and dropping paths.
var fuzzSpecs = []string{
	"none",
	"fixed", "fixed:anchor=oldest", "fixed:anchor=collector", "fixed:anchor=batchend",
	"fixed:window=300us,max_batch=3,anchor=collector,tick=1ms", "fixed:window=700us,anchor=first,tick=500us",
	"fixed:anchor=oldest,tick=1ms", "fixed:window=0s,anchor=collector,tick=1ms", "fixed:window=0s,max_batch=2", "fixed:anchor=batchend,tick=700us",
	"fastpath", "fastpath:anchor=collector,max_batch=2", "fastpath:anchor=oldest,tick=1ms",
	"adaptive", "adaptive:tau=10ms,target_batch=4,slo=3ms,batch_base=1ms", "adaptive:tau=5ms,theta=0,tick=1ms",
	"tiered", "tiered:anchor=first,tick=1ms", "tiered:depths=0/2/3,windows=100us/200us/1ms/3ms,anchor=oldest",
	"triton", "triton:preferred=2/4,max_queue_size=5,timeout=2ms", "triton:preferred=3,timeout=1ms,timeout_action=delay,max_queue_delay=0s,tick=300us",
	"aimd:slo=2ms", "aimd:slo=3ms,window=1ms,start=4,max_batch=6,tick=1ms",
	"deadline", "deadline:slo=3ms,batch_base=1ms,batch_per=100us", "deadline:slo=2ms,late=mark,max_batch=3,tick=400us",
}

// fuzzRun decodes data into a policy, an engine and an arrival sequence and
// runs the invariant-checking driver to the end.
func fuzzRun(t *testing.T, data []byte) {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	spec := fuzzSpecs[int(next())%len(fuzzSpecs)]
	p, err := policies.Parse(spec)
	require.NoError(t, err)
	flags := next()
	eng := engineModel{
		continuous: flags&1 == 1,
		slots:      1 + int(next()%12),
		base:       time.Duration(next()%40) * 100 * time.Microsecond,
		per:        time.Duration(next()%10) * 50 * time.Microsecond,
	}
	var arrivals []policies.Request
	at := time.Duration(0)
	for len(data) >= 2 && len(arrivals) < 300 {
		gap, dl := data[0], data[1]
		data = data[2:]
		// Gaps cluster at 0 (bursts) and spread to a few milliseconds.
		if gap < 64 {
			gap = 0
		}
		at += time.Duration(gap-min(gap, 64)) * 23 * time.Microsecond
		r := policies.Request{ID: int64(len(arrivals)) + 1, Arrival: at}
		if dl&1 == 1 {
			r.Deadline = at + time.Duration(dl)*40*time.Microsecond
		}
		arrivals = append(arrivals, r)
	}
	d := newDriver(p, eng, arrivals)
	if flags&2 == 2 {
		d.noise = []byte(string(data))
	}
	require.NoError(t, d.run())
}

func FuzzPolicyInvariants(f *testing.F) {
	for i := range fuzzSpecs {
		f.Add([]byte{byte(i), 0, 7, 20, 5, 0, 0, 200, 3, 0, 1, 0, 0, 90, 7, 120, 9, 64, 1})
		f.Add([]byte{byte(i), 3, 2, 5, 2, 10, 1, 10, 1, 10, 1, 10, 1, 250, 33, 70, 5, 70, 5, 0, 0, 1, 0, 1})
	}
	f.Fuzz(fuzzRun)
}

// TestPolicyInvariantsSeeds runs the invariant driver over a deterministic
// spread of inputs for every policy, so plain `go test` covers it too.
func TestPolicyInvariantsSeeds(t *testing.T) {
	for i := range fuzzSpecs {
		for seed := range 12 {
			data := []byte{byte(i), byte(seed), byte(seed * 5), byte(seed * 7), byte(seed * 3)}
			x := uint32(seed*2654435761 + i*40503 + 1)
			for range 240 {
				x ^= x << 13
				x ^= x >> 17
				x ^= x << 5
				data = append(data, byte(x))
			}
			fuzzRun(t, data)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSpecs {
		f.Add(s)
	}
	f.Add("fixed:window=-1ms")
	f.Add("fixed:max_batch=0")
	f.Add("nope:x=1")
	f.Add("fixed:windw=1ms")
	f.Add("triton:preferred=4/2")
	f.Fuzz(func(t *testing.T, spec string) {
		p, err := policies.Parse(spec)
		if err != nil {
			assert.NotContains(t, err.Error(), "\n", "errors are one line")
			assert.True(t, strings.HasPrefix(err.Error(), "policies: "), err.Error())
			return
		}
		again, err := policies.Parse(p.Spec())
		require.NoError(t, err, "canonical spec %q must parse", p.Spec())
		assert.Equal(t, p.Spec(), again.Spec())
	})
}
