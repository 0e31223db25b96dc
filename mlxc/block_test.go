//go:build mlx && cgo

package mlxc

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// testBlock is a layer's weights kept both in Go (for the reference) and
// as MLX arrays.
type testBlock struct {
	cfg                               BlockConfig
	hidden, inter                     int
	attnNorm, mlpNorm                 []float32
	wq, wk, wv, wo, wgate, wup, wdown []float32
	w                                 BlockWeights
	arrays                            []*Array
}

func newTestBlock(t testing.TB, r *rand.Rand, hidden, inter, heads, kvHeads, headDim int) *testBlock {
	b := &testBlock{
		cfg:    BlockConfig{Heads: heads, KVHeads: kvHeads, HeadDim: headDim, Eps: 1e-5, RopeBase: 10000},
		hidden: hidden, inter: inter,
	}
	q, kv := heads*headDim, kvHeads*headDim
	sc := func(in int) float64 { return 1 / math.Sqrt(float64(in)) }
	b.attnNorm, b.mlpNorm = randn(r, hidden, 0.2), randn(r, hidden, 0.2)
	for i := range b.attnNorm {
		b.attnNorm[i]++
		b.mlpNorm[i]++
	}
	b.wq, b.wk, b.wv = randn(r, q*hidden, sc(hidden)), randn(r, kv*hidden, sc(hidden)), randn(r, kv*hidden, sc(hidden))
	b.wo = randn(r, hidden*q, sc(q))
	b.wgate, b.wup = randn(r, inter*hidden, sc(hidden)), randn(r, inter*hidden, sc(hidden))
	b.wdown = randn(r, hidden*inter, sc(inter))
	mk := func(data []float32, shape ...int) *Array {
		a, err := FromFloat32(data, shape...)
		require.NoError(t, err)
		b.arrays = append(b.arrays, a)
		return a
	}
	b.w = BlockWeights{
		AttnNorm: mk(b.attnNorm, hidden), MLPNorm: mk(b.mlpNorm, hidden),
		Q: Linear{W: mk(b.wq, q, hidden)}, K: Linear{W: mk(b.wk, kv, hidden)}, V: Linear{W: mk(b.wv, kv, hidden)},
		O:    Linear{W: mk(b.wo, hidden, q)},
		Gate: Linear{W: mk(b.wgate, inter, hidden)}, Up: Linear{W: mk(b.wup, inter, hidden)},
		Down: Linear{W: mk(b.wdown, hidden, inter)},
	}
	t.Cleanup(b.close)
	return b
}

func (b *testBlock) close() {
	for _, a := range b.arrays {
		a.Close()
	}
}

// quantized returns the block's weights affine-quantised, and the same
// weights dequantised to dense float32 arrays.
func (b *testBlock) quantized(t testing.TB, s *Stream, group, bits int) (q, dense BlockWeights) {
	q, dense = b.w, b.w
	for _, p := range []struct{ q, d *Linear }{{&q.Q, &dense.Q}, {&q.K, &dense.K}, {&q.V, &dense.V}, {&q.O, &dense.O}, {&q.Gate, &dense.Gate}, {&q.Up, &dense.Up}, {&q.Down, &dense.Down}} {
		wq, sc, bi, err := s.Quantize(p.q.W, group, bits)
		require.NoError(t, err)
		dq, err := s.Dequantize(wq, sc, bi, group, bits)
		require.NoError(t, err)
		b.arrays = append(b.arrays, wq, sc, bi, dq)
		*p.q = Linear{W: wq, Scales: sc, Biases: bi, GroupSize: group, Bits: bits}
		*p.d = Linear{W: dq}
	}
	return q, dense
}

// reference runs the layer in float64 over x [B, L, hidden] at positions
// 0..L-1 with a causal mask.
func (b *testBlock) reference(x []float32, B, L int) []float64 {
	H, nh, nkv, hd := b.hidden, b.cfg.Heads, b.cfg.KVHeads, b.cfg.HeadDim
	q, kv := nh*hd, nkv*hd
	toF := func(v []float64) []float32 {
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(x)
		}
		return out
	}
	out := make([]float64, B*L*H)
	inv := invFreq(hd, float64(b.cfg.RopeBase))
	for bb := 0; bb < B; bb++ {
		xs := x[bb*L*H : (bb+1)*L*H]
		h := toF(refRMSNorm(xs, b.attnNorm, L, H, float64(b.cfg.Eps)))
		qq, kk, vv := matmulT(h, b.wq, L, H, q), matmulT(h, b.wk, L, H, kv), matmulT(h, b.wv, L, H, kv)
		// [L, n, hd] -> [n, L, hd]
		split := func(m []float64, n int) []float32 {
			o := make([]float32, len(m))
			for l := 0; l < L; l++ {
				for i := 0; i < n; i++ {
					for d := 0; d < hd; d++ {
						o[(i*L+l)*hd+d] = float32(m[l*n*hd+i*hd+d])
					}
				}
			}
			return o
		}
		qr := toF(refRoPE(split(qq, nh), L, hd, 0, inv))
		kr := toF(refRoPE(split(kk, nkv), L, hd, 0, inv))
		att := refSDPA(qr, kr, split(vv, nkv), 1, nh, nkv, L, L, hd, true)
		flat := make([]float32, L*q)
		for i := 0; i < nh; i++ {
			for l := 0; l < L; l++ {
				for d := 0; d < hd; d++ {
					flat[l*q+i*hd+d] = float32(att[(i*L+l)*hd+d])
				}
			}
		}
		o := matmulT(flat, b.wo, L, q, H)
		x1 := make([]float64, L*H)
		for i := range x1 {
			x1[i] = float64(xs[i]) + o[i]
		}
		h2 := toF(refRMSNorm(toF(x1), b.mlpNorm, L, H, float64(b.cfg.Eps)))
		g, u := matmulT(h2, b.wgate, L, H, b.inter), matmulT(h2, b.wup, L, H, b.inter)
		m := make([]float32, len(g))
		for i := range g {
			m[i] = float32(g[i] / (1 + math.Exp(-g[i])) * u[i])
		}
		d := matmulT(m, b.wdown, L, b.inter, H)
		for i := range x1 {
			out[bb*L*H+i] = x1[i] + d[i]
		}
	}
	return out
}

func TestBlockNumerics(t *testing.T) {
	r := newRNG(t)
	s := stream(t)
	B, L := 2, 5
	b := newTestBlock(t, r, 64, 160, 4, 2, 16)
	x := randn(r, B*L*b.hidden, 1)
	xa := arr(t, x, B, L, b.hidden)
	want := b.reference(x, B, L)

	full, err := s.Block(b.cfg, &b.w, xa, nil, nil, 0, true)
	require.NoError(t, err)
	defer full.Close()
	got, err := full.Out.Float32()
	require.NoError(t, err)
	assertClose(t, want, got, 2e-4)
	require.Equal(t, []int{B, 2, L, 16}, full.K.Shape())

	// The same layer composed from single operations agrees.
	ops, err := blockOps(s, b.cfg, &b.w, xa, nil, nil, 0)
	require.NoError(t, err)
	defer ops.Close()
	gotOps, err := ops.Out.Float32()
	require.NoError(t, err)
	assertClose(t, want, gotOps, 2e-4)

	// Prefill L-1 tokens, then decode the last against the cache: same
	// last row as the full prefill.
	head, err := s.Slice(xa, []int{0, 0, 0}, []int{B, L - 1, b.hidden})
	require.NoError(t, err)
	defer head.Close()
	tail, err := s.Slice(xa, []int{0, L - 1, 0}, []int{B, L, b.hidden})
	require.NoError(t, err)
	defer tail.Close()
	pre, err := s.Block(b.cfg, &b.w, head, nil, nil, 0, true)
	require.NoError(t, err)
	defer pre.Close()
	dec, err := s.Block(b.cfg, &b.w, tail, pre.K, pre.V, L-1, true)
	require.NoError(t, err)
	defer dec.Close()
	require.Equal(t, []int{B, 2, L, 16}, dec.K.Shape())
	last, err := dec.Out.Float32()
	require.NoError(t, err)
	wantLast := make([]float64, 0, B*b.hidden)
	for bb := 0; bb < B; bb++ {
		wantLast = append(wantLast, want[(bb*L+L-1)*b.hidden:(bb*L+L)*b.hidden]...)
	}
	assertClose(t, wantLast, last, 2e-4)

	// Quantised weights: the block equals the block on the dequantised
	// weights.
	qw, dw := b.quantized(t, s, 32, 8)
	qo, err := s.Block(b.cfg, &qw, xa, nil, nil, 0, true)
	require.NoError(t, err)
	defer qo.Close()
	do, err := s.Block(b.cfg, &dw, xa, nil, nil, 0, true)
	require.NoError(t, err)
	defer do.Close()
	qv, err := qo.Out.Float32()
	require.NoError(t, err)
	dv, err := do.Out.Float32()
	require.NoError(t, err)
	dv64 := make([]float64, len(dv))
	for i, v := range dv {
		dv64[i] = float64(v)
	}
	assertClose(t, dv64, qv, 1e-3)

	// A wrong weight shape is an error, not a crash.
	bad := b.w
	bad.Q = b.w.Down // [inter, hidden] where [q, hidden] belongs
	_, err = s.Block(b.cfg, &bad, xa, nil, nil, 0, true)
	require.Error(t, err)
}

// blockOps is Stream.Block composed from one cgo crossing per operation,
// to measure what the fused helper saves.
func blockOps(s *Stream, cfg BlockConfig, w *BlockWeights, x, kc, vc *Array, offset int) (BlockOutput, error) {
	var tmp []*Array
	defer func() {
		for _, a := range tmp {
			a.Close()
		}
	}()
	keep := func(a *Array, err error) (*Array, error) {
		if err == nil {
			tmp = append(tmp, a)
		}
		return a, err
	}
	sh := x.Shape()
	B, L := sh[0], sh[1]
	lin := func(in *Array, l Linear) (*Array, error) {
		if l.Scales != nil {
			return keep(s.QuantizedMatmul(in, l.W, l.Scales, l.Biases, true, l.GroupSize, l.Bits))
		}
		wt, err := keep(s.Transpose(l.W))
		if err != nil {
			return nil, err
		}
		return keep(s.Matmul(in, wt))
	}
	heads := func(in *Array, n int) (*Array, error) {
		r, err := keep(s.Reshape(in, B, L, n, cfg.HeadDim))
		if err != nil {
			return nil, err
		}
		return keep(s.Transpose(r, 0, 2, 1, 3))
	}
	h, err := keep(s.RMSNorm(x, w.AttnNorm, cfg.Eps))
	if err != nil {
		return BlockOutput{}, err
	}
	q, err := lin(h, w.Q)
	if err != nil {
		return BlockOutput{}, err
	}
	k, err := lin(h, w.K)
	if err != nil {
		return BlockOutput{}, err
	}
	v, err := lin(h, w.V)
	if err != nil {
		return BlockOutput{}, err
	}
	if q, err = heads(q, cfg.Heads); err != nil {
		return BlockOutput{}, err
	}
	if k, err = heads(k, cfg.KVHeads); err != nil {
		return BlockOutput{}, err
	}
	if v, err = heads(v, cfg.KVHeads); err != nil {
		return BlockOutput{}, err
	}
	rope := RoPE{Dims: cfg.HeadDim, Base: cfg.RopeBase, Offset: offset, Freqs: cfg.RopeFreqs}
	if q, err = keep(s.RoPE(q, rope)); err != nil {
		return BlockOutput{}, err
	}
	if k, err = s.RoPE(k, rope); err != nil {
		return BlockOutput{}, err
	}
	if kc != nil {
		tmp = append(tmp, k)
		if k, err = s.Concatenate(2, kc, k); err != nil {
			return BlockOutput{}, err
		}
		if v, err = s.Concatenate(2, vc, v); err != nil {
			return BlockOutput{}, err
		}
	} else {
		// v is in tmp; hand the caller its own reference.
		if v, err = s.Reshape(v, B, cfg.KVHeads, L, cfg.HeadDim); err != nil {
			return BlockOutput{}, err
		}
	}
	att, err := keep(s.SDPA(q, k, v, float32(1/math.Sqrt(float64(cfg.HeadDim))), Mask{Causal: L > 1}))
	if err != nil {
		return BlockOutput{}, err
	}
	if att, err = keep(s.Transpose(att, 0, 2, 1, 3)); err != nil {
		return BlockOutput{}, err
	}
	if att, err = keep(s.Reshape(att, B, L, cfg.Heads*cfg.HeadDim)); err != nil {
		return BlockOutput{}, err
	}
	o, err := lin(att, w.O)
	if err != nil {
		return BlockOutput{}, err
	}
	x1, err := keep(s.Add(x, o))
	if err != nil {
		return BlockOutput{}, err
	}
	h2, err := keep(s.RMSNorm(x1, w.MLPNorm, cfg.Eps))
	if err != nil {
		return BlockOutput{}, err
	}
	g, err := lin(h2, w.Gate)
	if err != nil {
		return BlockOutput{}, err
	}
	u, err := lin(h2, w.Up)
	if err != nil {
		return BlockOutput{}, err
	}
	// silu(g) = g·sigmoid(g) = g·softmax([0, g])[1]; with no sigmoid in
	// the Go API, spell it with ops the engine has anyway.
	sg, err := keep(sigmoid(s, g, &tmp))
	if err != nil {
		return BlockOutput{}, err
	}
	act, err := keep(s.Multiply(g, sg))
	if err != nil {
		return BlockOutput{}, err
	}
	m, err := keep(s.Multiply(act, u))
	if err != nil {
		return BlockOutput{}, err
	}
	d, err := lin(m, w.Down)
	if err != nil {
		return BlockOutput{}, err
	}
	out, err := s.Add(x1, d)
	if err != nil {
		return BlockOutput{}, err
	}
	if err := Eval(out, k, v); err != nil {
		return BlockOutput{}, err
	}
	return BlockOutput{Out: out, K: k, V: v}, nil
}

func sigmoid(s *Stream, g *Array, tmp *[]*Array) (*Array, error) {
	sh := g.Shape()
	zero, err := FromFloat32(make([]float32, 1), 1)
	if err != nil {
		return nil, err
	}
	*tmp = append(*tmp, zero)
	ones := append(append([]int{}, sh...), 1)
	gz, err := s.Reshape(g, ones...)
	if err != nil {
		return nil, err
	}
	*tmp = append(*tmp, gz)
	zz, err := s.Multiply(gz, zero) // zeros of gz's shape
	if err != nil {
		return nil, err
	}
	*tmp = append(*tmp, zz)
	pair, err := s.Concatenate(-1, zz, gz)
	if err != nil {
		return nil, err
	}
	*tmp = append(*tmp, pair)
	sm, err := s.Softmax(pair, -1)
	if err != nil {
		return nil, err
	}
	*tmp = append(*tmp, sm)
	start := make([]int, len(sh)+1)
	stop := append(append([]int{}, sh...), 2)
	start[len(sh)] = 1
	sl, err := s.Slice(sm, start, stop)
	if err != nil {
		return nil, err
	}
	*tmp = append(*tmp, sl)
	return s.Reshape(sl, sh...)
}

// Benchmarks: the "small" preset's layer (hidden 384, 6 heads, 2 KV heads,
// head_dim 64, intermediate 1152), decoding one token per sequence against
// a 128-token cache.
func BenchmarkBlock(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	s, err := CPUStream()
	require.NoError(b, err)
	defer s.Close()
	blk := newTestBlock(b, r, 384, 1152, 6, 2, 64)
	for _, batch := range []int{1, 8} {
		x, err := FromFloat32(randn(r, batch*384, 1), batch, 1, 384)
		require.NoError(b, err)
		kc, err := FromFloat32(randn(r, batch*2*128*64, 1), batch, 2, 128, 64)
		require.NoError(b, err)
		vc, err := FromFloat32(randn(r, batch*2*128*64, 1), batch, 2, 128, 64)
		require.NoError(b, err)
		require.NoError(b, Eval(x, kc, vc))
		b.Run(fmt.Sprintf("fused/batch=%d", batch), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				o, err := s.Block(blk.cfg, &blk.w, x, kc, vc, 128, true)
				if err != nil {
					b.Fatal(err)
				}
				o.Close()
			}
		})
		b.Run(fmt.Sprintf("perop/batch=%d", batch), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				o, err := blockOps(s, blk.cfg, &blk.w, x, kc, vc, 128)
				if err != nil {
					b.Fatal(err)
				}
				o.Close()
			}
		})
		// Graph building only (no eval): the crossing cost of one fused step.
		b.Run(fmt.Sprintf("fused-build-only/batch=%d", batch), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				o, err := s.Block(blk.cfg, &blk.w, x, kc, vc, 128, false)
				if err != nil {
					b.Fatal(err)
				}
				o.Close()
			}
		})
		x.Close()
		kc.Close()
		vc.Close()
	}
}

// BenchmarkCall is the cost of one wrapped operation that builds a graph
// node without computing it: the per-call cgo overhead.
func BenchmarkCall(b *testing.B) {
	s, err := CPUStream()
	require.NoError(b, err)
	defer s.Close()
	a, err := FromFloat32([]float32{1, 2, 3, 4}, 4)
	require.NoError(b, err)
	defer a.Close()
	b.Run("add-lazy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, err := s.Add(a, a)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("size", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if a.Size() != 4 {
				b.Fatal("size")
			}
		}
	})
	b.Run("add-eval-read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, err := s.Add(a, a)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Float32(); err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
}

// TestBlockPadded decodes rows of different cached lengths in one padded
// call and requires each row to match Block on that row alone, output and
// extended cache.
func TestBlockPadded(t *testing.T) {
	r := newRNG(t)
	s := stream(t)
	b := newTestBlock(t, r, 64, 160, 4, 2, 16)
	lens := []int{3, 7, 1, 7}
	B := len(lens)
	var kc, vc []*Array
	var want []BlockOutput
	xs := randn(r, B*b.hidden, 1)
	for i, n := range lens {
		pre, err := s.Block(b.cfg, &b.w, arr(t, randn(r, n*b.hidden, 1), 1, n, b.hidden), nil, nil, 0, true)
		require.NoError(t, err)
		defer pre.Close()
		kc, vc = append(kc, pre.K), append(vc, pre.V)
		alone, err := s.Block(b.cfg, &b.w, arr(t, xs[i*b.hidden:(i+1)*b.hidden], 1, 1, b.hidden), pre.K, pre.V, n, true)
		require.NoError(t, err)
		defer alone.Close()
		want = append(want, alone)
	}
	got, err := s.BlockPadded(b.cfg, &b.w, arr(t, xs, B, 1, b.hidden), kc, vc, lens)
	require.NoError(t, err)
	defer got.Close()
	out, err := got.Out.Float32()
	require.NoError(t, err)
	for i := range lens {
		w, err := want[i].Out.Float32()
		require.NoError(t, err)
		assertClose(t, f64(w), out[i*b.hidden:(i+1)*b.hidden], 1e-5)
		require.Equal(t, want[i].K.Shape(), got.K[i].Shape(), "row %d", i)
		for _, p := range [][2]*Array{{want[i].K, got.K[i]}, {want[i].V, got.V[i]}} {
			wv, err := p[0].Float32()
			require.NoError(t, err)
			gv, err := p[1].Float32()
			require.NoError(t, err)
			assertClose(t, f64(wv), gv, 1e-6)
		}
	}
	_, err = s.BlockPadded(b.cfg, &b.w, arr(t, xs, B, 1, b.hidden), kc[:2], vc, lens)
	require.ErrorContains(t, err, "4 lengths, 2 K and 4 V caches")
	_, err = s.BlockPadded(b.cfg, &b.w, arr(t, xs, B, 1, b.hidden), kc, vc, []int{3, 7, 0, 7})
	require.ErrorContains(t, err, "every row needs a cache")
}

// TestBlockSlots decodes rows of different cached lengths against one slot
// cache whose unused rows and columns hold random garbage, and requires
// each row to match Block on that row alone: output, and the row's first
// n+1 columns of the updated cache.
func TestBlockSlots(t *testing.T) {
	r := newRNG(t)
	s := stream(t)
	b := newTestBlock(t, r, 64, 160, 4, 2, 16)
	lens := []int{3, 7, 1, 5}
	const R, C, kv, hd = 6, 12, 2, 16
	B := len(lens)
	xs := randn(r, B*b.hidden, 1)
	ks := arr(t, randn(r, R*kv*C*hd, 1), R, kv, C, hd)
	vs := arr(t, randn(r, R*kv*C*hd, 1), R, kv, C, hd)
	var want []BlockOutput
	for i, n := range lens {
		pre, err := s.Block(b.cfg, &b.w, arr(t, randn(r, n*b.hidden, 1), 1, n, b.hidden), nil, nil, 0, true)
		require.NoError(t, err)
		defer pre.Close()
		start, stop := []int{i, 0, 0, 0}, []int{i + 1, kv, n, hd}
		k, err := s.SliceUpdate(ks, pre.K, start, stop)
		require.NoError(t, err)
		v, err := s.SliceUpdate(vs, pre.V, start, stop)
		require.NoError(t, err)
		ks, vs = k, v
		t.Cleanup(func() { k.Close(); v.Close() })
		alone, err := s.Block(b.cfg, &b.w, arr(t, xs[i*b.hidden:(i+1)*b.hidden], 1, 1, b.hidden), pre.K, pre.V, n, true)
		require.NoError(t, err)
		defer alone.Close()
		want = append(want, alone)
	}
	st, err := NewSlotStep(lens, 8)
	require.NoError(t, err)
	defer st.Close()
	got, err := s.BlockSlots(b.cfg, &b.w, arr(t, xs, B, 1, b.hidden), ks, vs, st)
	require.NoError(t, err)
	defer got.Close()
	require.Equal(t, []int{R, kv, C, hd}, got.K.Shape())
	out, err := got.Out.Float32()
	require.NoError(t, err)
	for i, n := range lens {
		w, err := want[i].Out.Float32()
		require.NoError(t, err)
		assertClose(t, f64(w), out[i*b.hidden:(i+1)*b.hidden], 1e-5)
		for _, p := range [][2]*Array{{want[i].K, got.K}, {want[i].V, got.V}} {
			wv, err := p[0].Float32()
			require.NoError(t, err)
			row, err := s.Slice(p[1], []int{i, 0, 0, 0}, []int{i + 1, kv, n + 1, hd})
			require.NoError(t, err)
			gv, err := row.Float32()
			row.Close()
			require.NoError(t, err)
			assertClose(t, f64(wv), gv, 1e-6)
		}
	}
	_, err = NewSlotStep([]int{3, 8}, 8)
	require.ErrorContains(t, err, "row 1 has 8 tokens, width 8")
	wide, err := NewSlotStep(lens, C+1)
	require.NoError(t, err)
	defer wide.Close()
	_, err = s.BlockSlots(b.cfg, &b.w, arr(t, xs, B, 1, b.hidden), ks, vs, wide)
	require.ErrorContains(t, err, "do not hold 4 rows of width 13")
	_, err = s.BlockSlots(b.cfg, &b.w, arr(t, xs[:2*b.hidden], 2, 1, b.hidden), ks, vs, st)
	require.ErrorContains(t, err, "for 4 rows")
}

// TestPadEnd pads with zeros after the end of each axis.
func TestPadEnd(t *testing.T) {
	s := stream(t)
	p, err := s.PadEnd(arr(t, []float32{1, 2, 3, 4}, 2, 2), 1, 2)
	require.NoError(t, err)
	defer p.Close()
	require.Equal(t, []int{3, 4}, p.Shape())
	v, err := p.Float32()
	require.NoError(t, err)
	require.Equal(t, []float32{1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0}, v)
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// TestSlotFunc checks the whole-step function against the same step built
// from BlockSlots and single ops, compiled and not, with RoPE from its
// base and from explicit periods, dense and quantised embedding and head,
// over a slot cache whose unused rows and columns hold garbage; a second
// call of the compiled function replays its tape and gives the same.
func TestSlotFunc(t *testing.T) {
	// MLX's compile cache is per OS thread: traces are counted on one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := newRNG(t)
	s := stream(t)
	const hidden, vocab, R, C, kv, hd = 64, 96, 6, 12, 2, 16
	lens := []int{3, 7, 1, 5}
	B := len(lens)
	blocks := []*testBlock{newTestBlock(t, r, hidden, 160, 4, kv, hd), newTestBlock(t, r, hidden, 160, 4, kv, hd)}
	periods := make([]float32, hd/2)
	for i := range periods {
		periods[i] = float32(math.Pow(10000, float64(2*i)/hd)) * 1.5
	}
	freqs := arr(t, periods, hd/2)
	embed := arr(t, randn(r, vocab*hidden, 1), vocab, hidden)
	headW := arr(t, randn(r, vocab*hidden, 0.2), vocab, hidden)
	norm := arr(t, randn(r, hidden, 0.1), hidden)
	var ks, vs []*Array
	for range blocks {
		ks = append(ks, arr(t, randn(r, R*kv*C*hd, 1), R, kv, C, hd))
		vs = append(vs, arr(t, randn(r, R*kv*C*hd, 1), R, kv, C, hd))
	}
	ids := []uint32{5, 0, 95, 17}
	idx, err := FromUint32(ids, B)
	require.NoError(t, err)
	defer idx.Close()
	keep := func(a *Array, err error) *Array {
		t.Helper()
		require.NoError(t, err)
		t.Cleanup(func() { a.Close() })
		return a
	}
	wq, sc, bi, err := s.Quantize(embed, 32, 4)
	require.NoError(t, err)
	hq, hs, hb, err := s.Quantize(headW, 32, 4)
	require.NoError(t, err)
	for _, a := range []*Array{wq, sc, bi, hq, hs, hb} {
		keep(a, nil)
	}
	qEmbed := Linear{W: wq, Scales: sc, Biases: bi, GroupSize: 32, Bits: 4}
	qHead := Linear{W: hq, Scales: hs, Biases: hb, GroupSize: 32, Bits: 4}
	for _, tc := range []struct {
		name  string
		freqs *Array
		quant bool
	}{{"base", nil, false}, {"periods", freqs, false}, {"quantised", freqs, true}} {
		cfg := blocks[0].cfg
		cfg.RopeFreqs = tc.freqs
		em, hd2 := Linear{W: embed}, Linear{W: keep(s.Transpose(headW, 1, 0)), Transposed: true}
		emDense, headDense := embed, hd2.W
		if tc.quant {
			em, hd2 = qEmbed, qHead
			emDense = keep(s.Dequantize(wq, sc, bi, 32, 4))
			headDense = keep(s.Transpose(keep(s.Dequantize(hq, hs, hb, 32, 4)), 1, 0))
		}
		// The step op by op.
		st, err := NewSlotStep(lens, C)
		require.NoError(t, err)
		x := keep(s.Reshape(keep(s.Take(emDense, idx, 0)), B, 1, hidden))
		var wantK, wantV []*Array
		for l, b := range blocks {
			o, err := s.BlockSlots(cfg, &b.w, x, ks[l], vs[l], st)
			require.NoError(t, err)
			t.Cleanup(func() { o.Close() })
			x, wantK, wantV = o.Out, append(wantK, o.K), append(wantV, o.V)
		}
		st.Close()
		n2 := keep(s.Reshape(keep(s.RMSNorm(x, norm, cfg.Eps)), B, hidden))
		wantLogits := keep(s.Matmul(n2, headDense))
		wantToks := keep(s.Argmax(wantLogits, -1, false))
		wl, err := wantLogits.Float32()
		require.NoError(t, err)
		wt, err := wantToks.Uint32()
		require.NoError(t, err)
		var layers []BlockWeights
		for _, b := range blocks {
			layers = append(layers, b.w)
		}
		for _, compiled := range []bool{false, true} {
			f, err := s.NewSlotFunc(cfg, layers, em, hd2, norm, compiled)
			require.NoError(t, err)
			for call := 0; call < 2; call++ {
				o, err := f.Apply(idx, lens, ks, vs)
				require.NoError(t, err)
				gl, err := o.Logits.Float32()
				require.NoError(t, err)
				assertClose(t, f64(wl), gl, 1e-5)
				gt, err := o.Toks.Uint32()
				require.NoError(t, err)
				require.Equal(t, wt, gt, "%s compiled %v call %d", tc.name, compiled, call)
				for l := range blocks {
					for _, p := range [][2]*Array{{wantK[l], o.K[l]}, {wantV[l], o.V[l]}} {
						require.Equal(t, []int{R, kv, C, hd}, p[1].Shape())
						w, err := p[0].Float32()
						require.NoError(t, err)
						g, err := p[1].Float32()
						require.NoError(t, err)
						assertClose(t, f64(w), g, 1e-5)
					}
				}
				require.NoError(t, o.Close())
			}
			want := 2
			if compiled {
				want = 1
			}
			require.Equal(t, want, f.Traces(), "%s compiled %v", tc.name, compiled)
			require.NoError(t, f.Forget())
			require.NoError(t, f.Close())
			require.NoError(t, f.Close())
			_, err = f.Apply(idx, lens, ks, vs)
			require.ErrorIs(t, err, ErrClosed)
		}
	}
	f, err := s.NewSlotFunc(blocks[0].cfg, []BlockWeights{blocks[0].w}, Linear{W: embed}, Linear{W: headW}, norm, true)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Apply(idx, lens, ks, vs)
	require.ErrorContains(t, err, "1 layers given 2 K and 2 V caches")
	_, err = f.Apply(idx, []int{3, 7, 1, C}, ks[:1], vs[:1])
	require.ErrorContains(t, err, "row 3 has 12 tokens, cache width 12")
	_, err = f.Apply(idx, lens[:2], ks[:1], vs[:1])
	require.ErrorContains(t, err, "ids [4], 2 lengths")
}
