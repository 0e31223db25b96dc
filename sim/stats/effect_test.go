package stats

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseEffect(t *testing.T) {
	for _, tc := range []struct {
		in      string
		abs     time.Duration
		rel     float64
		wantErr string
	}{
		{in: "1ms", abs: time.Millisecond},
		{in: "250us", abs: 250 * time.Microsecond},
		{in: "250µs", abs: 250 * time.Microsecond},
		{in: " 1.5s ", abs: 1500 * time.Millisecond},
		{in: "0.5%", rel: 0.005},
		{in: "5 %", rel: 0.05},
		{in: "", wantErr: "effect: empty"},
		{in: "abc", wantErr: `effect "abc": want a duration`},
		{in: "1", wantErr: `effect "1": want a duration`},
		{in: "-1ms", wantErr: "must be positive"},
		{in: "0ms", wantErr: "must be positive"},
		{in: "x%", wantErr: "is not a number"},
		{in: "-2%", wantErr: "percentage must be in"},
		{in: "NaN%", wantErr: "is not a number"},
	} {
		e, err := ParseEffect(tc.in)
		if tc.wantErr != "" {
			if assert.Error(t, err, tc.in) {
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.NotContains(t, err.Error(), "\n")
			}
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.abs, e.Abs, tc.in)
		assert.InDelta(t, tc.rel, e.Relative, 1e-15, tc.in)
	}
}

func TestEffectSize(t *testing.T) {
	e, _ := ParseEffect("1ms")
	v, err := e.Size(415, time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, 1.0, v)
	v, err = e.Size(0.415, time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0.001, v)
	_, err = e.Size(120, 0)
	assert.ErrorContains(t, err, "not a time")
	r, _ := ParseEffect("0.5%")
	v, err = r.Size(400, 0)
	require.NoError(t, err)
	assert.InDelta(t, 2.0, v, 1e-12)
}

func FuzzParseEffect(f *testing.F) {
	for _, s := range []string{"1ms", "250us", "0.5%", "", "%", "1e400%", "-0s", "9999999h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEffect(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if e.IsZero() {
			t.Fatalf("%q parsed to a zero effect", s)
		}
		if e.Abs < 0 || e.Relative < 0 {
			t.Fatalf("%q parsed negative: %+v", s, e)
		}
	})
}
