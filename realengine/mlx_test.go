//go:build mlx && cgo

package realengine

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/batchkit/batchkit/mlxc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain turns MLX's TF32 matrix products off unless the caller chose
// (MLX_ENABLE_TF32 is on by default, and CUDA and Metal then multiply
// float32 in TF32): the checks against the float64 reference expect
// float32 precision, which a GPU run (the tests' default device) misses by
// ~1e-2 otherwise.
func TestMain(m *testing.M) {
	if _, ok := os.LookupEnv("MLX_ENABLE_TF32"); !ok {
		os.Setenv("MLX_ENABLE_TF32", "0")
	}
	os.Exit(m.Run())
}

// deviceName is how Info names the engine's device.
func deviceName(e *MLX) string {
	if e.s.GPU() {
		return "gpu"
	}
	return "cpu"
}

func newMLXForChecks(t testing.TB, c Config, w *Weights) Engine {
	e, err := NewMLX(c, w, Options{Model: "test", DType: "float32", RecordLogits: true})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

func TestMLXMatchesReference(t *testing.T) { checkMatchesReference(t, newMLXForChecks, 1e-3) }
func TestMLXBatchedEqualsAlone(t *testing.T) {
	for _, b := range []struct {
		name string
		mode batching
	}{{"auto", batchAuto}, {"groups", batchGroups}, {"padded", batchPadded}, {"slots", batchSlots}} {
		t.Run(b.name, func(t *testing.T) {
			checkBatchedEqualsAlone(t, func(t testing.TB, c Config, w *Weights) Engine {
				e := newMLXForChecks(t, c, w).(*MLX)
				e.batching = b.mode
				return e
			}, 1e-4)
		})
	}
}
func TestMLXChunkedPrefill(t *testing.T) { checkChunkedPrefill(t, newMLXForChecks, 1e-3) }

// Padded prefill (the GPU default, see prefillWidth) gives the tokens and
// logits of an unpadded one: against the reference, in batches and in
// chunks; the warm-up leaves nothing behind.
func TestMLXPaddedPrefill(t *testing.T) {
	padded := func(t testing.TB, c Config, w *Weights) Engine {
		e := newMLXForChecks(t, c, w).(*MLX)
		e.padPrefill = true
		var err error
		e.thread.do(func() { err = e.warm(40) }) // on the stream's thread, as open does
		require.NoError(t, err)
		require.Zero(t, e.Stats().Sequences)
		return e
	}
	t.Run("reference", func(t *testing.T) { checkMatchesReference(t, padded, 1e-3) })
	t.Run("batched", func(t *testing.T) { checkBatchedEqualsAlone(t, padded, 1e-4) })
	t.Run("chunked", func(t *testing.T) { checkChunkedPrefill(t, padded, 1e-3) })
}

func TestPrefillWidth(t *testing.T) {
	for _, tt := range []struct{ count, limit, want int }{
		{2, 100, 16}, {16, 100, 16}, {17, 100, 20}, {20, 100, 20}, {33, 100, 40},
		{100, 1000, 112}, {129, 1000, 160}, {469, 1000, 512}, {2033, 4096, 2048},
		{17, 18, 18}, {30, 10, 30},
	} {
		assert.Equal(t, tt.want, prefillWidth(tt.count, tt.limit), "count %d limit %d", tt.count, tt.limit)
	}
	// Four lengths per doubling up to 2048.
	n := 0
	for w := 16; w <= 2048; w = prefillWidth(w+1, 1<<20) {
		n++
	}
	assert.Equal(t, 29, n)
}

func TestMLXOpenGPUOnCPUBuild(t *testing.T) {
	gpu, err := mlxc.GPUAvailable()
	require.NoError(t, err)
	if gpu {
		t.Skip("this MLX build has a GPU")
	}
	_, err = Open("mlx", Options{Model: "tiny", Device: "gpu"})
	require.ErrorContains(t, err, "no GPU")
	_, err = Open("mlx", Options{Model: "tiny", Device: "tpu"})
	require.ErrorContains(t, err, `device "tpu"`)
}

// Memory returns to baseline after many requests in every batching mode
// (in slots mode the slot cache goes with its last row).
func TestMLXMemoryBackToBaseline(t *testing.T) {
	for _, m := range []batching{batchSlots, batchGroups, batchPadded} {
		c, w := tinyModel(t, 5)
		e := newMLXForChecks(t, c, w).(*MLX)
		e.batching = m
		// On CUDA, MLX frees what a step used once a worker thread has
		// run the step's completion handlers, which may be after the
		// step has returned (once in five runs on an H200 the memory
		// after the cycles was below a baseline taken right after the
		// warm-up); Synchronize waits for them.
		settled := func() mlxc.MemoryStats {
			var err error
			e.thread.do(func() { err = e.s.Synchronize() })
			require.NoError(t, err)
			m, err := mlxc.Memory()
			require.NoError(t, err)
			return m
		}
		base := settled()
		runCycles(t, e, rand.New(rand.NewPCG(3, 3)), c.VocabSize)
		// The compiled step's tapes stay (each holds a few scalar
		// constants on the device), on purpose: dropped, nothing but the
		// weights is left.
		var ferr error
		e.thread.do(func() { ferr = e.slotFn.Forget() })
		require.NoError(t, ferr)
		after := settled()
		assert.Equal(t, base.Active, after.Active, "batching %d", m)
	}
}

func TestMLXCancelledStepRollsBack(t *testing.T) {
	c, w := tinyModel(t, 6)
	e := newMLXForChecks(t, c, w)
	require.NoError(t, e.Admit(Sequence{ID: 1, Prompt: []int32{1, 2, 3}}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.Step(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, e.Stats().Pending)
	res, err := e.Step(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 3, res.PrefillTokens)
}

func TestMLXContextFull(t *testing.T) {
	c, w := tinyModel(t, 7)
	e, err := NewMLX(c, w, Options{DType: "float32", MaxContext: 4})
	require.NoError(t, err)
	defer e.Close()
	require.NoError(t, e.Admit(Sequence{ID: 1, Prompt: []int32{1, 2, 3}}))
	require.NoError(t, e.Admit(Sequence{ID: 2, Prompt: []int32{1}}))
	for i := 0; i < 2; i++ {
		res, err := e.Step(context.Background())
		require.NoError(t, err)
		for _, o := range res.Outputs {
			require.NoError(t, o.Err)
		}
	}
	res, err := e.Step(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Outputs, 2)
	assert.Equal(t, SeqID(2), res.Outputs[0].ID)
	assert.NoError(t, res.Outputs[0].Err)
	assert.ErrorIs(t, res.Outputs[1].Err, ErrContextFull)
}

// TestMLXLoadSavedModel saves random weights, reloads them and requires the
// same logits as the in-memory weights: exact for f32, within quantisation
// error for q8/q4.
func TestMLXLoadSavedModel(t *testing.T) {
	c, w := tinyModel(t, 8)
	prompt := randomPrompt(rand.New(rand.NewPCG(9, 9)), 9, c.VocabSize)
	want, wantLogits := generate(t, newMLXForChecks(t, c, w), 1, prompt, 3)
	for _, tt := range []struct {
		name string
		opt  SaveOptions
		tol  float64
	}{
		{"f32", SaveOptions{DType: F32}, 0},
		{"q8", SaveOptions{Bits: 8, GroupSize: 32}, 5e-2},
		{"q4", SaveOptions{Bits: 4, GroupSize: 32}, 0.6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir() + "/m"
			require.NoError(t, SaveModel(dir, c, w, tt.opt))
			// float32 as the weights were saved (on a GPU the default is
			// bfloat16).
			e, err := Open("mlx", Options{Model: dir, DType: "float32", RecordLogits: true})
			require.NoError(t, err)
			defer e.Close()
			got, gotLogits := generate(t, e, 1, prompt, 3)
			if tt.tol == 0 {
				assert.Equal(t, want, got)
				assert.Equal(t, wantLogits, gotLogits)
				return
			}
			ref := make([]float64, len(wantLogits[0]))
			for j, v := range wantLogits[0] {
				ref[j] = float64(v)
			}
			assert.Less(t, maxRelDiff(gotLogits[0], ref), tt.tol)
		})
	}
}

// BenchmarkMLXDecode mirrors BenchmarkCPUDecode; it also reports the
// Go-side share of a step: wall time outside mlxc.Eval (graph building, cgo
// crossings, token read-back) over the step's wall.
func BenchmarkMLXDecode(b *testing.B) {
	for _, preset := range []string{"tiny", "small"} {
		for _, dtype := range DTypeNames() {
			for _, batch := range []int{1, 8, 32} {
				benchMLXDecode(b, preset, dtype, batch)
			}
		}
	}
}

// newBenchMLX is an MLX engine on preset's weights, closed with b, on
// MLX's default device or the one MLX_BENCH_DEVICE names (cpu: the CPU
// backend on a machine with a GPU).
func newBenchMLX(b *testing.B, preset string, opt Options) (*MLX, Config) {
	opt.Device = os.Getenv("MLX_BENCH_DEVICE")
	c, w, err := LoadWeights(preset, 1)
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewMLX(c, w, opt)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e, c
}

func benchMLXDecode(b *testing.B, preset, dtype string, batch int) {
	b.Run(fmt.Sprintf("%s/%s/batch=%d", preset, dtype, batch), func(b *testing.B) {
		e, c := newBenchMLX(b, preset, Options{DType: dtype})
		onPinned(b, e, func(view Engine, fatal func(...any)) { // as replay's worker
			d := decodeBatch{b: b, e: view, vocab: c.VocabSize, batch: batch, hint: 128, prime: 1, promptLen: func(int) int { return 64 }, fatal: fatal}
			d.refill()
			e.evalTime = 0
			wall := d.run(128, func() { // the refill's steps are not timed
				ev := e.evalTime
				d.refill()
				e.evalTime = ev
			})
			b.ReportMetric(100*float64(wall-e.evalTime)/float64(wall), "go-overhead-%")
		})
	})
}

// TestMLXGroupedEqualsAlone runs sequences of equal prompt length, which
// share Block calls, and requires each to match its run alone.
func TestMLXGroupedEqualsAlone(t *testing.T) {
	c, w := tinyModel(t, 10)
	e := newMLXForChecks(t, c, w)
	r := rand.New(rand.NewPCG(11, 11))
	prompts := [][]int32{randomPrompt(r, 6, c.VocabSize), randomPrompt(r, 6, c.VocabSize), randomPrompt(r, 6, c.VocabSize)}
	var alone [][][]float32
	var aloneToks [][]int32
	for i, p := range prompts {
		toks, logits := generate(t, e, SeqID(100+i), p, 4)
		aloneToks = append(aloneToks, toks)
		alone = append(alone, logits)
	}
	for i, p := range prompts {
		require.NoError(t, e.Admit(Sequence{ID: SeqID(i), Prompt: p}))
	}
	got := make([][]int32, len(prompts))
	for s := 0; s < 4; s++ {
		res, err := e.Step(context.Background())
		require.NoError(t, err)
		require.Len(t, res.Outputs, len(prompts))
		for _, o := range res.Outputs {
			require.NoError(t, o.Err)
			got[o.ID] = append(got[o.ID], o.Token)
			ref := make([]float64, len(o.Logits))
			for j, v := range alone[o.ID][s] {
				ref[j] = float64(v)
			}
			assert.Less(t, maxRelDiff(o.Logits, ref), 1e-4, "seq %d step %d", o.ID, s)
		}
	}
	assert.Equal(t, aloneToks, got)
}

// TestMLXDTypesMatchReference runs the reference checks' shapes in half
// precision: logits within half-precision error of the float64 reference,
// and the greedy token the reference's wherever its top two logits are
// further apart than that error.
func TestMLXDTypesMatchReference(t *testing.T) {
	for _, tt := range []struct {
		dtype string
		tol   float64
	}{
		// About 20 units of rounding each: float16 keeps 11 significant
		// bits (u = 2⁻¹¹), bfloat16 8 (u = 2⁻⁸); the tolerance of bfloat16
		// is what its rounding allows through two layers, not a fudge.
		{"float16", 1e-2}, {"bfloat16", 5e-2},
	} {
		t.Run(tt.dtype, func(t *testing.T) {
			for _, preset := range []string{"tiny", "small"} {
				c, err := Preset(preset)
				require.NoError(t, err)
				w, err := RandomWeights(c, 7)
				require.NoError(t, err)
				e, err := NewMLX(c, w, Options{Model: preset, DType: tt.dtype, RecordLogits: true})
				require.NoError(t, err)
				defer e.Close()
				assert.Equal(t, tt.dtype, e.Info().DType)
				assert.Equal(t, deviceName(e)+" ("+tt.dtype+")", e.Info().Device)
				assert.Equal(t, tt.dtype, e.layers[0].Q.W.DType().String(), "weights are stored in the dtype")
				prompt := randomPrompt(rand.New(rand.NewPCG(1, 2)), 9, c.VocabSize)
				toks, logits := generate(t, e, 1, prompt, 4)
				all := append(append([]int32(nil), prompt...), toks[:len(toks)-1]...)
				ref, err := ReferenceLogits(c, w, all)
				require.NoError(t, err)
				for i := range toks {
					row := ref[len(prompt)-1+i]
					d := maxRelDiff(logits[i], row)
					assert.Less(t, d, tt.tol, "%s step %d", preset, i)
					assert.Greater(t, d, 1e-5, "%s step %d: too close to the reference for %s", preset, i, tt.dtype)
					best, second, top := refTop2(row)
					if row[best]-second > 2*tt.tol*top {
						assert.Equal(t, int32(best), toks[i], "%s step %d greedy token", preset, i)
					}
				}
			}
		})
	}
}

// refTop2 returns the argmax, the second largest value and max|v|.
func refTop2(v []float64) (best int, second, top float64) {
	second = math.Inf(-1)
	for j, x := range v {
		top = math.Max(top, math.Abs(x))
		if x > v[best] {
			best = j
		}
	}
	for j, x := range v {
		if j != best && x > second {
			second = x
		}
	}
	return best, second, top
}

// deviceWeights reads an engine's weights back from the device in float32,
// dequantising packed matrices in Go (Dequantize, the format's definition).
func deviceWeights(t *testing.T, e *MLX) *Weights {
	t.Helper()
	w := &Weights{Layers: make([]Layer, e.cfg.NumHiddenLayers)}
	for _, sp := range w.specs(e.cfg) {
		l, ok := e.tensors[sp.name]
		require.True(t, ok, sp.name)
		if l.Scales == nil {
			v, err := l.W.Float32()
			require.NoError(t, err)
			*sp.field = v
			continue
		}
		packed, err := l.W.Uint32()
		require.NoError(t, err)
		sc, err := l.Scales.Float32()
		require.NoError(t, err)
		bi, err := l.Biases.Float32()
		require.NoError(t, err)
		*sp.field, err = Dequantize(packed, sc, bi, sp.rows, sp.cols, l.GroupSize, l.Bits)
		require.NoError(t, err)
	}
	return w
}

// TestMLXQuantizeOnLoad quantises float weights on load: every matrix
// (embedding and head included) is packed with group size 64, and the
// logits match the float64 reference on the dequantised weights within the
// dtype's error, while differing from the unquantised model's.
func TestMLXQuantizeOnLoad(t *testing.T) {
	c, err := Preset("small")
	require.NoError(t, err)
	w, err := RandomWeights(c, 4)
	require.NoError(t, err)
	prompt := randomPrompt(rand.New(rand.NewPCG(4, 4)), 9, c.VocabSize)
	dense, err := ReferenceLogits(c, w, prompt)
	require.NoError(t, err)
	for _, tt := range []struct {
		bits  int
		dtype string
		tol   float64
	}{
		{8, "float32", 1e-3}, {4, "float32", 1e-3},
		// MLX's Linux CPU kernel for quantised matmuls without SIMD
		// (backend/cpu/quantized.cpp, _qmm_t) sums in the compute type, so
		// half-precision errors grow with the dot length: bfloat16's 8-bit
		// mantissa loses about ten times float16's accuracy here. Its GPU
		// kernels accumulate in float32.
		{8, "bfloat16", 0.15}, {4, "float16", 2e-2},
	} {
		t.Run(fmt.Sprintf("q%d-%s", tt.bits, tt.dtype), func(t *testing.T) {
			e, err := NewMLX(c, w, Options{Model: "small", DType: tt.dtype, Quantize: tt.bits, RecordLogits: true})
			require.NoError(t, err)
			defer e.Close()
			assert.Equal(t, fmt.Sprintf("%s (%s, %d-bit groups of 64)", deviceName(e), tt.dtype, tt.bits), e.Info().Device)
			for _, l := range []mlxc.Linear{e.embed, e.head, e.layers[0].Q, e.layers[3].Down} {
				require.NotNil(t, l.Scales)
				assert.Equal(t, mlxc.Uint32, l.W.DType())
				assert.Equal(t, tt.bits, l.Bits)
				assert.Equal(t, 64, l.GroupSize)
				assert.Equal(t, tt.dtype, l.Scales.DType().String())
			}
			ref, err := ReferenceLogits(c, deviceWeights(t, e), prompt)
			require.NoError(t, err)
			_, logits := generate(t, e, 1, prompt, 1)
			last := len(prompt) - 1
			assert.Less(t, maxRelDiff(logits[0], ref[last]), tt.tol)
			if tt.dtype == "float32" {
				assert.Greater(t, maxRelDiff(logits[0], dense[last]), 3*tt.tol, "quantisation must change the logits")
			}
		})
	}
	_, err = NewMLX(c, w, Options{Quantize: 5})
	assert.ErrorContains(t, err, "quantize 5 not supported")
	cq := c
	cq.Quantization = &Quantization{GroupSize: 64, Bits: 4}
	_, err = NewMLX(cq, w, Options{Model: "m", Quantize: 8})
	assert.ErrorContains(t, err, "model m is quantised to 4 bits; quantize 8 would quantise it again")
}

// TestMLXRandomPreset draws a preset's weights on the device: the same seed
// gives the same model, another seed another; the draws follow
// RandomWeights' ranges.
func TestMLXRandomPreset(t *testing.T) {
	prompt := []int32{5, 9, 2, 7}
	run := func(opt Options) ([]int32, [][]float32, *MLX) {
		opt.Model, opt.RecordLogits = "tiny", true
		if opt.DType == "" {
			opt.DType = "float32" // the bounds below, unrounded
		}
		eng, err := Open("mlx", opt)
		require.NoError(t, err)
		t.Cleanup(func() { eng.Close() })
		toks, logits := generate(t, eng, 1, prompt, 3)
		return toks, logits, eng.(*MLX)
	}
	t1, l1, e := run(Options{Seed: 1})
	t2, l2, _ := run(Options{Seed: 1})
	assert.Equal(t, t1, t2)
	assert.Equal(t, l1, l2)
	_, l3, _ := run(Options{Seed: 2})
	assert.NotEqual(t, l1, l3)
	q, err := e.layers[0].Q.W.Float32()
	require.NoError(t, err)
	a := math.Sqrt(3.0 / 64)
	var ss float64
	for _, v := range q {
		require.LessOrEqual(t, math.Abs(float64(v)), a)
		ss += float64(v) * float64(v)
	}
	assert.InDelta(t, 1.0/64, ss/float64(len(q)), 0.1/64, "variance 1/fan_in")
	nrm, err := e.layers[1].MLPNorm.Float32()
	require.NoError(t, err)
	for _, v := range nrm {
		require.InDelta(t, 1, v, 0.1)
	}
	_, _, eb := run(Options{Seed: 1, DType: "bfloat16", Quantize: 4})
	assert.Equal(t, deviceName(eb)+" (bfloat16, 4-bit groups of 64)", eb.Info().Device)
}

// tileRoom keeps the values and shape of a scales array whose rows are
// not a multiple of qmmTile, and leaves one whose rows are alone.
func TestMLXTileRoom(t *testing.T) {
	c, w := tinyModel(t, 31)
	e := newMLXForChecks(t, c, w).(*MLX)
	vals := make([]float32, 5*3)
	for i := range vals {
		vals[i] = float32(i) + 0.5
	}
	var shape []int
	var got []float32
	var same bool
	var err error
	e.thread.do(func() { // the engine's thread, as on a GPU it must be
		var a, v, b, bv *mlxc.Array
		if a, err = mlxc.FromFloat32(vals, 5, 3); err != nil {
			return
		}
		if v, err = e.tileRoom(a); err != nil {
			return
		}
		defer v.Close()
		if err = mlxc.Eval(v); err != nil {
			return
		}
		shape = v.Shape()
		if got, err = v.Float32(); err != nil {
			return
		}
		if b, err = mlxc.FromFloat32(make([]float32, qmmTile*2), qmmTile, 2); err != nil {
			return
		}
		defer b.Close()
		bv, err = e.tileRoom(b)
		same = bv == b
	})
	require.NoError(t, err)
	assert.Equal(t, []int{5, 3}, shape)
	assert.Equal(t, vals, got)
	assert.True(t, same, "a multiple of the tile is left alone")
}

// TestMLXLoadQuantisedKeepsPacked loads mlx-community style directories
// (uint32 packed weights, float scales and biases) and requires the device
// to hold the file's packed words bit for bit, scales and biases exactly
// when the engine's dtype holds them, and logits equal to the float64
// reference on the Go-dequantised weights.
func TestMLXLoadQuantisedKeepsPacked(t *testing.T) {
	c, w := tinyModel(t, 12)
	prompt := randomPrompt(rand.New(rand.NewPCG(12, 12)), 7, c.VocabSize)
	for _, tt := range []struct {
		name    string
		bits    int
		scales  DType // as written in the file
		dtype   string
		tol     float64
		inexact bool // the engine's dtype cannot hold the file's scales
	}{
		{"q4 f32 scales", 4, F32, "float32", 1e-3, false},
		{"q8 f32 scales", 8, F32, "float32", 1e-3, false},
		{"q4 bf16 scales in float32", 4, BF16, "float32", 1e-3, false},
		// bfloat16 quantised matmuls sum in bfloat16 on MLX's CPU (see
		// TestMLXQuantizeOnLoad).
		{"q4 bf16 scales in bfloat16", 4, BF16, "bfloat16", 6e-2, false},
		{"q8 f16 scales in float16", 8, F16, "float16", 1e-2, false},
		{"q4 f32 scales in bfloat16", 4, F32, "bfloat16", 6e-2, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, SaveModel(dir, c, w, SaveOptions{Bits: tt.bits, GroupSize: 32}))
			if tt.scales != F32 {
				rewriteScales(t, dir, tt.scales)
			}
			m, err := readModel(dir)
			require.NoError(t, err)
			cd, wd, err := LoadModel(dir)
			require.NoError(t, err)
			ref, err := ReferenceLogits(cd, wd, prompt)
			require.NoError(t, err)
			eng, err := Open("mlx", Options{Model: dir, DType: tt.dtype, RecordLogits: true})
			require.NoError(t, err)
			defer eng.Close()
			e := eng.(*MLX)
			quantised := 0
			for _, sp := range wd.specs(cd) {
				l := e.tensors[sp.name]
				ft, err := m.tensor(sp)
				require.NoError(t, err)
				if !ft.quantised() {
					assert.Nil(t, l.Scales, sp.name)
					continue
				}
				quantised++
				require.NotNil(t, l.Scales, sp.name)
				assert.Equal(t, tt.bits, l.Bits)
				assert.Equal(t, 32, l.GroupSize)
				want, err := ft.Packed.Uint32s()
				require.NoError(t, err)
				got, err := l.W.Uint32()
				require.NoError(t, err)
				require.Equal(t, want, got, "%s: packed words as in the file", sp.name)
				for _, p := range []struct {
					file Tensor
					dev  *mlxc.Array
				}{{ft.Scales, l.Scales}, {ft.Biases, l.Biases}} {
					assert.Equal(t, tt.dtype, p.dev.DType().String())
					fv, err := p.file.Float32s()
					require.NoError(t, err)
					dv, err := p.dev.Float32()
					require.NoError(t, err)
					if tt.inexact {
						assert.InDeltaSlice(t, fv, dv, 1e-2*absMax(fv))
					} else {
						require.Equal(t, fv, dv, "%s: scales and biases as in the file", sp.name)
					}
				}
			}
			assert.Equal(t, 7*c.NumHiddenLayers+1, quantised, "every matrix of a tied model")
			_, logits := generate(t, eng, 1, prompt, 1)
			assert.Less(t, maxRelDiff(logits[0], ref[len(prompt)-1]), tt.tol)
		})
	}
}

// TestMLXLoadQuantisedErrors: a directory whose files disagree with its
// config fails in one line naming the file and the tensor.
func TestMLXLoadQuantisedErrors(t *testing.T) {
	c, w := tinyModel(t, 13)
	dir := t.TempDir()
	require.NoError(t, SaveModel(dir, c, w, SaveOptions{Bits: 4, GroupSize: 32}))
	cfg, err := os.ReadFile(dir + "/config.json")
	require.NoError(t, err)
	bad := strings.Replace(string(cfg), `"bits": 4`, `"bits": 8`, 1)
	require.NotEqual(t, string(cfg), bad)
	require.NoError(t, os.WriteFile(dir+"/config.json", []byte(bad), 0o644))
	_, err = Open("mlx", Options{Model: dir})
	require.Error(t, err)
	assert.Equal(t, "engine mlx: "+dir+"/model.safetensors: tensor model.embed_tokens.weight: packed shape [256 8], want [256 16] for 8-bit", err.Error())
	assert.NotContains(t, err.Error(), "\n")
}

func absMax(v []float32) float64 {
	var m float64
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	return m
}

// rewriteScales re-encodes a saved model's scales and biases in dt, as
// mlx-community files store them in the model's float type.
func rewriteScales(t *testing.T, dir string, dt DType) {
	t.Helper()
	path := dir + "/model.safetensors"
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	ts, meta, err := ReadSafetensors(data)
	require.NoError(t, err)
	for name, tn := range ts {
		if strings.HasSuffix(name, ".scales") || strings.HasSuffix(name, ".biases") {
			v, err := tn.Float32s()
			require.NoError(t, err)
			ts[name], err = FloatTensor(v, tn.Shape, dt)
			require.NoError(t, err)
		}
	}
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, WriteSafetensors(f, ts, meta))
	require.NoError(t, f.Close())
}

// BenchmarkMLXMixedDecode decodes batch sequences whose contexts all
// differ (prompts of 16 to 271 tokens), with one Block call per length
// (groups), one padded call (padded) or one call on the slot cache
// (slots) per layer; every 64 steps the sequences are replaced outside the
// timer.
func BenchmarkMLXMixedDecode(b *testing.B) {
	for _, batch := range []int{8, 32} {
		for _, m := range []struct {
			name string
			mode batching
		}{{"groups", batchGroups}, {"padded", batchPadded}, {"slots", batchSlots}} {
			b.Run(fmt.Sprintf("small/batch=%d/%s", batch, m.name), func(b *testing.B) {
				e, c := newBenchMLX(b, "small", Options{})
				e.batching = m.mode
				r := rand.New(rand.NewPCG(1, 1))
				d := decodeBatch{b: b, e: e, vocab: c.VocabSize, batch: batch, prime: 1, r: r,
					promptLen: func(i int) int { return 16 + i*256/batch + r.IntN(256/batch) }}
				d.refill()
				d.run(64, nil)
			})
		}
	}
}

// TestMLXPipelinedStepsEqual: steps whose graph was built while the
// previous step computed give bit-identical tokens and logits to steps
// built in their own step, for equal and different lengths.
func TestMLXPipelinedStepsEqual(t *testing.T) {
	for _, m := range []struct {
		name string
		mode batching
	}{{"padded", batchPadded}, {"slots", batchSlots}} {
		t.Run(m.name, func(t *testing.T) { checkPipelinedStepsEqual(t, m.mode) })
	}
}

func checkPipelinedStepsEqual(t *testing.T, mode batching) {
	c, w := tinyModel(t, 14)
	r := rand.New(rand.NewPCG(14, 14))
	prompts := [][]int32{randomPrompt(r, 5, c.VocabSize), randomPrompt(r, 5, c.VocabSize), randomPrompt(r, 11, c.VocabSize)}
	run := func(pipeline bool) ([][]SeqOutput, int) {
		e := newMLXForChecks(t, c, w).(*MLX)
		e.pipeline = pipeline
		e.batching = mode
		var steps [][]SeqOutput
		for i, p := range prompts {
			require.NoError(t, e.Admit(Sequence{ID: SeqID(i), Prompt: p}))
			for s := 0; s < 3; s++ {
				res, err := e.Step(context.Background())
				require.NoError(t, err)
				steps = append(steps, res.Outputs)
			}
		}
		require.NoError(t, e.Retire(1))
		for s := 0; s < 3; s++ {
			res, err := e.Step(context.Background())
			require.NoError(t, err)
			steps = append(steps, res.Outputs)
		}
		return steps, e.specHits
	}
	serial, hits := run(false)
	assert.Zero(t, hits)
	piped, hits := run(true)
	assert.Equal(t, 3*2+2, hits, "every step after the first of a stable batch")
	assert.Equal(t, serial, piped)
}

// BenchmarkMLXStepOverhead measures the Go-side overhead of a decode step:
// everything in Step (graph building, cgo crossings, bookkeeping, token
// read-back) that is not MLX computing. Steps run back to back and are
// timed one by one; after every 16th, a probe (untimed) builds a graph of
// the same step shape on the same caches and times only its evaluation.
// overhead-% is 100·(median(step) − median(eval)) / median(step), medians
// because the 2-core machine is shared and a busy neighbour stretches
// single steps. The step right after a probe (or a refill) is not counted:
// in pipelined mode its graph computed during the probe, off the clock,
// which made pipelined steps look nearly free (overhead ~1 % on the CPU
// where back-to-back steps show pipelining gains nothing). "pipelined"
// builds the next step's graph while the current one computes (the
// engine's mode on a GPU); "serial" builds each graph in its own step (its
// mode on a CPU, see MLX.pipeline); "serial-ops" is serial with
// Options.Compile "off", each step's graph built op by op. These three run
// inside Pin, on the engine's thread, as replay's worker does;
// "serial-handoff" is serial called from the benchmark's goroutine, each
// step handed to the engine's thread. outside-eval-% is
// 100·median(step − its time inside mlxc.Eval) / median(step), both from
// the same step, so much steadier than overhead-% on a busy machine; it
// is meaningful in the serial modes only (a pipelined step computes
// inside AsyncEval), and so is other-%, which leaves the step's graph
// building out too, 100·median(step − eval − build) / median(step): what
// is neither MLX computing nor MLX building the graph (hand-offs, Go's
// bookkeeping, cgo crossings, reading the tokens back).
//
// Measured on MLX 0.31.2, CPU backend, 2 shared (busy) cores, float32,
// small batch 1, three runs of 100 steps, serial / serial-ops: build
// 103-117 / 186-203 µs, outside-eval 7.8-9.5 / 9.4-10.2 %, step 2.04-2.27
// / 2.59-2.84 ms (440-491 / 352-386 tokens/s); overhead-% swings from -2
// to +10 % between runs of either. Op by op, the build was 4 layers of ~75
// MLX nodes (the CPU backend expands RoPE, RMSNorm and attention into
// ordinary ops), about half constructing and half freeing C++ graph nodes.
// Compiled (MLX.slotFunc) a step replays a tape of ~180 nodes (RoPE's
// angles shared by all layers, attention written out as two matmuls,
// 2-D projections, elementwise chains fused), which also makes evaluation
// faster (fewer nodes to schedule). What is left at batch 1 (timed inside
// Step, 400 steps, twice): the build, 95-110 µs (the replay, ~0.2 µs per
// node when warm, ~0.6 µs in a step whose compute has just evicted the
// caches, with the ids and lengths arrays and the call); waking the
// caller's goroutine when the engine's locked thread is done, 40-60 µs
// (OpenBLAS's idle threads spin with sched_yield on the 2 cores; 23-25 µs
// with OPENBLAS_NUM_THREADS=1, whose slower matmuls cost more); handing
// the step to that thread ~5 µs; the rest (bookkeeping, token read-back)
// ~10 µs. Batch 8, three runs on a quieter machine, serial / serial-ops:
// step 4.8-5.0 / 5.5-6.0 ms, build 99-141 / 202-217 µs, outside-eval
// 3.4-3.5 / 4.8-5.5 %. Pipelining does not help on the CPU (MLX throttles async_eval
// there) but hides the build behind GPU compute.
//
// Pinned (small, 400 steps, runs of one binary), serial against
// serial-handoff, outside-eval-% / other-%: on this 2-core machine, batch
// 1 5.4-5.7 / 1.1-1.3 % (build 78-103 µs, steps 1.80-2.00 ms) against
// 7.8-8.7 / 3.1-3.6 %, batch 8 2.3-2.5 / 0.3 % against 3.2-3.3 / 1.1 %;
// pipelined at batch 1 2.10-2.15 ms a step, slower. On an H200 (MLX 0.31
// CUDA, idle 16-core host, 3-5 runs), batch 1 10.3-17.4 / 0.8-1.4 %
// (steps 0.77-1.32 ms, build 71-167 µs) against 13.6-17.0 / 3.6-5.3 %,
// batch 8 14.8-16.4 / 3.6-4.3 % against 16.6-20.6 / 5.7-6.1 %. On that
// host's CPU (MLX_BENCH_DEVICE=cpu, 16 cores, outside eval only) batch 1
// 7.4-7.6 % against 6.1-6.4 % (steps 2.6 against 3.1-4.1 ms: the handed
// off steps were slower, not their share larger), batch 8 4.1-4.9 %
// against 3.9-4.1 %. What stays is MLX building the compiled step, ~180
// nodes at ~0.4-0.8 µs each, which neither the CPU (async_eval throttled,
// both cores computing) nor this launch-bound GPU step lets run during
// the computation.
func BenchmarkMLXStepOverhead(b *testing.B) {
	for _, preset := range []string{"small", "tiny"} {
		for _, batch := range []int{1, 8} {
			for _, mode := range []string{"pipelined", "serial", "serial-ops", "serial-handoff"} {
				b.Run(fmt.Sprintf("%s/batch=%d/%s", preset, batch, mode), func(b *testing.B) {
					e, c := newBenchMLX(b, preset, Options{Compile: map[bool]string{true: "off", false: "on"}[mode == "serial-ops"]})
					e.pipeline = mode == "pipelined"
					if mode == "serial-handoff" {
						stepOverhead(b, e, e, c, batch, e.thread.do, b.Fatal)
						return
					}
					onPinned(b, e, func(view Engine, fatal func(...any)) {
						stepOverhead(b, e, view, c, batch, func(f func()) { f() }, fatal)
					})
				})
			}
		}
	}
}

// onPinned runs f on e's thread through Pin with the pinned view. f must
// fail with the fatal it is given: b.Fatal would end the engine's thread
// rather than the benchmark's goroutine.
func onPinned(b *testing.B, e *MLX, f func(view Engine, fatal func(...any))) {
	type failure struct{ msg string }
	var failed any
	e.Pin(func(view Engine) {
		defer func() { failed = recover() }()
		f(view, func(args ...any) { panic(failure{fmt.Sprint(args...)}) })
	})
	if f, ok := failed.(failure); ok {
		b.Fatal(f.msg)
	} else if failed != nil {
		panic(failed)
	}
}

// stepOverhead is BenchmarkMLXStepOverhead's body: it drives e through eng
// (e itself or a pinned view), runs the probe with onThread, which puts it
// on the engine's thread, and fails with fatal.
func stepOverhead(b *testing.B, e *MLX, eng Engine, c Config, batch int, onThread func(func()), fatal func(...any)) {
	ctx := context.Background()
	// Prefill, then a first decode so the pipeline is primed.
	d := decodeBatch{b: b, e: eng, vocab: c.VocabSize, batch: batch, prime: 2, promptLen: func(int) int { return 64 }, fatal: fatal}
	d.refill()
	var steps, evals, builds, outside, other []float64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%128 == 0 {
			b.StopTimer()
			d.refill()
			b.StartTimer()
		}
		ev0, bu0 := e.evalTime, e.buildTime
		t0 := time.Now()
		if _, err := eng.Step(ctx); err != nil {
			fatal(err)
		}
		step := time.Since(t0)
		if i%16 != 0 {
			ev := e.evalTime - ev0
			steps = append(steps, float64(step.Microseconds()))
			outside = append(outside, float64((step - ev).Microseconds()))
			other = append(other, float64((step - ev - (e.buildTime - bu0)).Microseconds()))
		}
		if i%16 != 15 {
			continue
		}
		b.StopTimer()
		var rows []*mlxRow
		for _, sq := range e.order {
			rows = append(rows, &mlxRow{sq: sq, count: 1})
		}
		var build, eval time.Duration
		onThread(func() { // the stream's thread, as Step
			if sp := e.spec; sp != nil {
				// Let the step in flight finish: the probe
				// must not share the device with it.
				if err := mlxc.Eval(sp.graph.outs...); err != nil {
					b.Error(err)
					return
				}
			}
			tb := time.Now()
			gr, err := e.build(ctx, rows, false)
			if err == nil {
				build = time.Since(tb)
				// As Step does: the slot caches are handed
				// over so MLX writes in place (otherwise this
				// eval would copy them); the probe only writes
				// columns the next step writes again.
				if gr.slotK != nil {
					e.slots.replace(gr.slotK, gr.slotV)
					gr.slotK, gr.slotV = nil, nil
				}
				t1 := time.Now()
				err = mlxc.Eval(slices.Concat(gr.outs, e.slots.k, e.slots.v)...)
				eval = time.Since(t1)
				gr.free()
			}
			freeRows(rows)
			if err != nil {
				b.Error(err)
			}
		})
		if b.Failed() {
			fatal("probe failed")
		}
		builds = append(builds, float64(build.Microseconds()))
		evals = append(evals, float64(eval.Microseconds()))
		b.StartTimer()
	}
	if len(evals) == 0 {
		return // fewer than 16 steps: nothing to compare
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	ms := med(steps)
	md := ms - med(evals)
	b.ReportMetric(ms, "step-µs")
	b.ReportMetric(md, "overhead-µs")
	b.ReportMetric(med(builds), "build-µs")
	b.ReportMetric(100*md/ms, "overhead-%")
	b.ReportMetric(100*med(outside)/ms, "outside-eval-%")
	b.ReportMetric(100*med(other)/ms, "other-%")
	b.ReportMetric(float64(batch)*1e6/ms, "tokens/s")
}

// The engine turns MLX's CUDA graphs off unless the user chose.
func TestMLXCUDAGraphsDefault(t *testing.T) {
	const name = "MLX_USE_CUDA_GRAPHS"
	t.Setenv(name, "1") // restores the original value afterwards
	cudaGraphsOff()
	assert.Equal(t, "1", os.Getenv(name), "a user's choice stands")
	require.NoError(t, os.Unsetenv(name))
	cudaGraphsOff()
	assert.Equal(t, "0", os.Getenv(name))
}

// TestMLXSlotsMatchGroups runs one schedule of admissions and retirements
// in slots mode and in groups mode (per-sequence caches, one Block call
// per length): retiring rows in the middle compacts the slot cache, more
// than four rows and contexts past 64 tokens make it grow both ways, and
// the pipelined path (graphs built during the previous step) is on.
// Tokens must be equal and logits within float32 noise, KVBytes must
// report the slot cache's capacity, and everything must go at the end.
func TestMLXSlotsMatchGroups(t *testing.T) {
	c, w := tinyModel(t, 21)
	prompts := randomPrompts(rand.New(rand.NewPCG(21, 21)), c.VocabSize, 3, 9, 17, 1, 30, 62, 5, 12)
	schedule := map[int]scheduleEvent{
		0:  {admit: []SeqID{0, 1, 2}},
		2:  {admit: []SeqID{3, 4}},
		4:  {retire: []SeqID{1}},
		5:  {admit: []SeqID{5, 6}, retire: []SeqID{3}},
		7:  {retire: []SeqID{0, 6}},
		8:  {admit: []SeqID{7}},
		11: {retire: []SeqID{4}},
	}
	run := func(mode batching) ([][]SeqOutput, []Stats) {
		e := newMLXForChecks(t, c, w).(*MLX)
		e.batching, e.pipeline = mode, true
		var stats []Stats
		steps, live := runSchedule(t, e, prompts, schedule, 14, func(int) { stats = append(stats, e.Stats()) })
		if mode == batchSlots {
			assert.Equal(t, len(live), len(e.slots.seqs))
			assert.Greater(t, e.slots.rowCap, 4, "rows grew")
			assert.Greater(t, e.slots.colCap, 64, "columns grew")
			assert.Greater(t, e.specHits, 4, "steps built during the previous one")
			for i, sq := range e.slots.seqs {
				assert.Equal(t, i, sq.row)
				assert.Nil(t, sq.k)
			}
		}
		for _, id := range live {
			require.NoError(t, e.Retire(id))
		}
		assert.Equal(t, Stats{}, e.Stats())
		assert.Nil(t, e.slots.k)
		return steps, stats
	}
	want, wantStats := run(batchGroups)
	got, gotStats := run(batchSlots)
	assertSameOutputs(t, want, got, 1e-4, "")
	per := int64(2 * c.NumHiddenLayers * c.KVDim() * 4)
	for s := range want {
		assert.Equal(t, wantStats[s].KVTokens, gotStats[s].KVTokens, "step %d", s)
		assert.Equal(t, wantStats[s].Sequences, gotStats[s].Sequences, "step %d", s)
		assert.Equal(t, wantStats[s].KVTokens*int(per), int(wantStats[s].KVBytes), "step %d", s)
		assert.Zero(t, gotStats[s].KVBytes%per, "step %d: whole slots", s)
		assert.GreaterOrEqual(t, gotStats[s].KVBytes, wantStats[s].KVBytes, "step %d: capacity holds the tokens", s)
	}
}

// TestMLXSlotsWriteInPlace: a decode step writes its new columns into the
// slot cache in place (MLX donates the old buffers, since the engine drops
// its handles before evaluation), serial and pipelined. A copy would need
// at least one layer's K cache (a slab) above the held arrays at the step's
// peak, so with a cache 4 slabs larger that excess would grow by a large
// slab or more; in place it does not grow. Compared between two caches
// rather than against one slab because the backend's own scratch space
// counts in the peak too: on an H200 (MLX 0.31 CUDA) 34 MB, or 45 MB in
// some engines, whatever the cache, serial or pipelined (the CUDA BLAS
// workspace is 32 MiB). So on a GPU the caches are 8 times those on the
// CPU, and a copy of the cache (8 slabs) stands far out of that noise.
func TestMLXSlotsWriteInPlace(t *testing.T) {
	c, w, err := LoadWeights("small", 1)
	require.NoError(t, err)
	open := func() *MLX {
		e, err := NewMLX(c, w, Options{Model: "small", DType: "float32"})
		require.NoError(t, err)
		return e
	}
	probe := open()
	n := 100 // prompt tokens of the smaller cache
	if probe.s.GPU() {
		n = 800
	}
	require.NoError(t, probe.Close())
	// excess runs 8 sequences of prompts of n tokens and returns one
	// layer's K slab and the largest peak above the held memory over two
	// decode steps.
	excess := func(pipeline bool, n int) (slab, most int64) {
		e := open()
		defer e.Close()
		e.pipeline = pipeline
		r := rand.New(rand.NewPCG(8, 8))
		for i := 0; i < 8; i++ {
			require.NoError(t, e.Admit(Sequence{ID: SeqID(i), Prompt: randomPrompt(r, n+i, c.VocabSize)}))
		}
		for s := 0; s < 2; s++ {
			_, err := e.Step(context.Background())
			require.NoError(t, err)
		}
		slab = int64(e.slots.rowCap * e.slots.colCap * c.KVDim() * 4)
		require.Equal(t, 2*int64(c.NumHiddenLayers)*slab, e.Stats().KVBytes)
		for s := 0; s < 2; s++ {
			require.NoError(t, mlxc.ResetPeakMemory())
			m0, err := mlxc.Memory()
			require.NoError(t, err)
			_, err = e.Step(context.Background())
			require.NoError(t, err)
			m1, err := mlxc.Memory()
			require.NoError(t, err)
			most = max(most, m1.Peak-m0.Active)
		}
		return slab, most
	}
	for _, pipeline := range []bool{false, true} {
		small, exSmall := excess(pipeline, n)
		large, exLarge := excess(pipeline, 4*n)
		require.Equal(t, 4*small, large)
		assert.Less(t, exLarge-exSmall, large, "pipeline %v: excess %d bytes with slabs of %d, %d with %d", pipeline, exSmall, small, exLarge, large)
	}
}

// scheduleEvent is what runSchedule retires and admits before a step.
type scheduleEvent struct{ admit, retire []SeqID }

// runSchedule runs steps steps of e, retiring and admitting schedule[s]'s
// sequences (prompts by ID) before step s and calling after(s) after it.
// It returns each step's outputs sorted by ID and the sequences left
// admitted.
func runSchedule(t *testing.T, e Engine, prompts [][]int32, schedule map[int]scheduleEvent, steps int, after func(s int)) ([][]SeqOutput, []SeqID) {
	t.Helper()
	var out [][]SeqOutput
	var live []SeqID
	for s := 0; s < steps; s++ {
		ev := schedule[s]
		for _, id := range ev.retire {
			require.NoError(t, e.Retire(id))
			live = slices.DeleteFunc(live, func(x SeqID) bool { return x == id })
		}
		for _, id := range ev.admit {
			require.NoError(t, e.Admit(Sequence{ID: id, Prompt: prompts[id]}))
			live = append(live, id)
		}
		res, err := e.Step(context.Background())
		require.NoError(t, err)
		for _, o := range res.Outputs {
			require.NoError(t, o.Err)
		}
		slices.SortFunc(res.Outputs, func(a, b SeqOutput) int { return int(a.ID - b.ID) })
		out = append(out, res.Outputs)
		after(s)
	}
	return out, live
}

// assertSameOutputs holds two runs' steps to the same sequences, tokens
// and contexts, and logits within tol.
func assertSameOutputs(t *testing.T, want, got [][]SeqOutput, tol float64, label string) {
	t.Helper()
	require.Equal(t, len(want), len(got))
	for s := range want {
		require.Len(t, got[s], len(want[s]), "%sstep %d", label, s)
		for i, o := range want[s] {
			g := got[s][i]
			require.Equal(t, o.ID, g.ID, "%sstep %d", label, s)
			assert.Equal(t, o.Token, g.Token, "%sstep %d seq %d", label, s, o.ID)
			assert.Equal(t, o.Context, g.Context, "%sstep %d seq %d", label, s, o.ID)
			ref := make([]float64, len(o.Logits))
			for j, v := range o.Logits {
				ref[j] = float64(v)
			}
			assert.Less(t, maxRelDiff(g.Logits, ref), tol, "%sstep %d seq %d", label, s, o.ID)
		}
	}
}

func TestGrownCap(t *testing.T) {
	for _, tc := range []struct{ have, need, limit, want int }{
		{0, 4, math.MaxInt, 4},
		{0, 65, math.MaxInt, 128},
		{64, 65, math.MaxInt, 128},
		{64, 300, math.MaxInt, 512},
		{64, 65, 100, 100}, // the context limit caps the doubling
		{64, 100, 100, 100},
		{8, 3, math.MaxInt, 8},
	} {
		assert.Equal(t, tc.want, grownCap(tc.have, tc.need, tc.limit), "%+v", tc)
	}
}

// The compiled slot step (the default) gives the tokens and logits of the
// op-by-op one (Options.Compile "off") across row and column capacity growths
// and row moves, serial and pipelined, and replays its tapes: it traces
// once per input shapes, not once per step.
func TestMLXCompiledSlotsMatchUncompiled(t *testing.T) {
	c, w := tinyModel(t, 23)
	prompts := randomPrompts(rand.New(rand.NewPCG(23, 23)), c.VocabSize, 3, 9, 17, 1, 30, 62, 5, 12)
	schedule := map[int]scheduleEvent{
		0: {admit: []SeqID{0, 1, 2}},
		2: {admit: []SeqID{3, 4, 5}}, // five rows: rowCap 4 -> 8
		5: {retire: []SeqID{1}},      // the last row moves into row 1
		6: {admit: []SeqID{6}},
		9: {retire: []SeqID{0, 6}},
	}
	const steps, stable = 16, 6 // the last `stable` steps change no shape
	run := func(noCompile, pipeline bool) [][]SeqOutput {
		e, err := NewMLX(c, w, Options{Model: "test", DType: "float32", RecordLogits: true, Compile: map[bool]string{true: "off", false: "on"}[noCompile]})
		require.NoError(t, err)
		defer e.Close()
		e.pipeline = pipeline
		require.Equal(t, noCompile, e.slotFn == nil)
		warm := e.slotFn.Traces() // a GPU engine warms up at open
		traces := 0
		out, _ := runSchedule(t, e, prompts, schedule, steps, func(s int) {
			if s == steps-stable-1 {
				traces = e.slotFn.Traces()
			}
		})
		assert.Equal(t, 8, e.slots.rowCap, "rows grew")
		assert.Equal(t, 128, e.slots.colCap, "columns grew (sequence 5 passed 64 tokens)")
		if !noCompile {
			assert.Equal(t, traces, e.slotFn.Traces(), "steps of unchanged shapes replay a tape")
			assert.Less(t, e.slotFn.Traces()-warm, steps-stable, "fewer traces than slot steps")
		}
		return out
	}
	for _, pipeline := range []bool{false, true} {
		assertSameOutputs(t, run(true, pipeline), run(false, pipeline), 1e-5, fmt.Sprintf("pipeline %v ", pipeline))
	}
}

// The compiled step's tapes outlive idle periods (a sequence decoding
// alone again replays the tape of the last one) but not a bound: past
// maxTapes new tracings they are dropped.
func TestMLXSlotTapes(t *testing.T) {
	c, w := tinyModel(t, 24)
	e, err := NewMLX(c, w, Options{Model: "test", Compile: "on"})
	require.NoError(t, err)
	defer e.Close()
	// A GPU engine's warm-up traced tapes: start without them.
	e.thread.do(func() { err = e.slotFn.Forget() })
	require.NoError(t, err)
	warm := e.slotFn.Traces()
	e.slotTraces = warm
	r := rand.New(rand.NewPCG(24, 24))
	decode := func(id SeqID, n int) {
		require.NoError(t, e.Admit(Sequence{ID: id, Prompt: randomPrompt(r, n, c.VocabSize)}))
		for s := 0; s < 3; s++ {
			_, err := e.Step(context.Background())
			require.NoError(t, err)
		}
		require.NoError(t, e.Retire(id))
	}
	decode(0, 5)
	traces := e.slotFn.Traces()
	require.Positive(t, traces)
	decode(1, 7) // same batch size and capacities after an idle engine
	assert.Equal(t, traces, e.slotFn.Traces(), "replayed")
	assert.Equal(t, warm, e.slotTraces, "nothing dropped yet")
	e.maxTapes = 1
	decode(2, 100) // a wider cache: a second tape, over the bound
	assert.Equal(t, traces+1, e.slotTraces, "tapes dropped at the second")
	assert.Equal(t, traces+2, e.slotFn.Traces(), "the next step traced again")
}
