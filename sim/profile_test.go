package sim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuiltinProfilesValid(t *testing.T) {
	for _, n := range BuiltinProfiles() {
		p, ok := BuiltinProfile(n)
		require.True(t, ok)
		assert.NoError(t, p.Validate(), n)
		assert.NotEmpty(t, p.Provenance, n)
		// A built-in survives a JSON round trip through ParseProfile.
		b, err := json.Marshal(p)
		require.NoError(t, err)
		q, err := ParseProfile(b, n)
		require.NoError(t, err)
		assert.Equal(t, p, q)
	}
}

// The seed profile reproduces the report's bare-engine means for a 40-token
// prompt and 50 output tokens.
func TestSeedProfileDerivation(t *testing.T) {
	p, _ := BuiltinProfile("seed-llama3.2-3b")
	ttft := p.Step.BaseMS + p.Step.PerPrefillTokenMS*40
	assert.InDelta(t, 93.46, ttft, 0.01)
	assert.InDelta(t, 406.20, ttft+49*p.Step.BaseMS, 0.01)
}

func TestParseProfileErrors(t *testing.T) {
	good := `{"name":"x","mode":"static","max_batch":4,"step":{"base_ms":1,"per_prefill_token_ms":0,"per_decode_seq_ms":0,"per_kv_token_ms":0},"request_overhead_ms":0,"jitter_cv":0,"provenance":"test"}`
	_, err := ParseProfile([]byte(good), "p.json")
	require.NoError(t, err)
	for _, tc := range []struct{ name, json, want string }{
		{"not json", `{`, "profile p.json: not a JSON object"},
		{"missing mode", `{"name":"x","max_batch":4,"step":{},"request_overhead_ms":0,"jitter_cv":0}`, "profile p.json: field mode: missing"},
		{"missing coefficient", `{"name":"x","mode":"static","max_batch":4,"step":{"base_ms":1},"request_overhead_ms":0,"jitter_cv":0}`, "field step.per_prefill_token_ms: missing"},
		{"negative", `{"name":"x","mode":"static","max_batch":4,"step":{"base_ms":-1,"per_prefill_token_ms":0,"per_decode_seq_ms":0,"per_kv_token_ms":0},"request_overhead_ms":0,"jitter_cv":0}`, "field step.base_ms: -1 must be"},
		{"negative per prompt", `{"name":"x","mode":"static","max_batch":4,"step":{"base_ms":1,"per_prefill_seq_ms":-2,"per_prefill_token_ms":0,"per_decode_seq_ms":0,"per_kv_token_ms":0},"request_overhead_ms":0,"jitter_cv":0}`, "field step.per_prefill_seq_ms: -2 must be"},
		{"negative per square", `{"name":"x","mode":"static","max_batch":4,"step":{"base_ms":1,"per_prefill_token_sq_ms":-1e-6,"per_prefill_token_ms":0,"per_decode_seq_ms":0,"per_kv_token_ms":0},"request_overhead_ms":0,"jitter_cv":0}`, "field step.per_prefill_token_sq_ms: -1e-06 must be"},
		{"unknown mode", `{"name":"x","mode":"turbo","max_batch":4,"step":{"base_ms":1,"per_prefill_token_ms":0,"per_decode_seq_ms":0,"per_kv_token_ms":0},"request_overhead_ms":0,"jitter_cv":0}`, `field mode: unknown mode "turbo"`},
		{"zero batch", `{"name":"x","mode":"static","max_batch":0,"step":{"base_ms":1,"per_prefill_token_ms":0,"per_decode_seq_ms":0,"per_kv_token_ms":0},"request_overhead_ms":0,"jitter_cv":0}`, "field max_batch: 0 out of range"},
		{"unknown field", `{"name":"x","mode":"static","max_batch":1,"bogus":1,"step":{"base_ms":1,"per_prefill_token_ms":0,"per_decode_seq_ms":0,"per_kv_token_ms":0},"request_overhead_ms":0,"jitter_cv":0}`, `unknown field "bogus"`},
		{"free steps", `{"name":"x","mode":"static","max_batch":1,"step":{"base_ms":0,"per_prefill_token_ms":0,"per_decode_seq_ms":0,"per_kv_token_ms":1},"request_overhead_ms":0,"jitter_cv":0}`, "field step: base_ms, per_prefill_token_ms and per_decode_seq_ms are all 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProfile([]byte(tc.json), "p.json")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestLoadProfile(t *testing.T) {
	_, err := LoadProfile("nosuch")
	require.ErrorContains(t, err, `profile "nosuch": no such built-in`)
	path := filepath.Join(t.TempDir(), "p.json")
	p, _ := BuiltinProfile("gpu-static")
	b, _ := json.Marshal(p)
	require.NoError(t, os.WriteFile(path, b, 0o644))
	q, err := LoadProfile(path)
	require.NoError(t, err)
	assert.Equal(t, p, q)
}

func FuzzParseProfile(f *testing.F) {
	p, _ := BuiltinProfile("gpu-continuous")
	b, _ := json.Marshal(p)
	f.Add(b)
	f.Add([]byte(`{"name":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProfile(data, "f.json")
		if err == nil {
			require.NoError(t, p.Validate())
		}
	})
}
