package realengine

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The checks in this file hold for every Engine; each engine's tests (the
// MLX engine's behind its build tag too) call them with a factory that
// builds the engine with logits recorded.
type engineFactory func(t testing.TB, c Config, w *Weights) Engine

func tinyModel(t testing.TB, seed uint64) (Config, *Weights) {
	t.Helper()
	c, err := Preset("tiny")
	require.NoError(t, err)
	w, err := RandomWeights(c, seed)
	require.NoError(t, err)
	return c, w
}

func randomPrompt(r *rand.Rand, n, vocab int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(r.IntN(vocab))
	}
	return p
}

// randomPrompts draws one prompt of each length.
func randomPrompts(r *rand.Rand, vocab int, lens ...int) [][]int32 {
	out := make([][]int32, len(lens))
	for i, n := range lens {
		out[i] = randomPrompt(r, n, vocab)
	}
	return out
}

// generate runs one sequence alone for steps steps and returns its tokens
// and per-step logits.
func generate(t *testing.T, e Engine, id SeqID, prompt []int32, steps int) ([]int32, [][]float32) {
	t.Helper()
	require.NoError(t, e.Admit(Sequence{ID: id, Prompt: prompt}))
	var toks []int32
	var logits [][]float32
	for i := 0; i < steps; i++ {
		res, err := e.Step(context.Background())
		require.NoError(t, err)
		require.Len(t, res.Outputs, 1)
		require.NoError(t, res.Outputs[0].Err)
		toks = append(toks, res.Outputs[0].Token)
		logits = append(logits, res.Outputs[0].Logits)
	}
	require.NoError(t, e.Retire(id))
	return toks, logits
}

// maxRelDiff is max|a-b| over max|b|: logits are compared at the scale of the
// largest logit, since float32 error is relative to the magnitudes summed.
func maxRelDiff(a []float32, b []float64) float64 {
	var d, m float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i])-b[i]))
		m = math.Max(m, math.Abs(b[i]))
	}
	return d / m
}

// checkMatchesReference compares an engine's logits and greedy tokens with
// the float64 reference over prefill and several decode steps, on shapes
// that exercise tied and untied heads, llama3 RoPE scaling and GQA.
func checkMatchesReference(t *testing.T, newEngine engineFactory, tol float64) {
	tests := []struct {
		name   string
		preset string
		mutate func(*Config)
		prompt int
		steps  int
	}{
		{name: "tiny tied", preset: "tiny", prompt: 7, steps: 5},
		{name: "tiny one-token prompt", preset: "tiny", prompt: 1, steps: 4},
		{name: "tiny untied llama3 rope", preset: "tiny", mutate: func(c *Config) {
			c.TieWordEmbeddings = false
			rs := llama3Scaling
			rs.OriginalMaxPositionEmbeddings = 16 // so the scaling bands matter at these positions
			c.RopeScaling = &rs
		}, prompt: 12, steps: 6},
		{name: "tiny multi-head kv", preset: "tiny", mutate: func(c *Config) { c.NumKeyValueHeads = 4 }, prompt: 5, steps: 3},
		{name: "small", preset: "small", prompt: 9, steps: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Preset(tt.preset)
			require.NoError(t, err)
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			w, err := RandomWeights(c, 7)
			require.NoError(t, err)
			e := newEngine(t, c, w)
			prompt := randomPrompt(rand.New(rand.NewPCG(1, 2)), tt.prompt, c.VocabSize)
			toks, logits := generate(t, e, 1, prompt, tt.steps)
			all := append(append([]int32(nil), prompt...), toks[:len(toks)-1]...)
			ref, err := ReferenceLogits(c, w, all)
			require.NoError(t, err)
			for i := range toks {
				refRow := ref[len(prompt)-1+i]
				require.Len(t, logits[i], c.VocabSize, "engine must record logits for these checks")
				assert.Less(t, maxRelDiff(logits[i], refRow), tol, "step %d", i)
				best := 0
				for j, v := range refRow {
					if v > refRow[best] {
						best = j
					}
				}
				assert.Equal(t, int32(best), toks[i], "step %d greedy token", i)
			}
		})
	}
}

// checkBatchedEqualsAlone runs sequences one at a time, then together with
// staggered admissions (so prefills and decodes share steps and sequences at
// different contexts decode together), and requires the same tokens and
// logits within tol.
func checkBatchedEqualsAlone(t *testing.T, newEngine engineFactory, tol float64) {
	c, w := tinyModel(t, 3)
	e := newEngine(t, c, w)
	r := rand.New(rand.NewPCG(5, 6))
	const n, steps = 6, 8
	prompts := make([][]int32, n)
	for i := range prompts {
		prompts[i] = randomPrompt(r, 1+r.IntN(20), c.VocabSize)
	}
	alone := make([][]int32, n)
	aloneLogits := make([][][]float32, n)
	for i, p := range prompts {
		alone[i], aloneLogits[i] = generate(t, e, SeqID(i), p, steps)
	}
	got := make([][]int32, n)
	gotLogits := make([][][]float32, n)
	next := 0
	for len(got[n-1]) < steps {
		if next < n {
			require.NoError(t, e.Admit(Sequence{ID: SeqID(next), Prompt: prompts[next]}))
			next++
			if next < n && next%2 == 0 {
				require.NoError(t, e.Admit(Sequence{ID: SeqID(next), Prompt: prompts[next]}))
				next++
			}
		}
		res, err := e.Step(context.Background())
		require.NoError(t, err)
		for _, o := range res.Outputs {
			require.NoError(t, o.Err)
			got[o.ID] = append(got[o.ID], o.Token)
			gotLogits[o.ID] = append(gotLogits[o.ID], o.Logits)
			if len(got[o.ID]) == steps {
				require.NoError(t, e.Retire(o.ID))
			}
		}
	}
	for i := range prompts {
		assert.Equal(t, alone[i], got[i], "sequence %d", i)
		for s := range got[i] {
			for j := range got[i][s] {
				if math.Abs(float64(gotLogits[i][s][j]-aloneLogits[i][s][j])) > tol {
					t.Fatalf("sequence %d step %d logit %d: batched %g alone %g", i, s, j, gotLogits[i][s][j], aloneLogits[i][s][j])
				}
			}
		}
	}
	assert.Equal(t, Stats{}, e.Stats())
}

// runCycles admits, steps and retires random sequences and requires the
// engine to hold nothing afterwards.
func runCycles(t *testing.T, e Engine, r *rand.Rand, vocab int) {
	t.Helper()
	ctx := context.Background()
	live := map[SeqID]int{}
	id := SeqID(0)
	for step := 0; step < 40; step++ {
		for k := r.IntN(3); k > 0; k-- {
			id++
			require.NoError(t, e.Admit(Sequence{ID: id, Prompt: randomPrompt(r, 1+r.IntN(30), vocab), MaxNewTokens: r.IntN(8)}))
			live[id] = 1 + r.IntN(12)
		}
		res, err := e.Step(ctx)
		require.NoError(t, err)
		for _, o := range res.Outputs {
			require.NoError(t, o.Err)
			live[o.ID]--
			if live[o.ID] == 0 {
				require.NoError(t, e.Retire(o.ID))
				delete(live, o.ID)
			}
		}
	}
	for id := range live {
		require.NoError(t, e.Retire(id))
	}
	require.Equal(t, Stats{}, e.Stats())
}

// checkChunkedPrefill prefills a prompt in chunks alongside a decoding
// sequence and requires the same first token and logits as a whole prefill,
// with no token before the last chunk.
func checkChunkedPrefill(t *testing.T, newEngine engineFactory, tol float64) {
	c, w := tinyModel(t, 4)
	e := newEngine(t, c, w)
	ctx := context.Background()
	prompt := randomPrompt(rand.New(rand.NewPCG(7, 7)), 11, c.VocabSize)
	whole, wholeLogits := generate(t, e, 1, prompt, 3)

	require.NoError(t, e.Admit(Sequence{ID: 9, Prompt: []int32{5, 6}}))
	require.NoError(t, e.Admit(Sequence{ID: 2, Prompt: prompt, PrefillChunk: 4}))
	var got []int32
	var gotLogits [][]float32
	var chunks []int
	for len(got) < 3 {
		res, err := e.Step(ctx)
		require.NoError(t, err)
		for _, o := range res.Outputs {
			require.NoError(t, o.Err)
			if o.ID != 2 {
				continue
			}
			if o.Prefill > 0 {
				chunks = append(chunks, o.Prefill)
			}
			if o.Token == NoToken {
				assert.Nil(t, o.Logits)
				continue
			}
			got = append(got, o.Token)
			gotLogits = append(gotLogits, o.Logits)
		}
	}
	assert.Equal(t, []int{4, 4, 3}, chunks)
	assert.Equal(t, whole, got)
	require.NoError(t, e.Retire(9))
	require.NoError(t, e.Retire(2))

	// Alone, so that some steps produce no token at all.
	require.NoError(t, e.Admit(Sequence{ID: 3, Prompt: prompt, PrefillChunk: 5}))
	for i, wantPrefill := range []int{5, 5, 1} {
		res, err := e.Step(ctx)
		require.NoError(t, err)
		require.Len(t, res.Outputs, 1)
		assert.Equal(t, wantPrefill, res.Outputs[0].Prefill)
		if i < 2 {
			assert.Equal(t, NoToken, res.Outputs[0].Token)
		} else {
			assert.Equal(t, whole[0], res.Outputs[0].Token)
		}
	}
	require.NoError(t, e.Retire(3))
	for s := range got {
		ref := make([]float64, len(wholeLogits[s]))
		for j, v := range wholeLogits[s] {
			ref[j] = float64(v)
		}
		assert.Less(t, maxRelDiff(gotLogits[s], ref), tol, "step %d", s)
	}
}
