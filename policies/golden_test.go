package policies_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/policies"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const us = time.Microsecond

// scenario is a scripted arrival sequence that exercises the interesting
// cases: a lone request, a burst larger than a batch, a steady stream, and
// requests with tight and loose deadlines.
func scenario() []policies.Request {
	var rs []policies.Request
	add := func(at time.Duration, dl time.Duration) {
		rs = append(rs, policies.Request{ID: int64(len(rs) + 1), Arrival: at, InputTokens: 32, OutputTokens: 16, Deadline: dl})
	}
	add(200*us, 0)
	for range 10 {
		add(5000*us, 0)
	}
	add(5300*us, 0)
	for i := range 12 {
		add(12000*us+time.Duration(i)*400*us, 0)
	}
	add(30000*us, 30500*us)
	add(30100*us, 60000*us)
	add(30150*us, 36000*us)
	return rs
}

var goldenSpecs = map[string][]string{
	"none":     {"none"},
	"fixed":    {"fixed", "fixed:anchor=oldest", "fixed:anchor=collector", "fixed:anchor=batchend", "fixed:window=750us,anchor=collector,tick=1ms"},
	"fastpath": {"fastpath", "fastpath:anchor=collector"},
	"adaptive": {"adaptive", "adaptive:max_window=2ms,target_batch=4,slo=4ms,batch_base=2ms,batch_per=250us"},
	"tiered":   {"tiered", "tiered:tick=1ms", "tiered:anchor=first"},
	"triton":   {"triton", "triton:preferred=2/4,max_queue_size=6,timeout=3ms", "triton:preferred=4,timeout=3ms,timeout_action=delay,max_queue_delay=500us"},
	"aimd":     {"aimd:slo=3ms", "aimd:slo=3ms,window=1ms,start=4"},
	"deadline": {"deadline", "deadline:slo=6ms,batch_base=2ms,batch_per=250us", "deadline:slo=4ms,late=mark"},
}

var engines = []struct {
	name string
	eng  engineModel
}{
	{"static engine, batches up to 8, 2ms + 0.25ms/request", engineModel{slots: 8, base: 2 * time.Millisecond, per: 250 * us}},
	{"continuous engine, 8 slots, 2ms + 0.25ms/request", engineModel{continuous: true, slots: 8, base: 2 * time.Millisecond, per: 250 * us}},
}

func TestGoldenTranscripts(t *testing.T) {
	for _, name := range policies.Names() {
		specs, ok := goldenSpecs[name]
		if !ok {
			continue // a policy registered by another test
		}
		t.Run(name, func(t *testing.T) {
			var out strings.Builder
			for _, spec := range specs {
				for _, e := range engines {
					p, err := policies.Parse(spec)
					require.NoError(t, err)
					fmt.Fprintf(&out, "== %s on a %s\n", p.Spec(), e.name)
					d := newDriver(p, e.eng, scenario())
					d.log = &out
					require.NoError(t, d.run())
					fmt.Fprintln(&out)
				}
			}
			path := filepath.Join("testdata", name+".golden")
			if *update {
				require.NoError(t, os.MkdirAll("testdata", 0o755))
				require.NoError(t, os.WriteFile(path, []byte(out.String()), 0o644))
				return
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test -update to create it")
			assert.Equal(t, string(want), out.String())
		})
	}
	for name := range goldenSpecs {
		assert.Contains(t, policies.Names(), name)
	}
}
