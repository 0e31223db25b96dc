//go:build mlx && cgo

package mlxc

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newRNG(t testing.TB) *rand.Rand {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 7))
}

func randn(r *rand.Rand, n int, scale float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64() * scale)
	}
	return out
}

func arr(t testing.TB, data []float32, shape ...int) *Array {
	t.Helper()
	a, err := FromFloat32(data, shape...)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	return a
}

func cpu(t testing.TB) *Stream {
	t.Helper()
	s, err := CPUStream()
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// stream is the tests' stream: the CPU's, or with MLXC_TEST_DEVICE=gpu
// the GPU's, so that the same checks hold the GPU kernels against the Go
// references. The test's goroutine is then locked to its OS thread, as a
// GPU stream needs.
func stream(t testing.TB) *Stream {
	t.Helper()
	if os.Getenv("MLXC_TEST_DEVICE") != "gpu" {
		return cpu(t)
	}
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread) // after the stream's Close below
	s, err := GPUStream()
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMain turns MLX's TF32 matrix products off unless the caller chose
// (see realengine's TestMain): the references expect float32 precision.
func TestMain(m *testing.M) {
	if _, ok := os.LookupEnv("MLX_ENABLE_TF32"); !ok {
		os.Setenv("MLX_ENABLE_TF32", "0")
	}
	os.Exit(m.Run())
}

// values reads and closes an operation's result: values(t)(s.Op(...)).
func values(t testing.TB) func(*Array, error) []float32 {
	return func(a *Array, err error) []float32 {
		t.Helper()
		require.NoError(t, err)
		defer a.Close()
		v, err := a.Float32()
		require.NoError(t, err)
		return v
	}
}

// matmulT is x·wᵀ in float64: x [m, k], w [n, k].
func matmulT(x, w []float32, m, k, n int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += float64(x[i*k+p]) * float64(w[j*k+p])
			}
			out[i*n+j] = s
		}
	}
	return out
}

func assertClose(t testing.TB, want []float64, got []float32, tol float64) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		if math.Abs(want[i]-float64(got[i])) > tol*(1+math.Abs(want[i])) {
			t.Fatalf("element %d: want %.6g, got %.6g (tol %g)", i, want[i], got[i], tol)
		}
	}
}

func TestVersionAndDevices(t *testing.T) {
	v, err := Version()
	require.NoError(t, err)
	assert.Regexp(t, regexp.MustCompile(`^\d+\.\d+\.\d+`), v)
	gpu, err := GPUAvailable()
	require.NoError(t, err)
	def, err := DefaultGPU()
	require.NoError(t, err)
	assert.Equal(t, gpu, def, "MLX defaults to the GPU exactly when it has one")
	s, err := DefaultStream()
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, gpu, s.GPU())
	g, err := GPUStream()
	if gpu {
		require.NoError(t, err)
		assert.True(t, g.GPU())
		g.Close()
	} else {
		assert.ErrorContains(t, err, "no GPU")
	}
	c := cpu(t)
	assert.Contains(t, c.String(), "cpu")
	require.NoError(t, c.Synchronize())
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "second Close")
	_, err = s.Add(arr(t, []float32{1}, 1), arr(t, []float32{1}, 1))
	assert.ErrorIs(t, err, ErrClosed)
}

func TestArraysRoundTrip(t *testing.T) {
	s := stream(t)
	f := arr(t, []float32{1, -2.5, 3, 4, 5, 6}, 2, 3)
	assert.Equal(t, Float32, f.DType())
	assert.Equal(t, []int{2, 3}, f.Shape())
	assert.Equal(t, 6, f.Size())
	got, err := f.Float32()
	require.NoError(t, err)
	assert.Equal(t, []float32{1, -2.5, 3, 4, 5, 6}, got)

	i, err := FromInt32([]int32{-1, 2, 3}, 3)
	require.NoError(t, err)
	defer i.Close()
	iv, err := i.Int32()
	require.NoError(t, err)
	assert.Equal(t, []int32{-1, 2, 3}, iv)

	u, err := FromUint32([]uint32{0xFFFFFFFF, 7}, 2)
	require.NoError(t, err)
	defer u.Close()
	uv, err := u.Uint32()
	require.NoError(t, err)
	assert.Equal(t, []uint32{0xFFFFFFFF, 7}, uv)

	// 1.0, -2.0, 0.5 in float16 and bfloat16.
	h, err := FromFloat16Bits([]uint16{0x3C00, 0xC000, 0x3800}, 3)
	require.NoError(t, err)
	defer h.Close()
	assert.Equal(t, Float16, h.DType())
	hv, err := h.Float32()
	require.NoError(t, err)
	assert.Equal(t, []float32{1, -2, 0.5}, hv)
	hb, err := h.Float16Bits()
	require.NoError(t, err)
	assert.Equal(t, []uint16{0x3C00, 0xC000, 0x3800}, hb)

	b, err := FromBFloat16Bits([]uint16{0x3F80, 0xC000, 0x3F00}, 3)
	require.NoError(t, err)
	defer b.Close()
	assert.Equal(t, BFloat16, b.DType())
	bv, err := b.Float32()
	require.NoError(t, err)
	assert.Equal(t, []float32{1, -2, 0.5}, bv)

	// astype float32 -> bfloat16 keeps the top 16 bits of exact values.
	bf, err := s.AsType(f, BFloat16)
	require.NoError(t, err)
	defer bf.Close()
	assert.Equal(t, BFloat16, bf.DType())
	bits, err := bf.BFloat16Bits()
	require.NoError(t, err)
	for k, x := range []float32{1, -2.5, 3, 4, 5, 6} {
		assert.Equal(t, uint16(math.Float32bits(x)>>16), bits[k])
	}

	_, err = FromFloat32([]float32{1, 2, 3}, 2, 2)
	assert.ErrorContains(t, err, "3 values for shape [2 2]")
	require.NoError(t, f.Close())
	require.NoError(t, f.Close(), "second Close")
	_, err = f.Float32()
	assert.ErrorIs(t, err, ErrClosed)
}

func TestOps(t *testing.T) {
	s := stream(t)
	a := arr(t, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b := arr(t, []float32{10, 20, 30}, 3)
	idx, err := FromInt32([]int32{1, 0, 1}, 3)
	require.NoError(t, err)
	defer idx.Close()
	tests := []struct {
		name  string
		f     func() (*Array, error)
		shape []int
		want  []float32
	}{
		{"add broadcast", func() (*Array, error) { return s.Add(a, b) }, []int{2, 3}, []float32{11, 22, 33, 14, 25, 36}},
		{"multiply", func() (*Array, error) { return s.Multiply(a, b) }, []int{2, 3}, []float32{10, 40, 90, 40, 100, 180}},
		{"reshape", func() (*Array, error) { return s.Reshape(a, 3, -1) }, []int{3, 2}, []float32{1, 2, 3, 4, 5, 6}},
		{"transpose", func() (*Array, error) { return s.Transpose(a, 1, 0) }, []int{3, 2}, []float32{1, 4, 2, 5, 3, 6}},
		{"concatenate axis 0", func() (*Array, error) { return s.Concatenate(0, a, a) }, []int{4, 3}, []float32{1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6}},
		{"concatenate axis 1", func() (*Array, error) { return s.Concatenate(1, a, a) }, []int{2, 6}, []float32{1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6}},
		{"slice", func() (*Array, error) { return s.Slice(a, []int{1, 1}, []int{2, 3}) }, []int{1, 2}, []float32{5, 6}},
		{"take rows", func() (*Array, error) { return s.Take(a, idx, 0) }, []int{3, 3}, []float32{4, 5, 6, 1, 2, 3, 4, 5, 6}},
		{"matmul", func() (*Array, error) {
			bt, err := s.Reshape(b, 3, 1)
			if err != nil {
				return nil, err
			}
			defer bt.Close()
			return s.Matmul(a, bt)
		}, []int{2, 1}, []float32{140, 320}},
	}
	// No subtests: a GPU stream (MLXC_TEST_DEVICE=gpu) works on this
	// goroutine's thread only.
	for _, tt := range tests {
		r, err := tt.f()
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.shape, r.Shape(), tt.name)
		v, err := r.Float32()
		r.Close()
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.want, v, tt.name)
	}

	sm := values(t)(s.Softmax(a, -1))
	for row := 0; row < 2; row++ {
		var z float64
		for k := 0; k < 3; k++ {
			z += math.Exp(float64(k))
		}
		for k := 0; k < 3; k++ {
			assert.InDelta(t, math.Exp(float64(k))/z, sm[row*3+k], 1e-6)
		}
	}
	am, err := s.Argmax(arr(t, []float32{0, 5, 1, 9, 2, 3}, 2, 3), -1, false)
	require.NoError(t, err)
	defer am.Close()
	av, err := am.Int32()
	require.NoError(t, err)
	assert.Equal(t, []int32{1, 0}, av)
}

func TestMatmulNumerics(t *testing.T) {
	r := newRNG(t)
	s := stream(t)
	m, k, n := 7, 65, 33
	x, w := randn(r, m*k, 1), randn(r, n*k, 1)
	wa := arr(t, w, n, k)
	wt, err := s.Transpose(wa)
	require.NoError(t, err)
	defer wt.Close()
	got := values(t)(s.Matmul(arr(t, x, m, k), wt))
	assertClose(t, matmulT(x, w, m, k, n), got, 1e-4)
}

func refRMSNorm(x, w []float32, rows, d int, eps float64) []float64 {
	out := make([]float64, rows*d)
	for i := 0; i < rows; i++ {
		var ss float64
		for j := 0; j < d; j++ {
			v := float64(x[i*d+j])
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(d)+eps)
		for j := 0; j < d; j++ {
			out[i*d+j] = float64(x[i*d+j]) * inv * float64(w[j])
		}
	}
	return out
}

func TestRMSNormNumerics(t *testing.T) {
	r := newRNG(t)
	s := stream(t)
	// 9 rows of 256: MLX 0.31's fused CUDA kernel got these 32 % wrong.
	for _, sh := range [][2]int{{5, 96}, {9, 256}, {9, 384}} {
		rows, d := sh[0], sh[1]
		x, w := randn(r, rows*d, 2), randn(r, d, 1)
		got := values(t)(s.RMSNorm(arr(t, x, rows, d), arr(t, w, d), 1e-5))
		assertClose(t, refRMSNorm(x, w, rows, d, 1e-5), got, 1e-5)
	}
}

// refRoPE rotates pairs (i, i+half) of each row of x [..., L, d], row l at
// position offset+l.
func refRoPE(x []float32, L, d, offset int, invFreq []float64) []float64 {
	out := make([]float64, len(x))
	half := d / 2
	for base := 0; base < len(x); base += d {
		pos := float64(offset + (base/d)%L)
		for i := 0; i < half; i++ {
			sin, cos := math.Sincos(pos * invFreq[i])
			a, b := float64(x[base+i]), float64(x[base+i+half])
			out[base+i] = a*cos - b*sin
			out[base+i+half] = a*sin + b*cos
		}
	}
	return out
}

func invFreq(d int, theta float64) []float64 {
	f := make([]float64, d/2)
	for i := range f {
		f[i] = 1 / math.Pow(theta, float64(2*i)/float64(d))
	}
	return f
}

func TestRoPENumerics(t *testing.T) {
	r := newRNG(t)
	s := stream(t)
	B, H, L, d, off := 2, 3, 5, 32, 11
	x := randn(r, B*H*L*d, 1)
	got := values(t)(s.RoPE(arr(t, x, B, H, L, d), RoPE{Dims: d, Base: 10000, Offset: off}))
	assertClose(t, refRoPE(x, L, d, off, invFreq(d, 10000)), got, 2e-4)

	// Explicit frequencies (how llama3 rope_scaling arrives): MLX takes
	// periods, 1/inv_freq.
	inv := invFreq(d, 500000)
	for i := range inv {
		inv[i] /= 1 + float64(i%3)
	}
	periods := make([]float32, d/2)
	for i := range periods {
		periods[i] = float32(1 / inv[i])
	}
	got = values(t)(s.RoPE(arr(t, x, B, H, L, d), RoPE{Dims: d, Offset: off, Freqs: arr(t, periods, d/2)}))
	assertClose(t, refRoPE(x, L, d, off, inv), got, 2e-4)
}

// refSDPA: q [B, H, Lq, d], k, v [B, Hkv, Lkv, d], causal aligned to the
// end of the keys.
func refSDPA(q, k, v []float32, B, H, Hkv, Lq, Lkv, d int, causal bool) []float64 {
	out := make([]float64, B*H*Lq*d)
	scale := 1 / math.Sqrt(float64(d))
	rep := H / Hkv
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			kh := h / rep
			for i := 0; i < Lq; i++ {
				qo := ((b*H+h)*Lq + i) * d
				scores := make([]float64, Lkv)
				mx := math.Inf(-1)
				for j := 0; j < Lkv; j++ {
					if causal && j > i+Lkv-Lq {
						scores[j] = math.Inf(-1)
						continue
					}
					ko := ((b*Hkv+kh)*Lkv + j) * d
					var s float64
					for p := 0; p < d; p++ {
						s += float64(q[qo+p]) * float64(k[ko+p])
					}
					scores[j] = s * scale
					mx = math.Max(mx, scores[j])
				}
				var z float64
				for j := range scores {
					scores[j] = math.Exp(scores[j] - mx)
					z += scores[j]
				}
				for j := range scores {
					vo := ((b*Hkv+kh)*Lkv + j) * d
					for p := 0; p < d; p++ {
						out[qo+p] += scores[j] / z * float64(v[vo+p])
					}
				}
			}
		}
	}
	return out
}

func TestSDPANumerics(t *testing.T) {
	r := newRNG(t)
	tests := []struct {
		name                  string
		B, H, Hkv, Lq, Lkv, d int
		causal                bool
	}{
		{"causal prefill gqa", 2, 4, 2, 6, 6, 16, true},
		{"causal with cache", 1, 4, 1, 3, 9, 32, true},
		{"decode no mask", 3, 2, 2, 1, 7, 16, false},
		{"decode head dim 64", 2, 8, 2, 1, 33, 64, false},
		{"causal prefill head dim 128", 1, 4, 2, 9, 9, 128, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := stream(t)
			q := randn(r, tt.B*tt.H*tt.Lq*tt.d, 1)
			k := randn(r, tt.B*tt.Hkv*tt.Lkv*tt.d, 1)
			v := randn(r, tt.B*tt.Hkv*tt.Lkv*tt.d, 1)
			got := values(t)(s.SDPA(arr(t, q, tt.B, tt.H, tt.Lq, tt.d), arr(t, k, tt.B, tt.Hkv, tt.Lkv, tt.d),
				arr(t, v, tt.B, tt.Hkv, tt.Lkv, tt.d), float32(1/math.Sqrt(float64(tt.d))), Mask{Causal: tt.causal}))
			assertClose(t, refSDPA(q, k, v, tt.B, tt.H, tt.Hkv, tt.Lq, tt.Lkv, tt.d, tt.causal), got, 1e-4)
		})
	}
}

func TestQuantizedMatmulNumerics(t *testing.T) {
	r := newRNG(t)
	s := stream(t)
	for _, q := range []struct{ group, bits int }{{32, 4}, {64, 4}, {64, 8}, {128, 8}} {
		m, k, n := 3, 256, 40
		x, w := randn(r, m*k, 1), randn(r, n*k, 0.05)
		wq, sc, bi, err := s.Quantize(arr(t, w, n, k), q.group, q.bits)
		require.NoError(t, err)
		assert.Equal(t, Uint32, wq.DType())
		assert.Equal(t, []int{n, k * q.bits / 32}, wq.Shape())
		assert.Equal(t, []int{n, k / q.group}, sc.Shape())
		got := values(t)(s.QuantizedMatmul(arr(t, x, m, k), wq, sc, bi, true, q.group, q.bits))
		// Bound: every weight is off by at most half a step of its group,
		// (max-min)/(2^bits-1)/2, plus float32 rounding.
		want := matmulT(x, w, m, k, n)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var bound float64
				for g := 0; g < k/q.group; g++ {
					lo, hi := math.Inf(1), math.Inf(-1)
					var sx float64
					for p := g * q.group; p < (g+1)*q.group; p++ {
						lo, hi = math.Min(lo, float64(w[j*k+p])), math.Max(hi, float64(w[j*k+p]))
						sx += math.Abs(float64(x[i*k+p]))
					}
					bound += sx * (hi - lo) / float64(int(1)<<q.bits-1) / 2
				}
				diff := math.Abs(want[i*n+j] - float64(got[i*n+j]))
				require.LessOrEqualf(t, diff, bound*1.05+1e-3, "group %d bits %d at [%d,%d]", q.group, q.bits, i, j)
			}
		}
		// Dequantize agrees with the quantised product.
		dq, err := s.Dequantize(wq, sc, bi, q.group, q.bits)
		require.NoError(t, err)
		dv, err := dq.Float32()
		require.NoError(t, err)
		assertClose(t, matmulT(x, dv, m, k, n), got, 1e-3)
		for _, a := range []*Array{wq, sc, bi, dq} {
			require.NoError(t, a.Close())
		}
	}
}

func TestErrorsCarryOn(t *testing.T) {
	s := stream(t)
	a := arr(t, make([]float32, 6), 2, 3)
	b := arr(t, make([]float32, 20), 4, 5)
	_, err := s.Matmul(a, b)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "mlxc: matmul:")
	assert.Contains(t, err.Error(), "(2,3)")
	assert.Contains(t, err.Error(), "(4,5)")
	_, err = s.Reshape(a, 4, 4)
	assert.ErrorContains(t, err, "reshape")
	_, _, _, err = s.Quantize(a, 64, 3)
	assert.Error(t, err)
	// The process is alive and MLX still works.
	got := values(t)(s.Add(a, arr(t, []float32{1, 2, 3}, 3)))
	assert.Equal(t, []float32{1, 2, 3, 1, 2, 3}, got)
}

func TestRandomNormal(t *testing.T) {
	s := stream(t)
	key, err := RandomKey(42)
	require.NoError(t, err)
	defer key.Close()
	a := values(t)(s.RandomNormal(key, Float32, 1, 2, 100, 100))
	b := values(t)(s.RandomNormal(key, Float32, 1, 2, 100, 100))
	assert.Equal(t, a, b, "same key, same draw")
	var sum, ss float64
	for _, v := range a {
		sum += float64(v)
		ss += float64(v) * float64(v)
	}
	mean := sum / float64(len(a))
	std := math.Sqrt(ss/float64(len(a)) - mean*mean)
	assert.InDelta(t, 1, mean, 0.1)
	assert.InDelta(t, 2, std, 0.1)
	_, err = s.RandomNormal(nil, Float32, 0, 1, 3)
	assert.Error(t, err)
}

func TestRandomUniform(t *testing.T) {
	s := stream(t)
	key, err := RandomKey(7)
	require.NoError(t, err)
	defer key.Close()
	a := values(t)(s.RandomUniform(key, Float32, -0.5, 1.5, 100, 100))
	b := values(t)(s.RandomUniform(key, Float32, -0.5, 1.5, 100, 100))
	assert.Equal(t, a, b, "same key, same draw")
	var sum float64
	for _, v := range a {
		require.True(t, v >= -0.5 && v < 1.5, "%v outside [-0.5, 1.5)", v)
		sum += float64(v)
	}
	assert.InDelta(t, 0.5, sum/float64(len(a)), 0.05)
	bf, err := s.RandomUniform(key, BFloat16, -1, 1, 8)
	require.NoError(t, err)
	defer bf.Close()
	assert.Equal(t, BFloat16, bf.DType())
	_, err = s.RandomUniform(nil, Float32, 0, 1, 3)
	assert.Error(t, err)
}

func TestNoLeak(t *testing.T) {
	s := stream(t)
	// The CPU stream releases finished buffers on its own thread: let it
	// drain before each reading.
	require.NoError(t, s.Synchronize())
	require.NoError(t, ClearCache())
	before, err := Memory()
	require.NoError(t, err)
	data := make([]float32, 64)
	for i := 0; i < 10000; i++ {
		a, err := FromFloat32(data, 8, 8)
		require.NoError(t, err)
		b, err := s.Matmul(a, a)
		require.NoError(t, err)
		c, err := s.Softmax(b, -1)
		require.NoError(t, err)
		require.NoError(t, Eval(c))
		for _, x := range []*Array{a, b, c} {
			require.NoError(t, x.Close())
		}
	}
	require.NoError(t, s.Synchronize())
	after, err := Memory()
	require.NoError(t, err)
	assert.Equal(t, before.Active, after.Active, "active memory after 10000 cycles")
	assert.GreaterOrEqual(t, after.Peak, after.Active)

	prev, err := SetCacheLimit(1 << 20)
	require.NoError(t, err)
	_, err = SetCacheLimit(prev)
	require.NoError(t, err)
	require.NoError(t, ResetPeakMemory())
}

func TestSafetensorsRoundTrip(t *testing.T) {
	r := newRNG(t)
	s := stream(t)
	path := filepath.Join(t.TempDir(), "model.safetensors")
	w := randn(r, 64*32, 0.1)
	wa := arr(t, w, 64, 32)
	wq, sc, bi, err := s.Quantize(wa, 32, 4)
	require.NoError(t, err)
	defer wq.Close()
	defer sc.Close()
	defer bi.Close()
	bf, err := s.AsType(wa, BFloat16)
	require.NoError(t, err)
	defer bf.Close()
	norm := arr(t, randn(r, 32, 1), 32)
	tensors := map[string]*Array{
		"model.norm.weight":                      norm,
		"model.layers.0.mlp.up_proj.weight":      wq,
		"model.layers.0.mlp.up_proj.scales":      sc,
		"model.layers.0.mlp.up_proj.biases":      bi,
		"model.layers.0.self_attn.q_proj.weight": bf,
	}
	meta := map[string]string{"format": "mlx", "made_by": "mlxc test"}
	require.NoError(t, SaveSafetensors(path, tensors, meta))

	got, gotMeta, err := LoadSafetensors(path, s)
	require.NoError(t, err)
	defer func() {
		for _, a := range got {
			a.Close()
		}
	}()
	assert.Equal(t, meta, gotMeta)
	require.Len(t, got, len(tensors))
	for name, want := range tensors {
		g := got[name]
		require.NotNil(t, g, name)
		assert.Equal(t, want.DType(), g.DType(), name)
		assert.Equal(t, want.Shape(), g.Shape(), name)
		if want.DType() == Uint32 {
			wv, err := want.Uint32()
			require.NoError(t, err)
			gv, err := g.Uint32()
			require.NoError(t, err)
			assert.Equal(t, wv, gv, name)
			continue
		}
		wv, err := want.Float32()
		require.NoError(t, err)
		gv, err := g.Float32()
		require.NoError(t, err)
		assert.Equal(t, wv, gv, name)
	}
	_, _, err = LoadSafetensors(filepath.Join(t.TempDir(), "missing.safetensors"), s)
	assert.ErrorContains(t, err, "missing.safetensors")
}
