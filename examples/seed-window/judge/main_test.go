package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestJudgeSeedReportGolden(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"--paired-sd", "300us"}, &out, &errb), errb.String())
	golden := filepath.Join("testdata", "seed.txt")
	if *update {
		require.NoError(t, os.WriteFile(golden, out.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	assert.Equal(t, string(want), out.String())
	// The report's own verdict, checked independently of the golden text.
	assert.Contains(t, out.String(), "NOT distinguishable from zero")
}

func TestJudgeFindsALargeDifference(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"--a", "415,6,200", "--b", "405,6,200"}, &out, &errb), errb.String())
	assert.Contains(t, out.String(), ": distinguishable from zero")
}

func TestJudgeBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"--a", "415,6"},
		{"--a", "415,-1,50"},
		{"--b", "x,6,50"},
		{"--b", "415,6,1"},
		{"--predicted", "0s"},
		{"--nope"},
	} {
		var out, errb bytes.Buffer
		assert.Equal(t, 2, run(args, &out, &errb), args)
		assert.Equal(t, 1, bytes.Count(errb.Bytes(), []byte("\n")), "one-line error for %v: %q", args, errb.String())
	}
}
