package policies_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/batchkit/batchkit/policies"
)

var builtins = []string{"adaptive", "aimd", "deadline", "fastpath", "fixed", "none", "tiered", "triton"}

func TestNames(t *testing.T) {
	names := policies.Names()
	for _, b := range builtins {
		assert.Contains(t, names, b)
	}
	assert.IsIncreasing(t, names)
}

func TestParseCanonical(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"none", "none"},
		{" none: ", "none"},
		{"none:tick=1ms", "none:tick=1ms"},
		{"fixed", "fixed:window=1ms,max_batch=8,anchor=first"},
		{"fixed:window=2ms,max_batch=8", "fixed:window=2ms,max_batch=8,anchor=first"},
		{"fixed: anchor = collector , window=0.75ms", "fixed:window=750us,max_batch=8,anchor=collector"},
		{"fastpath:tick=1000us", "fastpath:window=1ms,max_batch=8,anchor=first,tick=1ms"},
		{"tiered", "tiered:depths=1/5,windows=750us/1ms/2ms,max_batch=8,anchor=collector"},
		{"adaptive:theta=0.50", "adaptive:tau=1s,max_window=1ms,target_batch=8,theta=0.5,slo=0s,batch_base=0s,batch_per=0s"},
		{"triton:preferred=2/ 4", "triton:max_batch=8,preferred=2/4,max_queue_delay=1ms,max_queue_size=0,timeout=0s,timeout_action=reject"},
		{"aimd", "aimd:slo=20ms,max_batch=32,start=1,add=1,mult=0.9,window=0s"},
		{"deadline:late=mark", "deadline:max_batch=8,slo=0s,max_wait=1ms,late=mark,batch_base=0s,batch_per=0s"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			p, err := policies.Parse(tt.spec)
			require.NoError(t, err)
			assert.Equal(t, tt.want, p.Spec())
			again, err := policies.Parse(p.Spec())
			require.NoError(t, err)
			assert.Equal(t, p.Spec(), again.Spec())
			assert.Zero(t, p.Queued())
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"", "policies: empty policy spec (valid policies: adaptive, aimd, deadline"},
		{"fixd:window=1ms", `policies: unknown policy "fixd" (valid policies: adaptive, aimd, deadline, fastpath, fixed, none, tiered, triton`},
		{"fixed:windw=1ms", `policies: fixed: unknown key "windw" (valid keys: window, max_batch, anchor, tick)`},
		{"fixed:window", `policies: fixed: "window" is not key=value (valid keys: window, max_batch, anchor, tick)`},
		{"fixed:window=1ms,window=2ms", `policies: fixed: key "window" given twice`},
		{"fixed:window=-1ms", "policies: fixed: window=-1ms: must be ≥ 0"},
		{"fixed:window=soon", "policies: fixed: window=soon: not a duration (e.g. 750us, 2ms)"},
		{"fixed:max_batch=0", "policies: fixed: max_batch=0: must be ≥ 1"},
		{"fixed:max_batch=eight", "policies: fixed: max_batch=eight: not an integer"},
		{"fixed:anchor=last", "policies: fixed: anchor=last: want one of first, oldest, collector, batchend"},
		{"fixed:tick=-1ms", "policies: fixed: tick=-1ms: must be ≥ 0"},
		{"none:tick=-1ms", "policies: none: tick=-1ms: must be ≥ 0"},
		{"tiered:depths=5/1", "policies: tiered: depths=5/1: must be ascending and ≥ 0"},
		{"tiered:windows=1ms/2ms", "policies: tiered: windows=1ms/2ms: needs one more entry than depths"},
		{"adaptive:tau=0s", "policies: adaptive: tau=0s: must be > 0"},
		{"adaptive:theta=NaN", "policies: adaptive: theta=NaN: not a finite number"},
		{"adaptive:target_batch=0", "policies: adaptive: target_batch=0: must be ≥ 1"},
		{"triton:preferred=16", "policies: triton: preferred=16: must be ascending sizes between 1 and max_batch"},
		{"triton:timeout_action=retry", "policies: triton: timeout_action=retry: want one of reject, delay"},
		{"triton:max_queue_size=-1", "policies: triton: max_queue_size=-1: must be ≥ 0 (0 = unbounded)"},
		{"aimd:mult=1", "policies: aimd: mult=1: must be between 0 and 1, exclusive"},
		{"aimd:slo=0s", "policies: aimd: slo=0s: must be > 0"},
		{"deadline:max_wait=-1ms", "policies: deadline: max_wait=-1ms: must be ≥ 0"},
		{"deadline:late=ignore", "policies: deadline: late=ignore: want one of drop, mark"},
		{"fixed:window=1 ms", `policies: fixed: window="1 ms": not a duration (e.g. 750us, 2ms)`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			p, err := policies.Parse(tt.spec)
			require.Error(t, err)
			assert.Nil(t, p)
			assert.True(t, strings.HasPrefix(err.Error(), tt.want), "got %q", err.Error())
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestRegisterErrors(t *testing.T) {
	mk := func(a *policies.Args) (policies.Policy, error) { return policies.Parse("none") }
	tests := []struct {
		name string
		def  policies.Def
		want string
	}{
		{"duplicate", policies.Def{Name: "fixed", New: mk}, `policies: register: policy "fixed" already registered`},
		{"bad name", policies.Def{Name: "My Policy", New: mk}, `policies: register: invalid policy name "My Policy"`},
		{"no constructor", policies.Def{Name: "x-no-new"}, "policies: register x-no-new: New is nil"},
		{"reserved key", policies.Def{Name: "x-tick", New: mk, Params: []policies.Param{{Key: "tick"}}}, `policies: register x-tick: invalid, reserved or duplicate key "tick"`},
		{"duplicate key", policies.Def{Name: "x-dup", New: mk, Params: []policies.Param{{Key: "a"}, {Key: "a"}}}, `policies: register x-dup: invalid, reserved or duplicate key "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := policies.Register(tt.def)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), tt.want), "got %q", err.Error())
		})
	}
	assert.NotContains(t, policies.Names(), "x-tick")
}

func TestListGolden(t *testing.T) {
	var out strings.Builder
	require.NoError(t, policies.List(&out))
	for _, b := range builtins {
		assert.Contains(t, "\n"+out.String(), "\n"+b+" — ")
	}
	path := filepath.Join("testdata", "list.golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(out.String()), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	assert.Equal(t, string(want), out.String())
}

func TestDefsMatchSpecs(t *testing.T) {
	// Every documented default must parse, and every default spec must
	// mention each declared key, so the listing and Spec never disagree.
	for _, d := range policies.Defs() {
		if !slicesContains(builtins, d.Name) {
			continue
		}
		p, err := policies.Parse(d.Name)
		require.NoError(t, err, d.Name)
		for _, prm := range d.Params {
			if prm.Key == policies.TickKey {
				continue
			}
			assert.Contains(t, p.Spec(), prm.Key+"=", "%s: %s", d.Name, prm.Key)
			assert.NotEmpty(t, prm.Meaning, "%s: %s", d.Name, prm.Key)
		}
		assert.NotEmpty(t, d.Meaning, d.Name)
	}
}

func slicesContains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func TestDecisionSlicesAreIndependent(t *testing.T) {
	// A driver that appends to a Batch must not corrupt the next batch of
	// the same Decision.
	p, err := policies.Parse("none")
	require.NoError(t, err)
	eng := policies.Engine{Idle: true, Free: 2, Batches: 1}
	for i := range 3 {
		p.Step(0, policies.Event{Kind: policies.EventArrival, Request: policies.Request{ID: int64(i + 1)}}, policies.Engine{})
	}
	d := p.Step(time.Millisecond, policies.Event{Kind: policies.EventCapacity}, eng)
	require.Len(t, d.Batches, 1)
	require.Len(t, d.Batches[0], 2)
	assert.Equal(t, 2, cap(d.Batches[0]))
	assert.Equal(t, 1, p.Queued())
}
