//go:build mlx && cgo

package realengine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/batchkit/batchkit/mlxc"
)

// MLX is the engine on MLX (package mlxc): one mlxc cgo crossing per layer
// and group of rows, KV caches held as MLX arrays, and the whole step's
// graph evaluated at once. Prefill rows with the same cached length and
// new-token count share a Block call on per-sequence caches; once
// prefilled, a sequence's cache moves into a row of the slot cache
// (slotCache) and all decoding rows, whatever their lengths, share one
// BlockSlots call per layer, or by default one call of the whole step
// compiled (slotFunc). The older modes (batchGroups, batchPadded) keep
// decoding caches per sequence, for comparison.
//
// Weights and activations are in one dtype (float32, float16 or bfloat16);
// matrices may be MLX affine-quantised, in which case they stay packed on
// the device and every projection is a quantized_matmul.
type MLX struct {
	cfg   Config
	opt   Options
	dtype mlxc.DType
	quant *Quantization // of the matrices, nil when dense
	// quantDense quantises float matrices on load; nil keeps them dense
	// (a quantised model directory's unquantised layers).
	quantDense *Quantization
	s          *mlxc.Stream
	// thread is the one OS thread that builds and evaluates the engine's
	// graphs (see mlxThread); every exported method that touches MLX runs
	// on it.
	thread *mlxThread
	bcfg   mlxc.BlockConfig
	freqs  *mlxc.Array
	embed  mlxc.Linear // [vocab, hidden]
	head   mlxc.Linear // [vocab, hidden]; the embedding when tied
	headT  *mlxc.Array // [hidden, vocab] view of a dense head
	norm   *mlxc.Array
	layers []mlxc.BlockWeights
	// tensors are the device arrays under their Hugging Face names.
	tensors  map[string]mlxc.Linear
	owned    []*mlxc.Array
	seqs     map[SeqID]*mlxSeq
	order    []*mlxSeq
	maxCtx   int
	closed   bool
	batching batching
	// slots holds the KV caches of decoding sequences in slots mode.
	slots slotCache
	// slotFn is the whole slot decode step as one compiled MLX function
	// (slotFunc); nil builds each step's graph op by op (slotGroup).
	slotFn *mlxc.SlotFunc
	// slotTraces is slotFn.Traces() when its tapes were last dropped;
	// maxTapes bounds the tracings since (slotFunc).
	slotTraces, maxTapes int
	spec                 *mlxSpec
	// pipeline builds the next step's graph while MLX computes the current
	// one (mlxSpec). Only on a GPU: MLX's CPU backend throttles async_eval
	// to ten tasks in flight (transforms.cpp, MAX_ACTIVE_TASKS), so a
	// step's ~150 nodes make AsyncEval as blocking as Eval there, and the
	// split costs ~90 µs more than one Eval (measured, small, batch 1).
	pipeline bool
	specHits int // steps that ran a graph built during the previous one
	// padPrefill builds prefill graphs at a few lengths only
	// (prefillWidth), on a GPU, where every new shape costs kernel and
	// plan building.
	padPrefill bool
	// evalTime sums the time spent inside mlxc.Eval and buildTime that
	// spent building graphs in Step, so benchmarks can tell MLX's
	// computing and graph building from the rest.
	evalTime, buildTime time.Duration
}

// batching selects how decoding rows of different cached lengths run.
type batching int

const (
	batchAuto   batching = iota // the default: slots
	batchGroups                 // per-sequence caches, one Block call per distinct length
	batchPadded                 // per-sequence caches, always one padded call
	batchSlots                  // one slot cache per layer (slotCache)
)

// slotsOn says whether sequences move into the slot cache once prefilled.
// It is the default because it was the fastest wherever measured
// (BenchmarkMLXMixedDecode, small preset, float32, MLX CPU backend on 2
// shared and busy cores, tokens/s over 8 runs, median and range): mixed
// lengths batch 8 groups 336 (232-406), padded 453 (393-582), slots 594
// (378-797); batch 32 groups 314 (299-342), padded 597 (400-659), slots
// 1614 (967-1694). Equal lengths (64-token prompts, 2 runs): batch 1 the
// same as before (~385-390), batch 8 ~1310 against ~890-1045 before,
// batch 32 ~1640-1775 against ~1200-1260. Per layer and step it builds 27
// MLX operations whatever the batch (Block's 23 with two reshapes, two
// scatters and two views in place of its two concatenations), where padded
// builds 25 plus up to 4 per row (pads, slices) and copies the whole cache
// twice, and groups 23 per distinct length plus 2 per row when rows share
// one. Per step, the slot batch's head is one argmax and one token read
// for all rows (Go allocations per step: 161 at batch 8, 191 at batch 32,
// against 465 and 1553 padded).
func (e *MLX) slotsOn() bool { return e.batching == batchSlots || e.batching == batchAuto }

// mlxThread runs functions on one locked OS thread. MLX (0.30 and later,
// Metal and CUDA alike) keeps a GPU stream's command encoder per OS thread:
// a graph evaluated on another thread than the one that made the stream
// fails with "There is no Stream(gpu, 0) in current thread", and Go moves
// goroutines between threads. The CPU backend does not mind, which is why
// only a GPU run shows it.
type mlxThread struct {
	mu      sync.Mutex
	work    chan func()
	done    chan struct{}
	stopped bool
}

func newMLXThread() *mlxThread {
	t := &mlxThread{work: make(chan func()), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		// Unlocked on the way out so the thread (and MLX's thread-local
		// state on it) lives on in Go's pool rather than being killed.
		defer runtime.UnlockOSThread()
		for f := range t.work {
			f()
			t.done <- struct{}{}
		}
	}()
	return t
}

// do runs f on the thread and waits for it; once the thread has stopped
// (the engine is closed) f runs on the caller's, where it finds the engine
// closed.
func (t *mlxThread) do(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		f()
		return
	}
	t.work <- f
	<-t.done
}

func (t *mlxThread) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		close(t.work)
	}
}

type mlxSeq struct {
	id      SeqID
	prompt  []int32
	chunk   int
	pending bool
	err     error
	n       int
	lastTok int32
	tok     *mlxc.Array   // lastTok on the device, [1] uint32, while decoding
	k, v    []*mlxc.Array // per layer [1, kv_heads, n, head_dim]; nil before the first step and in a slot
	inSlot  bool          // its cache is row `row` of the engine's slot cache
	row     int
}

func (sq *mlxSeq) free() {
	closeKV(sq.k, sq.v)
	sq.tok.Close()
	sq.k, sq.v, sq.tok, sq.n = nil, nil, nil, 0
}

// closeKV closes per-layer key and value caches.
func closeKV(k, v []*mlxc.Array) {
	for l := range k {
		k[l].Close()
		v[l].Close()
	}
}

// openMLX loads a model directory, or draws a preset's random weights on
// the device itself: the llama-3.2 shapes are too large to draw in Go
// quickly (3b does not even fit Weights' int32-sized budget), and drawing
// them in the target dtype needs no float32 copy. A preset's weights follow
// RandomWeights' distribution from the same seed but are not the same
// numbers.
func openMLX(opt Options) (Engine, error) {
	if st, err := os.Stat(opt.Model); err == nil && st.IsDir() {
		m, err := readModel(opt.Model)
		if err != nil {
			return nil, err
		}
		return newMLX(m.cfg, fileSource(m), opt.Quantize != 0, opt)
	}
	c, err := Preset(opt.Model)
	if err != nil {
		return nil, fmt.Errorf("model %q is neither a model directory nor a preset: %w", opt.Model, err)
	}
	return newMLX(c, randomSource(opt.Seed), c.Quantization != nil || opt.Quantize != 0, opt)
}

// A tensorSource puts tensor i of the Llama layout on the device as it is
// stored: a float array in any dtype, or an MLX-quantised matrix (Scales
// set). The engine then converts it to its dtype.
type tensorSource func(s *mlxc.Stream, dt mlxc.DType, i int, sp matrixSpec) (mlxc.Linear, error)

func (sp matrixSpec) shape() []int {
	if sp.cols == 0 {
		return []int{sp.rows}
	}
	return []int{sp.rows, sp.cols}
}

func goSource(c Config, w *Weights) tensorSource {
	data := map[string][]float32{}
	for _, sp := range w.specs(c) {
		data[sp.name] = *sp.field
	}
	return func(_ *mlxc.Stream, _ mlxc.DType, _ int, sp matrixSpec) (mlxc.Linear, error) {
		a, err := mlxc.FromFloat32(data[sp.name], sp.shape()...)
		if err != nil {
			return mlxc.Linear{}, fmt.Errorf("tensor %s: %w", sp.name, err)
		}
		return mlxc.Linear{W: a}, nil
	}
}

// randomSource draws RandomWeights' distribution (matrices uniform with
// variance 1/fan_in, norm weights near 1) on the device in the engine's
// dtype, one key per tensor.
func randomSource(seed uint64) tensorSource {
	return func(s *mlxc.Stream, dt mlxc.DType, i int, sp matrixSpec) (mlxc.Linear, error) {
		key, err := randomKey(seed, i)
		if err != nil {
			return mlxc.Linear{}, fmt.Errorf("tensor %s: %w", sp.name, err)
		}
		defer key.Close()
		lo, hi := float32(0.9), float32(1.1)
		if sp.cols != 0 {
			a := float32(math.Sqrt(3 / float64(sp.cols)))
			lo, hi = -a, a
		}
		a, err := s.RandomUniform(key, dt, lo, hi, sp.shape()...)
		if err != nil {
			return mlxc.Linear{}, fmt.Errorf("tensor %s: %w", sp.name, err)
		}
		return mlxc.Linear{W: a}, nil
	}
}

// fileSource uploads a model directory's tensors as stored: a quantised
// matrix keeps the file's packed words, scales and biases.
func fileSource(m *modelFiles) tensorSource {
	return func(_ *mlxc.Stream, _ mlxc.DType, _ int, sp matrixSpec) (mlxc.Linear, error) {
		t, err := m.tensor(sp)
		if err != nil {
			return mlxc.Linear{}, err
		}
		fail := func(err error) (mlxc.Linear, error) {
			return mlxc.Linear{}, fmt.Errorf("%s: tensor %s: %w", t.file, sp.name, err)
		}
		if !t.quantised() {
			a, err := tensorArray(t.Float)
			if err != nil {
				return fail(err)
			}
			return mlxc.Linear{W: a}, nil
		}
		var l mlxc.Linear
		for _, p := range []struct {
			dst **mlxc.Array
			t   Tensor
		}{{&l.W, t.Packed}, {&l.Scales, t.Scales}, {&l.Biases, t.Biases}} {
			if *p.dst, err = tensorArray(p.t); err != nil {
				l.W.Close()
				l.Scales.Close()
				return fail(err)
			}
		}
		l.GroupSize, l.Bits = m.cfg.Quantization.GroupSize, m.cfg.Quantization.Bits
		return l, nil
	}
}

// tensorArray copies a safetensors tensor into MLX without changing its
// bits: half-precision words and packed uint32 words go in as stored.
func tensorArray(t Tensor) (*mlxc.Array, error) {
	switch t.DType {
	case U32:
		v, err := t.Uint32s()
		if err != nil {
			return nil, err
		}
		return mlxc.FromUint32(v, t.Shape...)
	case F16, BF16:
		if len(t.Data) != 2*t.NumElements() {
			return nil, fmt.Errorf("%d bytes for %d %s values", len(t.Data), t.NumElements(), t.DType)
		}
		bits := make([]uint16, t.NumElements())
		for i := range bits {
			bits[i] = binary.LittleEndian.Uint16(t.Data[2*i:])
		}
		if t.DType == F16 {
			return mlxc.FromFloat16Bits(bits, t.Shape...)
		}
		return mlxc.FromBFloat16Bits(bits, t.Shape...)
	}
	v, err := t.Float32s()
	if err != nil {
		return nil, err
	}
	return mlxc.FromFloat32(v, t.Shape...)
}

// NewMLX uploads w (float32) to MLX in opt.DType. When c carries an MLX
// quantisation block (or opt.Quantize asks for one), the matrices are
// quantised on the device with its group size and bits, so compute runs on
// quantised matrices as mlx-lm's does.
func NewMLX(c Config, w *Weights, opt Options) (*MLX, error) {
	if w == nil {
		return nil, errors.New("engine mlx: no weights")
	}
	if err := w.check(c); err != nil {
		return nil, err
	}
	return newMLX(c, goSource(c, w), c.Quantization != nil || opt.Quantize != 0, opt)
}

// newMLX builds the engine from src; quantizeDense says whether float
// matrices are quantised on load (with c's quantisation block, else
// opt.Quantize's bits and QuantizeGroupSize).
func newMLX(c Config, src tensorSource, quantizeDense bool, opt Options) (e *MLX, err error) {
	t := newMLXThread()
	t.do(func() { e, err = buildMLX(c, src, quantizeDense, opt, t) })
	if err != nil {
		t.stop()
	}
	return e, err
}

func buildMLX(c Config, src tensorSource, quantizeDense bool, opt Options, t *mlxThread) (*MLX, error) {
	if err := opt.check(); err != nil {
		return nil, fmt.Errorf("engine mlx: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if q := c.Quantization; q != nil && opt.Quantize != 0 && q.Bits != opt.Quantize {
		return nil, fmt.Errorf("engine mlx: model %s is quantised to %d bits; quantize %d would quantise it again", opt.Model, q.Bits, opt.Quantize)
	}
	cudaGraphsOff()
	var s *mlxc.Stream
	var err error
	switch opt.Device {
	case "":
		s, err = mlxc.DefaultStream()
	case "cpu":
		s, err = mlxc.CPUStream()
	case "gpu":
		gpu, gerr := mlxc.GPUAvailable()
		if gerr != nil {
			return nil, gerr
		}
		if !gpu {
			return nil, fmt.Errorf("engine mlx: device gpu requested but this MLX build has no GPU (use --device cpu)")
		}
		s, err = mlxc.GPUStream()
	default:
		return nil, fmt.Errorf("engine mlx: device %q not supported (cpu or gpu)", opt.Device)
	}
	if err != nil {
		return nil, err
	}
	if opt.DType == "" {
		// Half precision is what GPUs are fast at; MLX's CPU kernels are
		// fastest (and exact against the reference) in float32.
		opt.DType = "float32"
		if s.GPU() {
			opt.DType = "bfloat16"
		}
	}
	dt, err := mlxDType(opt.DType)
	if err != nil {
		s.Close()
		return nil, err
	}
	// maxTapes: a long run at up to 32 rows meets a few dozen batch sizes
	// and capacities.
	e := &MLX{cfg: c, opt: opt, dtype: dt, s: s, thread: t, seqs: map[SeqID]*mlxSeq{}, maxCtx: opt.MaxContext, pipeline: s.GPU(), maxTapes: 64}
	e.quant = c.Quantization
	if e.quant == nil && opt.Quantize != 0 {
		e.quant = &Quantization{GroupSize: QuantizeGroupSize, Bits: opt.Quantize}
	}
	if quantizeDense {
		e.quantDense = e.quant
	}
	if e.maxCtx <= 0 || e.maxCtx > c.MaxPositionEmbeddings {
		e.maxCtx = c.MaxPositionEmbeddings
	}
	if err := e.upload(c, src); err != nil {
		e.close()
		return nil, err
	}
	if opt.Compile == "on" || opt.Compile == "" && !s.GPU() {
		head := mlxc.Linear{W: e.headT, Transposed: true}
		if e.head.Scales != nil {
			head = e.head
		}
		if e.slotFn, err = s.NewSlotFunc(e.bcfg, e.layers, e.embed, head, e.norm, true); err != nil {
			e.close()
			return nil, fmt.Errorf("engine mlx: %w", err)
		}
	}
	if e.padPrefill = s.GPU(); e.padPrefill {
		if err := e.warm(warmPrefillMax); err != nil {
			e.close()
			return nil, fmt.Errorf("engine mlx: warming up: %w", err)
		}
	}
	return e, nil
}

// warmPrefillMax is the longest prefill length warm builds: 29 lengths,
// about 1.5 s on an H200 (1b shape); longer prompts pay for their
// length's first use.
const warmPrefillMax = 2048

// warm prefills one sequence of each prefill length up to most tokens
// (see prefillWidth), then decodes two sequences side by side for two
// steps, and retires them all, so that a run's first prompt of each length
// and its first decode steps cost what later ones do, as serving stacks
// warm up before taking traffic. On an H200 the first decode step of a
// fresh machine's first process took 6 s (MLX building its decode kernels
// on first use) when only prefill had been warmed: that replay of the seed
// workload measured 8.2 ms per decode step, the next process 6.0.
func (e *MLX) warm(most int) error {
	const a, b = SeqID(math.MinInt64), SeqID(math.MinInt64 + 1)
	most = min(most, e.maxCtx-1)
	step := func() error {
		_, err := e.step(context.Background())
		return err
	}
	for w := 16; w <= most; w = prefillWidth(w+1, e.maxCtx) {
		if err := e.admit(Sequence{ID: a, Prompt: make([]int32, w)}); err != nil {
			return err
		}
		err := step()
		if rerr := e.retire(a); err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
	}
	for _, id := range []SeqID{a, b} {
		if err := e.admit(Sequence{ID: id, Prompt: make([]int32, min(16, most))}); err != nil {
			return err
		}
	}
	err := errors.Join(step(), step(), step())
	if err = errors.Join(err, e.retire(a), e.retire(b)); err != nil {
		return err
	}
	e.evalTime, e.buildTime, e.specHits = 0, 0, 0
	return nil
}

// cudaGraphsOff turns MLX's CUDA graphs off unless the user has chosen
// (MLX_USE_CUDA_GRAPHS set either way). MLX 0.31 keeps one CUDA graph per
// distinct step and throws "Cache thrashing is happening" after 800 cache
// misses in the process's life, whatever the cache size; a decoder's steps
// change shape with every new batch mix and context length, so on an H200
// each continuous-batching replay of 80 requests died that way. Off, those
// runs finish; the price is launch overhead: a batch-1 decode step of the
// 3b shape took 4.6 ms instead of 3.7 ms (docs/gpu). MLX reads the variable
// once, at its first GPU work, so this must run before any. Other backends
// ignore it.
func cudaGraphsOff() {
	const name = "MLX_USE_CUDA_GRAPHS"
	if _, set := os.LookupEnv(name); !set {
		os.Setenv(name, "0")
	}
}

func mlxDType(name string) (mlxc.DType, error) {
	switch name {
	case "float32":
		return mlxc.Float32, nil
	case "float16":
		return mlxc.Float16, nil
	case "bfloat16":
		return mlxc.BFloat16, nil
	}
	return 0, fmt.Errorf("engine mlx: dtype %q not supported (%s)", name, strings.Join(DTypeNames(), ", "))
}

func (e *MLX) keep(a *mlxc.Array, err error) (*mlxc.Array, error) {
	if err == nil {
		e.owned = append(e.owned, a)
	}
	return a, err
}

// randomKey derives tensor i's PRNG key from the seed (splitmix64), so each
// tensor's draw depends on the seed and its place only.
func randomKey(seed uint64, i int) (*mlxc.Array, error) {
	z := seed + uint64(i+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return mlxc.RandomKey(z ^ z>>31)
}

// tensor puts spec i on the device in e.dtype: a float matrix quantised
// when e.quantDense applies to it (its columns split into groups), a packed
// one kept packed with its scales and biases converted to e.dtype.
func (e *MLX) tensor(i int, sp matrixSpec, src tensorSource) (mlxc.Linear, error) {
	l, err := src(e.s, e.dtype, i, sp)
	if err != nil {
		return mlxc.Linear{}, err // sources name the tensor (and file)
	}
	l, err = e.convert(sp, l)
	if err != nil {
		return mlxc.Linear{}, fmt.Errorf("tensor %s: %w", sp.name, err)
	}
	return l, nil
}

// qmmTile is the output tile, in rows of the weight, of MLX 0.31's
// generic CUDA quantized matmul (qmm_naive: prefills whose activations are
// float32 or whose matrix has a number of rows that is not a multiple of
// 128). It loads a tile's scales and biases without checking for the
// matrix's last row, so past the end of a matrix of N rows when 128 does
// not divide N: compute-sanitizer counted 153 invalid reads in one test of
// the tiny preset on an H200, and one run in six of the GPU tests died of
// "an illegal memory access" when such a read left mapped memory.
const qmmTile = 128

// tileRoom gives such reads somewhere to land: a [N, G] scales or biases
// array with N not a multiple of qmmTile is padded with zero rows up to
// one, and the array becomes a view of its first N rows, sharing that
// buffer (the padding is never read into a result).
func (e *MLX) tileRoom(a *mlxc.Array) (*mlxc.Array, error) {
	sh := a.Shape()
	if len(sh) != 2 || sh[0]%qmmTile == 0 {
		return a, nil
	}
	p, err := e.s.PadEnd(a, qmmTile-sh[0]%qmmTile, 0)
	a.Close()
	if err == nil {
		err = mlxc.Eval(p)
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	v, err := e.s.Slice(p, []int{0, 0}, sh)
	p.Close() // the view keeps its buffer
	return v, err
}

func (e *MLX) convert(sp matrixSpec, l mlxc.Linear) (mlxc.Linear, error) {
	var err error
	cast := func(a *mlxc.Array) (*mlxc.Array, error) {
		if a.DType() == e.dtype {
			return a, nil
		}
		b, err := e.s.AsType(a, e.dtype)
		a.Close()
		return b, err
	}
	if l.Scales != nil {
		if l.Scales, err = cast(l.Scales); err == nil {
			l.Biases, err = cast(l.Biases)
		}
		if err == nil && e.s.GPU() {
			if l.Scales, err = e.tileRoom(l.Scales); err == nil {
				l.Biases, err = e.tileRoom(l.Biases)
			}
		}
		if err == nil {
			err = mlxc.Eval(l.W, l.Scales, l.Biases)
		}
		e.owned = append(e.owned, l.W, l.Scales, l.Biases)
		return l, err
	}
	a, err := cast(l.W)
	if err != nil {
		return mlxc.Linear{}, err
	}
	q := e.quantDense
	if q == nil || sp.cols == 0 || sp.cols%q.GroupSize != 0 {
		e.owned = append(e.owned, a)
		return mlxc.Linear{W: a}, mlxc.Eval(a)
	}
	wq, sc, bi, err := e.s.Quantize(a, q.GroupSize, q.Bits)
	a.Close()
	if err != nil {
		return mlxc.Linear{}, err
	}
	e.owned = append(e.owned, wq, sc, bi)
	return mlxc.Linear{W: wq, Scales: sc, Biases: bi, GroupSize: q.GroupSize, Bits: q.Bits}, mlxc.Eval(wq, sc, bi)
}

// upload puts every tensor on the device, one at a time so that at most one
// float32 staging copy lives at once.
func (e *MLX) upload(c Config, src tensorSource) error {
	inv := c.RopeInvFreq()
	periods := make([]float32, len(inv))
	for i, f := range inv {
		periods[i] = float32(1 / f)
	}
	var err error
	if e.freqs, err = e.keep(mlxc.FromFloat32(periods, len(periods))); err != nil {
		return err
	}
	e.bcfg = mlxc.BlockConfig{Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, HeadDim: c.HeadDim,
		Eps: float32(c.RMSNormEps), RopeBase: float32(c.RopeTheta), RopeFreqs: e.freqs}
	byName := map[string]mlxc.Linear{}
	for i, sp := range (&Weights{Layers: make([]Layer, c.NumHiddenLayers)}).specs(c) {
		if byName[sp.name], err = e.tensor(i, sp, src); err != nil {
			return fmt.Errorf("engine mlx: %w", err)
		}
	}
	e.tensors = byName
	return e.assemble(c, byName)
}

// assemble places tensors named as in the Hugging Face layout.
func (e *MLX) assemble(c Config, t map[string]mlxc.Linear) error {
	get := func(name string) (mlxc.Linear, error) {
		l, ok := t[name]
		if !ok {
			return l, fmt.Errorf("engine mlx: tensor %s missing", name)
		}
		return l, nil
	}
	vec := func(name string) (*mlxc.Array, error) {
		l, err := get(name)
		if err == nil && l.Scales != nil {
			err = fmt.Errorf("engine mlx: tensor %s: a vector cannot be quantised", name)
		}
		return l.W, err
	}
	var err error
	if e.embed, err = get("model.embed_tokens.weight"); err != nil {
		return err
	}
	e.head = e.embed
	if !c.TieWordEmbeddings {
		if e.head, err = get("lm_head.weight"); err != nil {
			return err
		}
	}
	if e.head.Scales == nil {
		if e.headT, err = e.keep(e.s.Transpose(e.head.W, 1, 0)); err != nil {
			return err
		}
	}
	if e.norm, err = vec("model.norm.weight"); err != nil {
		return err
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		var b mlxc.BlockWeights
		if b.AttnNorm, err = vec(p + "input_layernorm.weight"); err != nil {
			return err
		}
		if b.MLPNorm, err = vec(p + "post_attention_layernorm.weight"); err != nil {
			return err
		}
		for _, d := range []struct {
			dst  *mlxc.Linear
			name string
		}{{&b.Q, "self_attn.q_proj"}, {&b.K, "self_attn.k_proj"}, {&b.V, "self_attn.v_proj"}, {&b.O, "self_attn.o_proj"},
			{&b.Gate, "mlp.gate_proj"}, {&b.Up, "mlp.up_proj"}, {&b.Down, "mlp.down_proj"}} {
			if *d.dst, err = get(p + d.name + ".weight"); err != nil {
				return err
			}
			if d.dst.Scales == nil {
				// A transposed view, made once: the block then builds a
				// matmul per projection and no transpose.
				if d.dst.W, err = e.keep(e.s.Transpose(d.dst.W, 1, 0)); err != nil {
					return err
				}
				d.dst.Transposed = true
			}
		}
		e.layers = append(e.layers, b)
	}
	return mlxc.Eval(e.owned...)
}

// DType is the engine's weight and activation type.
func (e *MLX) DType() mlxc.DType { return e.dtype }

// Info implements Engine.
func (e *MLX) Info() Info {
	dev := "cpu"
	if e.s.GPU() {
		dev = "gpu"
	}
	// The device line carries dtype and quantisation because it is what
	// provenance records (calibrated profiles, replay results).
	dt := e.dtype.String()
	if q := e.quant; q != nil {
		dt = fmt.Sprintf("%s, %d-bit groups of %d", dt, q.Bits, q.GroupSize)
	}
	return Info{Engine: "mlx", Model: e.opt.Model, Device: dev + " (" + dt + ")", DType: e.dtype.String(), Config: e.cfg}
}

// Admit implements Engine.
func (e *MLX) Admit(s Sequence) (err error) {
	e.thread.do(func() { err = e.admit(s) })
	return err
}

func (e *MLX) admit(s Sequence) error {
	if e.closed {
		return ErrClosed
	}
	if _, dup := e.seqs[s.ID]; dup {
		return fmt.Errorf("sequence %d: already admitted", s.ID)
	}
	if len(s.Prompt) == 0 {
		return fmt.Errorf("sequence %d: empty prompt", s.ID)
	}
	if len(s.Prompt) >= e.maxCtx {
		return fmt.Errorf("sequence %d: prompt of %d tokens leaves no room in a context of %d", s.ID, len(s.Prompt), e.maxCtx)
	}
	for i, t := range s.Prompt {
		if t < 0 || int(t) >= e.cfg.VocabSize {
			return fmt.Errorf("sequence %d: token %d at position %d outside vocabulary of %d", s.ID, t, i, e.cfg.VocabSize)
		}
	}
	e.dropSpec()
	sq := &mlxSeq{id: s.ID, prompt: slices.Clone(s.Prompt), chunk: max(0, s.PrefillChunk), pending: true}
	e.seqs[s.ID] = sq
	e.order = append(e.order, sq)
	return nil
}

// Retire implements Engine.
func (e *MLX) Retire(id SeqID) (err error) {
	e.thread.do(func() { err = e.retire(id) })
	return err
}

func (e *MLX) retire(id SeqID) error {
	sq, ok := e.seqs[id]
	if !ok {
		return fmt.Errorf("sequence %d: %w", id, ErrUnknownSequence)
	}
	e.dropSpec()
	if err := e.slotRelease(sq); err != nil {
		return err
	}
	sq.free()
	delete(e.seqs, id)
	e.order = slices.DeleteFunc(e.order, func(s *mlxSeq) bool { return s == sq })
	return nil
}

// Stats implements Engine.
func (e *MLX) Stats() Stats {
	var st Stats
	st.Sequences = len(e.seqs)
	for _, sq := range e.order {
		if sq.pending {
			st.Pending++
		}
		st.KVTokens += sq.n
		if !sq.inSlot {
			st.KVBytes += int64(sq.n * 2 * e.cfg.NumHiddenLayers * e.cfg.KVDim() * e.dtype.Size())
		}
	}
	if e.slots.k != nil {
		st.KVBytes += int64(e.slots.rowCap) * int64(e.slots.colCap) * int64(2*e.cfg.NumHiddenLayers*e.cfg.KVDim()*e.dtype.Size())
	}
	return st
}

// Close implements Engine.
func (e *MLX) Close() (err error) {
	if !e.closed { // else closed by a pinned view, which leaves the thread
		e.thread.do(func() { err = e.close() })
	}
	e.thread.stop()
	return err
}

func (e *MLX) close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	e.dropSpec()
	for _, sq := range e.order {
		sq.free()
	}
	e.slots.free()
	e.seqs, e.order = nil, nil
	// Before the weights: its compiled tapes hold references to them.
	e.slotFn.Close()
	e.slotFn = nil
	for _, a := range e.owned {
		a.Close()
	}
	e.owned, e.layers = nil, nil
	return e.s.Close()
}

type mlxRow struct {
	sq     *mlxSeq
	count  int
	k, v   []*mlxc.Array // new caches
	tok    *mlxc.Array
	logits *mlxc.Array
	slot   int // 1 + the row's place in the step's slot batch (mlxGraph.toks); 0 for none
}

func (r *mlxRow) free() {
	closeKV(r.k, r.v)
	r.k, r.v = nil, nil
	r.tok.Close()
	r.logits.Close()
}

// Pin implements Pinned: f's calls on the view run on the engine's thread
// with no hand-off (BenchmarkMLXStepOverhead: 40-60 µs a step on 2 busy
// cores, the wake of the waiting goroutine).
func (e *MLX) Pin(f func(Engine)) { e.thread.do(func() { f(mlxPinned{e}) }) }

// mlxPinned is the view Pin hands out: the engine's methods without the
// hand-off.
type mlxPinned struct{ e *MLX }

func (p mlxPinned) Info() Info                                   { return p.e.Info() }
func (p mlxPinned) Admit(s Sequence) error                       { return p.e.admit(s) }
func (p mlxPinned) Step(ctx context.Context) (StepResult, error) { return p.e.step(ctx) }
func (p mlxPinned) Retire(id SeqID) error                        { return p.e.retire(id) }
func (p mlxPinned) Stats() Stats                                 { return p.e.Stats() }
func (p mlxPinned) Close() error                                 { return p.e.close() }

// Step implements Engine.
func (e *MLX) Step(ctx context.Context) (res StepResult, err error) {
	e.thread.do(func() { res, err = e.step(ctx) })
	return res, err
}

func (e *MLX) step(ctx context.Context) (StepResult, error) {
	if e.closed {
		return StepResult{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return StepResult{}, err
	}
	var res StepResult
	var rows []*mlxRow
	var failing []*mlxSeq
	for pass := 0; pass < 2; pass++ {
		for _, sq := range e.order {
			if sq.err != nil || sq.pending != (pass == 0) {
				continue
			}
			count := 1
			if sq.pending {
				count = len(sq.prompt) - sq.n
				if sq.chunk > 0 {
					count = min(count, sq.chunk)
				}
			}
			if sq.n+count > e.maxCtx {
				failing = append(failing, sq)
				continue
			}
			rows = append(rows, &mlxRow{sq: sq, count: count})
			if sq.pending {
				res.PrefillTokens += count
			} else {
				res.DecodeSeqs++
				res.KVTokens += sq.n
			}
		}
	}
	// A failing sequence leaves the slot cache now, since every slot row
	// decodes in the slot step; its row holds nothing it still needs.
	for _, sq := range failing {
		if err := e.slotRelease(sq); err != nil {
			return StepResult{}, err
		}
	}
	if len(rows) == 0 {
		e.fail(&res, failing)
		return res, nil
	}
	start := time.Now()
	var gr *mlxGraph
	if sp := e.takeSpec(rows); sp != nil {
		rows, gr = sp.rows, sp.graph
		e.specHits++
	} else {
		var err error
		t0 := time.Now()
		gr, err = e.build(ctx, rows, false)
		e.buildTime += time.Since(t0)
		if err != nil {
			freeRows(rows)
			return StepResult{}, err
		}
	}
	outs := gr.outs
	if err := ctx.Err(); err != nil {
		freeRows(rows)
		gr.free()
		return StepResult{}, err
	}
	// The step's slot caches replace the engine's before any evaluation
	// starts: with no handle left on the old ones MLX donates their
	// buffers and writes the new columns in place (async_eval encodes, and
	// so decides donation, at once). Safe even if evaluation then fails:
	// the step only wrote columns past each row's tokens, which stay
	// masked until the row is committed.
	if gr.slotK != nil {
		e.slots.replace(gr.slotK, gr.slotV)
		gr.slotK, gr.slotV = nil, nil
	}
	// The slot rows' tokens stay on the device as the next step's input.
	toks, logits := gr.toks, gr.logits
	defer logits.Close()
	if toks != nil {
		e.slots.tok.Close()
		e.slots.tok, e.slots.ntok = toks, toks.Size()
		gr.toks, gr.logits = nil, nil
	}
	if e.pipeline {
		if err := mlxc.AsyncEval(slices.Concat(outs, e.slots.k, e.slots.v)...); err != nil {
			freeRows(rows)
			return StepResult{}, err
		}
	}
	var moved []*mlxc.Array // row caches now in the slot cache
	defer func() {
		for _, a := range moved {
			a.Close()
		}
	}()
	// From here the step is committed. The caches move to their sequences
	// while still lazy, so that the next step's graph can be built on them
	// while MLX computes this one.
	for _, r := range rows {
		sq := r.sq
		res.Outputs = append(res.Outputs, SeqOutput{ID: sq.id, Token: NoToken, Context: sq.n + r.count})
		if sq.pending {
			res.Outputs[len(res.Outputs)-1].Prefill = r.count
		}
		closeKV(sq.k, sq.v)
		sq.k, sq.v, r.k, r.v = r.k, r.v, nil, nil
		sq.n += r.count
		sq.tok.Close()
		sq.tok = nil
		if sq.n >= len(sq.prompt) {
			if sq.pending && e.slotsOn() {
				if err := e.slotInsert(sq, &moved); err != nil {
					freeRows(rows)
					return StepResult{}, err
				}
			}
			sq.pending = false
			sq.tok, r.tok = r.tok, nil
		}
	}
	e.fail(&res, failing)
	if len(failing) == 0 {
		t0 := time.Now()
		e.speculate(rows)
		e.buildTime += time.Since(t0)
	}
	if e.slots.k != nil {
		outs = append(append(outs, e.slots.k...), e.slots.v...)
	}
	t0 := time.Now()
	err := mlxc.Eval(outs...)
	e.evalTime += time.Since(t0)
	if err != nil {
		freeRows(rows)
		return StepResult{}, err
	}
	var slotToks []uint32
	var slotLogits []float32
	if toks != nil {
		if slotToks, err = toks.Uint32(); err == nil && e.opt.RecordLogits {
			slotLogits, err = logits.Float32()
		}
		if err != nil {
			freeRows(rows)
			return StepResult{}, err
		}
	}
	for i, r := range rows {
		sq := r.sq
		if r.slot > 0 {
			j := r.slot - 1
			sq.lastTok = int32(slotToks[j])
			res.Outputs[i].Token = sq.lastTok
			if e.opt.RecordLogits {
				V := len(slotLogits) / len(slotToks)
				res.Outputs[i].Logits = slotLogits[j*V : (j+1)*V : (j+1)*V]
			}
			continue
		}
		if sq.tok == nil {
			continue
		}
		// argmax gives uint32: reading it as such copies the word out with
		// no conversion nodes (~50 µs less per step than Int32).
		t, err := sq.tok.Uint32()
		if err != nil {
			freeRows(rows)
			return StepResult{}, err
		}
		sq.lastTok = int32(t[0])
		res.Outputs[i].Token = int32(t[0])
		if e.opt.RecordLogits {
			if res.Outputs[i].Logits, err = r.logits.Float32(); err != nil {
				freeRows(rows)
				return StepResult{}, err
			}
		}
	}
	freeRows(rows)
	res.Wall = time.Since(start)
	return res, nil
}

func freeRows(rows []*mlxRow) {
	for _, r := range rows {
		r.free()
	}
}

// fail ends sequences whose context is full.
func (e *MLX) fail(res *StepResult, failing []*mlxSeq) {
	for _, sq := range failing {
		if sq.inSlot {
			panic(fmt.Sprintf("mlx engine: failing sequence %d still holds slot row %d", sq.id, sq.row))
		}
		sq.err = fmt.Errorf("sequence %d: %w (%d tokens)", sq.id, ErrContextFull, e.maxCtx)
		res.Outputs = append(res.Outputs, SeqOutput{ID: sq.id, Context: sq.n, Err: sq.err})
		sq.free()
	}
}

// mlxSpec is the next step's graph, built while the current one computes
// (as mlx-lm's generate loop does with async_eval): it assumes every
// running sequence decodes once more, on its last token still on the
// device. Admit and Retire drop it.
type mlxSpec struct {
	rows  []*mlxRow
	graph *mlxGraph
}

// mlxGraph is a step's lazy graph: the arrays to evaluate, and in slots
// mode the slot caches after the step (per layer), which replace the
// engine's when the step commits.
type mlxGraph struct {
	outs         []*mlxc.Array
	slotK, slotV []*mlxc.Array
	// toks [B] and logits [B, vocab] of the slot rows, in slot order: one
	// argmax and one read for the whole batch.
	toks, logits *mlxc.Array
}

// free drops what the graph still owns.
func (g *mlxGraph) free() {
	for l := range g.slotK {
		g.slotK[l].Close()
		g.slotV[l].Close()
	}
	g.slotK, g.slotV = nil, nil
	g.toks.Close()
	g.logits.Close()
	g.toks, g.logits = nil, nil
}

// speculate builds the next step's graph when the next step is known: every
// sequence just computed decodes next and nothing else runs.
func (e *MLX) speculate(rows []*mlxRow) {
	e.dropSpec()
	if !e.pipeline {
		return
	}
	live := 0
	for _, sq := range e.order {
		if sq.err == nil {
			live++
		}
	}
	if live != len(rows) {
		return
	}
	next := make([]*mlxRow, 0, len(rows))
	for _, sq := range e.order {
		if sq.err != nil {
			continue
		}
		if sq.pending || sq.tok == nil && !(sq.inSlot && sq.row < e.slots.ntok) || sq.n+1 > e.maxCtx {
			return
		}
		next = append(next, &mlxRow{sq: sq, count: 1})
	}
	gr, err := e.build(context.Background(), next, true)
	if err != nil {
		// Only an optimisation: the next step builds its graph again and
		// reports the error then.
		freeRows(next)
		return
	}
	e.spec = &mlxSpec{rows: next, graph: gr}
}

// takeSpec returns the prepared graph when it is this step's.
func (e *MLX) takeSpec(rows []*mlxRow) *mlxSpec {
	sp := e.spec
	if sp == nil {
		return nil
	}
	e.spec = nil
	if len(sp.rows) != len(rows) {
		freeRows(sp.rows)
		sp.graph.free()
		return nil
	}
	for i, r := range rows {
		if sp.rows[i].sq != r.sq || r.count != 1 {
			freeRows(sp.rows)
			sp.graph.free()
			return nil
		}
	}
	return sp
}

func (e *MLX) dropSpec() {
	if e.spec != nil {
		freeRows(e.spec.rows)
		e.spec.graph.free()
		e.spec = nil
	}
}

// build makes the step's lazy graph and returns the arrays to evaluate.
// Rows with the same cached length and the same number of new tokens share
// one Block call per layer (their caches stacked along the batch axis);
// decoding rows of different lengths share one padded call (padDecode).
// With lazy, decoding rows take their input token from the previous step's
// device array rather than from lastTok.
func (e *MLX) build(ctx context.Context, rows []*mlxRow, lazy bool) (*mlxGraph, error) {
	type key struct{ n, count int }
	var keys []key
	groups := map[key][]*mlxRow{}
	var decode, slotted []*mlxRow
	for _, r := range rows {
		switch {
		case r.sq.inSlot:
			slotted = append(slotted, r)
		case r.count == 1 && r.sq.n > 0 && !r.sq.pending:
			decode = append(decode, r)
		}
	}
	pad := e.padDecode(decode)
	for _, r := range rows {
		if r.sq.inSlot || pad && r.count == 1 && r.sq.n > 0 && !r.sq.pending {
			continue
		}
		k := key{r.sq.n, r.count}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], r)
	}
	var outs []*mlxc.Array
	collect := func(g []*mlxRow) {
		for _, r := range g {
			outs = append(outs, r.tok, r.logits)
			outs = append(outs, r.k...)
			outs = append(outs, r.v...)
		}
	}
	gr := &mlxGraph{}
	if len(slotted) > 0 {
		if err := e.slotGroup(gr, slotted, lazy); err != nil {
			gr.free()
			return nil, err
		}
		outs = append(outs, gr.toks, gr.logits)
	}
	fail := func(err error) (*mlxGraph, error) {
		gr.free()
		return nil, err
	}
	if pad {
		if err := e.padGroup(decode, lazy); err != nil {
			return fail(err)
		}
		collect(decode)
	}
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		g := groups[k]
		if err := e.group(g, k.n, k.count, lazy); err != nil {
			return fail(err)
		}
		collect(g)
	}
	gr.outs = outs
	return gr, nil
}

// inputs returns the token ids of g as an index array: prompt tokens for
// prefill rows, each followed by width-count pad tokens (0), the last token
// for decoding rows (with lazy, the previous step's unevaluated argmax).
// The caller closes it.
func (e *MLX) inputs(g []*mlxRow, n, count, width int, lazy bool) (*mlxc.Array, error) {
	if lazy {
		toks := make([]*mlxc.Array, len(g))
		for i, r := range g {
			toks[i] = r.sq.tok
		}
		return e.s.Concatenate(0, toks...)
	}
	ids := make([]int32, 0, len(g)*width)
	for _, r := range g {
		if r.sq.pending {
			ids = append(ids, r.sq.prompt[n:n+count]...)
			ids = append(ids, make([]int32, width-count)...)
		} else {
			ids = append(ids, r.sq.lastTok)
		}
	}
	return mlxc.FromInt32(ids, len(ids))
}

// padDecode says whether decoding rows on per-sequence caches (modes
// groups and padded) go through one padded batch rather than one group per
// cached length: in padded mode always, else (no such rows in the default
// mode) whenever their lengths differ.
// Measured (BenchmarkMLXMixedDecode, small preset, float32, MLX CPU on 2
// shared and busy cores, contexts 16-271 all different, ms per step, three
// runs): batch 8 groups 26.4/21.9/25.1, padded 15.3/15.4/17.8; batch 32
// groups 117/120/115, padded 80/84/94. Padding wastes attention over the pads but runs
// every projection as one batched matmul per layer instead of one per
// sequence, and builds a quarter as many graph nodes.
func (e *MLX) padDecode(decode []*mlxRow) bool {
	switch e.batching {
	case batchGroups:
		return false
	case batchPadded:
		return len(decode) > 1
	}
	if len(decode) < 2 {
		return false
	}
	n := decode[0].sq.n
	for _, r := range decode[1:] {
		if r.sq.n != n {
			return true
		}
	}
	return false
}

// group builds the graph of rows that all hold n cached tokens and feed
// count new ones.
func (e *MLX) group(g []*mlxRow, n, count int, lazy bool) error {
	h, G := e.cfg.HiddenSize, len(g)
	width := count
	if e.padPrefill && count > 1 {
		width = prefillWidth(count, e.maxCtx-n)
	}
	idx, err := e.inputs(g, n, count, width, lazy)
	if err != nil {
		return err
	}
	x0, err := e.lookup(idx)
	idx.Close()
	if err != nil {
		return err
	}
	x, err := e.s.Reshape(x0, G, width, h)
	x0.Close()
	if err != nil {
		return err
	}
	for _, r := range g {
		r.k = make([]*mlxc.Array, len(e.layers))
		r.v = make([]*mlxc.Array, len(e.layers))
	}
	stack := func(l int, kv func(*mlxSeq) []*mlxc.Array) (*mlxc.Array, bool, error) {
		if n == 0 {
			return nil, false, nil
		}
		if G == 1 {
			return kv(g[0].sq)[l], false, nil
		}
		parts := make([]*mlxc.Array, G)
		for i, r := range g {
			parts[i] = kv(r.sq)[l]
		}
		a, err := e.s.Concatenate(0, parts...)
		return a, true, err
	}
	split := func(a *mlxc.Array, i int) (*mlxc.Array, error) {
		sh := a.Shape()
		start := make([]int, len(sh))
		stop := slices.Clone(sh)
		start[0], stop[0] = i, i+1
		return e.s.Slice(a, start, stop)
	}
	for l := range e.layers {
		kc, kOwn, err := stack(l, func(s *mlxSeq) []*mlxc.Array { return s.k })
		if err != nil {
			x.Close()
			return err
		}
		vc, vOwn, err := stack(l, func(s *mlxSeq) []*mlxc.Array { return s.v })
		if err != nil {
			x.Close()
			return err
		}
		o, err := e.s.Block(e.bcfg, &e.layers[l], x, kc, vc, n, false)
		x.Close()
		if kOwn {
			kc.Close()
		}
		if vOwn {
			vc.Close()
		}
		if err != nil {
			return err
		}
		x = o.Out
		if width > count {
			// The pads' keys and values never reach a cache.
			if err := e.unpad(&o, n+count); err != nil {
				o.Close()
				return err
			}
		}
		if G == 1 {
			g[0].k[l], g[0].v[l] = o.K, o.V
			continue
		}
		for i, r := range g {
			if r.k[l], err = split(o.K, i); err == nil {
				r.v[l], err = split(o.V, i)
			}
			if err != nil {
				o.Close()
				return err
			}
		}
		o.K.Close()
		o.V.Close()
	}
	return e.finish(g, x, count)
}

// finish turns the last layer's output x [G, count or more, hidden] into
// each row's logits and greedy token, read at position count-1 (pads come
// after it); it consumes x.
func (e *MLX) finish(g []*mlxRow, x *mlxc.Array, count int) error {
	h, G := e.cfg.HiddenSize, len(g)
	split := func(a *mlxc.Array, i int) (*mlxc.Array, error) {
		sh := a.Shape()
		start := make([]int, len(sh))
		stop := slices.Clone(sh)
		start[0], stop[0] = i, i+1
		return e.s.Slice(a, start, stop)
	}
	last, err := e.s.Slice(x, []int{0, count - 1, 0}, []int{G, count, h})
	x.Close()
	if err != nil {
		return err
	}
	nrm, err := e.s.RMSNorm(last, e.norm, e.bcfg.Eps)
	last.Close()
	if err != nil {
		return err
	}
	n2, err := e.s.Reshape(nrm, G, h)
	nrm.Close()
	if err != nil {
		return err
	}
	logits, err := e.project(n2)
	n2.Close()
	if err != nil {
		return err
	}
	if G == 1 {
		g[0].logits = logits
		g[0].tok, err = e.s.Argmax(logits, -1, false)
		return err
	}
	defer logits.Close()
	for i, r := range g {
		if r.logits, err = split(logits, i); err != nil {
			return err
		}
		if r.tok, err = e.s.Argmax(r.logits, -1, false); err != nil {
			return err
		}
	}
	return nil
}

// prefillWidth is the length a prompt chunk of count tokens is prefilled
// at: count rounded up to one of four lengths per doubling (16, 20, 24, 28,
// 32, 40, ..., 96, 112, 128, 160, ...), so that pads are at most a quarter
// of it, capped at limit. Pads go after the prompt, where the causal mask
// hides them from every prompt token, and their keys and values are cut
// off (unpad), so the tokens and caches are those of an unpadded prefill.
// On a GPU each new prefill length costs MLX kernel and plan building for
// every shape of the layer: on an H200 (1b shape, bfloat16, traces/
// default.parquet at 4x, 80 requests, 76 distinct prompt lengths) prefill
// steps took 70-230 ms against ~5-10 ms for lengths seen before, two thirds
// of the engine's time. Padded, the same trace has 22 lengths, and warm
// (warm) builds them all before the first request.
func prefillWidth(count, limit int) int {
	w := 16
	if count > 16 {
		step := 1 << (bits.Len(uint(count-1)) - 3) // a quarter of the power of two below count
		w = (count + step - 1) / step * step
	}
	return max(count, min(w, limit))
}

// unpad cuts a block's caches to their first n tokens (views, no copy).
func (e *MLX) unpad(o *mlxc.BlockOutput, n int) error {
	for _, a := range []**mlxc.Array{&o.K, &o.V} {
		sh := (*a).Shape()
		stop := slices.Clone(sh)
		stop[2] = n
		cut, err := e.s.Slice(*a, make([]int, len(sh)), stop)
		if err != nil {
			return err
		}
		(*a).Close()
		*a = cut
	}
	return nil
}

// lookup gathers embedding rows; a quantised table is gathered packed and
// only those rows are dequantised, as mlx-lm's QuantizedEmbedding does.
func (e *MLX) lookup(idx *mlxc.Array) (*mlxc.Array, error) {
	em := e.embed
	if em.Scales == nil {
		return e.s.Take(em.W, idx, 0)
	}
	var parts [3]*mlxc.Array
	defer func() {
		for _, p := range parts {
			p.Close()
		}
	}()
	for i, a := range []*mlxc.Array{em.W, em.Scales, em.Biases} {
		var err error
		if parts[i], err = e.s.Take(a, idx, 0); err != nil {
			return nil, err
		}
	}
	return e.s.Dequantize(parts[0], parts[1], parts[2], em.GroupSize, em.Bits)
}

// project applies the output head to x [G, hidden].
func (e *MLX) project(x *mlxc.Array) (*mlxc.Array, error) {
	h := e.head
	if h.Scales == nil {
		return e.s.Matmul(x, e.headT)
	}
	return e.s.QuantizedMatmul(x, h.W, h.Scales, h.Biases, true, h.GroupSize, h.Bits)
}

// padGroup builds the graph of decoding rows of different cached lengths
// as one batch: one BlockPadded call per layer (caches left-padded and
// masked) instead of one Block call per length.
func (e *MLX) padGroup(g []*mlxRow, lazy bool) error {
	h, G := e.cfg.HiddenSize, len(g)
	lens := make([]int, G)
	for i, r := range g {
		lens[i] = r.sq.n
		r.k = make([]*mlxc.Array, len(e.layers))
		r.v = make([]*mlxc.Array, len(e.layers))
	}
	idx, err := e.inputs(g, 0, 1, 1, lazy)
	if err != nil {
		return err
	}
	x0, err := e.lookup(idx)
	idx.Close()
	if err != nil {
		return err
	}
	x, err := e.s.Reshape(x0, G, 1, h)
	x0.Close()
	if err != nil {
		return err
	}
	kc := make([]*mlxc.Array, G)
	vc := make([]*mlxc.Array, G)
	for l := range e.layers {
		for i, r := range g {
			kc[i], vc[i] = r.sq.k[l], r.sq.v[l]
		}
		o, err := e.s.BlockPadded(e.bcfg, &e.layers[l], x, kc, vc, lens)
		x.Close()
		if err != nil {
			return err
		}
		x = o.Out
		for i, r := range g {
			r.k[l], r.v[l] = o.K[i], o.V[i]
		}
	}
	return e.finish(g, x, 1)
}

// slotCache holds the KV caches of all decoding sequences as one array
// per layer for K and one for V, [rowCap, kv_heads, colCap, head_dim]:
// row i is seqs[i]'s cache with its n tokens at columns 0..n-1 and
// whatever lies beyond masked out. A decode step then costs a constant
// number of MLX operations per layer whatever the batch (BlockSlots: one
// scatter of the new columns per cache, one view for attention), where
// padGroup pads, stacks and splits every row's cache (O(batch) operations
// and a copy of the whole cache per layer and step). Rows never move as
// others grow; a retired row is filled with the last row (compaction), and
// capacity doubles when rows or columns run out, so copies are rare.
type slotCache struct {
	k, v           []*mlxc.Array // per layer; nil when no row is held
	seqs           []*mlxSeq
	rowCap, colCap int
	// tok holds the last tokens of rows 0..ntok-1 on the device (the last
	// slot step's argmax), the pipelined next step's input; rows added
	// since have their own mlxSeq.tok. Any row move drops it.
	tok  *mlxc.Array
	ntok int
}

func (c *slotCache) free() {
	closeKV(c.k, c.v)
	c.tok.Close()
	for _, sq := range c.seqs {
		sq.inSlot = false
	}
	*c = slotCache{}
}

// replace installs new per-layer caches, closing the old ones.
func (c *slotCache) replace(k, v []*mlxc.Array) {
	for l := range k {
		c.k[l].Close()
		c.v[l].Close()
		c.k[l], c.v[l] = k[l], v[l]
	}
}

// grownCap doubles have until it reaches need, at most limit (never below
// need).
func grownCap(have, need, limit int) int {
	c := max(have, 1)
	for c < need {
		c *= 2
	}
	return max(min(c, limit), need)
}

// slotGrow makes room for rows rows of cols columns: zero padding at the
// end of both axes, one operation per cache and layer.
func (e *MLX) slotGrow(rows, cols int) error {
	c := &e.slots
	if rows <= c.rowCap && cols <= c.colCap {
		return nil
	}
	nr := c.rowCap
	if rows > nr {
		nr = grownCap(nr, rows, math.MaxInt)
	}
	nc := c.colCap
	if cols > nc {
		nc = grownCap(nc, cols, e.maxCtx)
	}
	for l := range c.k {
		k, err := e.s.PadEnd(c.k[l], nr-c.rowCap, 0, nc-c.colCap, 0)
		if err != nil {
			return err
		}
		v, err := e.s.PadEnd(c.v[l], nr-c.rowCap, 0, nc-c.colCap, 0)
		if err != nil {
			k.Close()
			return err
		}
		c.k[l].Close()
		c.v[l].Close()
		c.k[l], c.v[l] = k, v
	}
	c.rowCap, c.colCap = nr, nc
	return nil
}

// slotInsert moves a just-prefilled sequence's caches into a new last row
// of the slot cache (one slice_update per cache and layer; the first row
// makes the arrays by padding its own cache). The sequence's own caches
// are appended to done.
func (e *MLX) slotInsert(sq *mlxSeq, done *[]*mlxc.Array) error {
	c := &e.slots
	row, n := len(c.seqs), sq.n
	kv, hd := e.cfg.NumKeyValueHeads, e.cfg.HeadDim
	if c.k == nil {
		rc, cc := grownCap(0, 4, math.MaxInt), grownCap(0, max(n+1, 64), e.maxCtx)
		c.k = make([]*mlxc.Array, len(e.layers))
		c.v = make([]*mlxc.Array, len(e.layers))
		for l := range e.layers {
			var err error
			if c.k[l], err = e.s.PadEnd(sq.k[l], rc-1, 0, cc-n, 0); err == nil {
				c.v[l], err = e.s.PadEnd(sq.v[l], rc-1, 0, cc-n, 0)
			}
			if err != nil {
				c.free()
				return err
			}
		}
		c.rowCap, c.colCap = rc, cc
	} else {
		if err := e.slotGrow(row+1, n+1); err != nil {
			return err
		}
		start, stop := []int{row, 0, 0, 0}, []int{row + 1, kv, n, hd}
		for l := range e.layers {
			k, err := e.s.SliceUpdate(c.k[l], sq.k[l], start, stop)
			if err != nil {
				return err
			}
			v, err := e.s.SliceUpdate(c.v[l], sq.v[l], start, stop)
			if err != nil {
				k.Close()
				return err
			}
			c.k[l].Close()
			c.v[l].Close()
			c.k[l], c.v[l] = k, v
		}
	}
	// The row caches may be among the step's outputs still to evaluate;
	// the caller closes them after.
	*done = append(append(*done, sq.k...), sq.v...)
	sq.k, sq.v = nil, nil
	sq.inSlot, sq.row = true, row
	c.seqs = append(c.seqs, sq)
	return nil
}

// slotRelease takes sq out of the slot cache (if it is in it): the last
// row moves into its row (a slice and a slice_update per cache and layer,
// of the moved sequence's tokens only), and the arrays go when the last
// row does, so memory returns to baseline.
func (e *MLX) slotRelease(sq *mlxSeq) error {
	if !sq.inSlot {
		return nil
	}
	e.dropSpec()
	c := &e.slots
	c.tok.Close()
	c.tok, c.ntok = nil, 0
	r, last := sq.row, len(c.seqs)-1
	if c.seqs[r] != sq {
		panic(fmt.Sprintf("mlx engine: sequence %d claims slot row %d of %d", sq.id, r, len(c.seqs)))
	}
	if r != last {
		mv := c.seqs[last]
		kv, hd := e.cfg.NumKeyValueHeads, e.cfg.HeadDim
		for l := range c.k {
			for _, a := range []*[]*mlxc.Array{&c.k, &c.v} {
				part, err := e.s.Slice((*a)[l], []int{last, 0, 0, 0}, []int{last + 1, kv, mv.n, hd})
				if err != nil {
					return err
				}
				u, err := e.s.SliceUpdate((*a)[l], part, []int{r, 0, 0, 0}, []int{r + 1, kv, mv.n, hd})
				part.Close()
				if err != nil {
					return err
				}
				(*a)[l].Close()
				(*a)[l] = u
			}
		}
		c.seqs[r], mv.row = mv, r
	}
	c.seqs = c.seqs[:last]
	sq.inSlot = false
	if last == 0 {
		c.free()
	}
	return nil
}

// slotGroup builds the decode step of every slot row into gr: g holds one
// row per slot (in any order). gr gets the slot caches after the step (the
// engine's stay as they were until the step commits) and the batch's
// tokens and logits, all in a number of MLX operations that does not grow
// with the batch.
func (e *MLX) slotGroup(gr *mlxGraph, g []*mlxRow, lazy bool) error {
	c := &e.slots
	B := len(c.seqs)
	ordered := make([]*mlxRow, B)
	for _, r := range g {
		if r.count != 1 || r.sq.row >= B || ordered[r.sq.row] != nil {
			panic(fmt.Sprintf("mlx engine: slot row %d of %d decoded twice or with %d tokens", r.sq.row, B, r.count))
		}
		ordered[r.sq.row] = r
	}
	lens := make([]int, B)
	width := 0
	for i, r := range ordered {
		if r == nil {
			panic(fmt.Sprintf("mlx engine: slot row %d of %d does not decode in this step", i, B))
		}
		r.slot = i + 1
		lens[i] = r.sq.n
		width = max(width, r.sq.n+1)
	}
	if err := e.slotGrow(B, width); err != nil {
		return err
	}
	if e.slotFn != nil {
		return e.slotFunc(gr, ordered, lens, lazy)
	}
	st, err := mlxc.NewSlotStep(lens, width)
	if err != nil {
		return err
	}
	defer st.Close()
	var idx *mlxc.Array
	if lazy {
		idx, err = e.slotInputs(ordered)
	} else {
		idx, err = e.inputs(ordered, 0, 1, 1, false)
	}
	if err != nil {
		return err
	}
	x0, err := e.lookup(idx)
	idx.Close()
	if err != nil {
		return err
	}
	x, err := e.s.Reshape(x0, B, 1, e.cfg.HiddenSize)
	x0.Close()
	if err != nil {
		return err
	}
	gr.slotK = make([]*mlxc.Array, len(e.layers))
	gr.slotV = make([]*mlxc.Array, len(e.layers))
	for l := range e.layers {
		o, err := e.s.BlockSlots(e.bcfg, &e.layers[l], x, c.k[l], c.v[l], st)
		x.Close()
		if err != nil {
			return err
		}
		x, gr.slotK[l], gr.slotV[l] = o.Out, o.K, o.V
	}
	nrm, err := e.s.RMSNorm(x, e.norm, e.bcfg.Eps)
	x.Close()
	if err != nil {
		return err
	}
	n2, err := e.s.Reshape(nrm, B, e.cfg.HiddenSize)
	nrm.Close()
	if err != nil {
		return err
	}
	gr.logits, err = e.project(n2)
	n2.Close()
	if err != nil {
		return err
	}
	gr.toks, err = e.s.Argmax(gr.logits, -1, false)
	return err
}

// slotFunc builds the slot step of ordered (the slot rows in row order,
// holding lens tokens) with the compiled step function: one cgo crossing
// and a replay of its recorded graph, where slotGroup constructs ~30 MLX
// operations per layer (many more on the CPU backend, which expands RoPE
// and attention into fallback graphs) at every step. The price is
// attention over all colCap columns instead of the longest row's: at most
// twice the columns, since capacity doubles.
func (e *MLX) slotFunc(gr *mlxGraph, ordered []*mlxRow, lens []int, lazy bool) error {
	var idx *mlxc.Array
	var err error
	if lazy {
		idx, err = e.slotInputs(ordered)
	} else {
		// uint32, as the argmax tokens a pipelined step takes: one tape
		// serves both.
		ids := make([]uint32, len(ordered))
		for i, r := range ordered {
			ids[i] = uint32(r.sq.lastTok)
		}
		idx, err = mlxc.FromUint32(ids, len(ids))
	}
	if err != nil {
		return err
	}
	o, err := e.slotFn.Apply(idx, lens, e.slots.k, e.slots.v)
	idx.Close()
	if err != nil {
		return err
	}
	// A tape per batch size and cache capacity seen: kept across idle
	// periods (a trace costs ~1 ms, which every sequential request's first
	// decode step would pay again), but not without bound, since each
	// holds its nodes in host memory and a few scalar constants on the
	// device.
	if n := e.slotFn.Traces(); n-e.slotTraces > e.maxTapes {
		if err := e.slotFn.Forget(); err != nil {
			o.Close()
			return err
		}
		e.slotTraces = n
	}
	gr.toks, gr.logits, gr.slotK, gr.slotV = o.Toks, o.Logits, o.K, o.V
	return nil
}

// slotInputs gathers the slot rows' last tokens on the device for a
// pipelined step: the previous slot step's tokens for the rows they cover,
// each newer row's own.
func (e *MLX) slotInputs(ordered []*mlxRow) (*mlxc.Array, error) {
	c := &e.slots
	var parts []*mlxc.Array
	if c.ntok > 0 {
		parts = append(parts, c.tok)
	}
	for _, r := range ordered[c.ntok:] {
		if r.sq.tok == nil {
			panic(fmt.Sprintf("mlx engine: slot row %d has no token on the device", r.sq.row))
		}
		parts = append(parts, r.sq.tok)
	}
	if len(parts) == 1 {
		return e.s.Reshape(parts[0], len(ordered))
	}
	return e.s.Concatenate(0, parts...)
}
