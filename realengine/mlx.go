//go:build mlx && cgo

package realengine

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/batchkit/batchkit/mlxc"
)

// MLX is the engine on MLX (package mlxc): one mlxc Stream.Block crossing
// per layer and sequence, per-sequence KV caches held as MLX arrays, and the
// whole step's graph evaluated at once. Sequences run as separate rows of the
// graph rather than padded into one batch: Block shares one offset across
// its rows, and per-sequence calls need neither padding nor masks.
type MLX struct {
	cfg    Config
	opt    Options
	s      *mlxc.Stream
	bcfg   mlxc.BlockConfig
	freqs  *mlxc.Array
	embed  *mlxc.Array // [vocab, hidden]
	headT  *mlxc.Array // [hidden, vocab]
	norm   *mlxc.Array
	layers []mlxc.BlockWeights
	owned  []*mlxc.Array
	seqs   map[SeqID]*mlxSeq
	order  []*mlxSeq
	maxCtx int
	closed bool
	// evalTime sums the time spent inside mlxc.Eval, so benchmarks can
	// tell Go-side overhead from MLX compute.
	evalTime time.Duration
}

type mlxSeq struct {
	id      SeqID
	prompt  []int32
	chunk   int
	pending bool
	err     error
	n       int
	lastTok int32
	k, v    []*mlxc.Array // per layer [1, kv_heads, n, head_dim]; nil before the first step
}

func (sq *mlxSeq) free() {
	for l := range sq.k {
		sq.k[l].Close()
		sq.v[l].Close()
	}
	sq.k, sq.v, sq.n = nil, nil, 0
}

func openMLX(opt Options) (Engine, error) {
	c, w, err := LoadWeights(opt.Model, opt.Seed)
	if err != nil {
		return nil, err
	}
	return NewMLX(c, w, opt)
}

// NewMLX uploads w (float32) to MLX. When c carries an MLX quantisation
// block, the projections are quantised again on the device with its group
// size and bits, so compute runs on quantised matrices as mlx-lm's does.
func NewMLX(c Config, w *Weights, opt Options) (*MLX, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := w.check(c); err != nil {
		return nil, err
	}
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
		s, err = mlxc.DefaultStream()
	default:
		return nil, fmt.Errorf("engine mlx: device %q not supported (cpu or gpu)", opt.Device)
	}
	if err != nil {
		return nil, err
	}
	e := &MLX{cfg: c, opt: opt, s: s, seqs: map[SeqID]*mlxSeq{}, maxCtx: opt.MaxContext}
	if e.maxCtx <= 0 || e.maxCtx > c.MaxPositionEmbeddings {
		e.maxCtx = c.MaxPositionEmbeddings
	}
	if err := e.upload(c, w); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *MLX) keep(a *mlxc.Array, err error) (*mlxc.Array, error) {
	if err == nil {
		e.owned = append(e.owned, a)
	}
	return a, err
}

func (e *MLX) upload(c Config, w *Weights) error {
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
	h := c.HiddenSize
	if e.embed, err = e.keep(mlxc.FromFloat32(w.Embed, c.VocabSize, h)); err != nil {
		return err
	}
	head := e.embed
	if w.LMHead != nil {
		if head, err = e.keep(mlxc.FromFloat32(w.LMHead, c.VocabSize, h)); err != nil {
			return err
		}
	}
	if e.headT, err = e.keep(e.s.Transpose(head, 1, 0)); err != nil {
		return err
	}
	if e.norm, err = e.keep(mlxc.FromFloat32(w.Norm, h)); err != nil {
		return err
	}
	lin := func(data []float32, out, in int) (mlxc.Linear, error) {
		a, err := e.keep(mlxc.FromFloat32(data, out, in))
		if err != nil || c.Quantization == nil {
			return mlxc.Linear{W: a}, err
		}
		q := c.Quantization
		wq, sc, bi, err := e.s.Quantize(a, q.GroupSize, q.Bits)
		if err != nil {
			return mlxc.Linear{}, err
		}
		e.owned = append(e.owned, wq, sc, bi)
		return mlxc.Linear{W: wq, Scales: sc, Biases: bi, GroupSize: q.GroupSize, Bits: q.Bits}, nil
	}
	qd, kd, in := c.QDim(), c.KVDim(), c.IntermediateSize
	for _, L := range w.Layers {
		var b mlxc.BlockWeights
		if b.AttnNorm, err = e.keep(mlxc.FromFloat32(L.AttnNorm, h)); err != nil {
			return err
		}
		if b.MLPNorm, err = e.keep(mlxc.FromFloat32(L.MLPNorm, h)); err != nil {
			return err
		}
		for _, p := range []struct {
			dst     *mlxc.Linear
			data    []float32
			out, in int
		}{{&b.Q, L.Wq, qd, h}, {&b.K, L.Wk, kd, h}, {&b.V, L.Wv, kd, h}, {&b.O, L.Wo, h, qd},
			{&b.Gate, L.Wgate, in, h}, {&b.Up, L.Wup, in, h}, {&b.Down, L.Wdown, h, in}} {
			if *p.dst, err = lin(p.data, p.out, p.in); err != nil {
				return err
			}
		}
		e.layers = append(e.layers, b)
	}
	// Materialise everything once so steps time compute only.
	return mlxc.Eval(e.owned...)
}

// Info implements Engine.
func (e *MLX) Info() Info {
	dev := "cpu"
	if e.s.GPU() {
		dev = "gpu"
	}
	return Info{Engine: "mlx", Model: e.opt.Model, Device: dev, Config: e.cfg}
}

// Admit implements Engine.
func (e *MLX) Admit(s Sequence) error {
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
	sq := &mlxSeq{id: s.ID, prompt: slices.Clone(s.Prompt), chunk: max(0, s.PrefillChunk), pending: true}
	e.seqs[s.ID] = sq
	e.order = append(e.order, sq)
	return nil
}

// Retire implements Engine.
func (e *MLX) Retire(id SeqID) error {
	sq, ok := e.seqs[id]
	if !ok {
		return fmt.Errorf("sequence %d: %w", id, ErrUnknownSequence)
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
		st.KVBytes += int64(sq.n * 2 * e.cfg.NumHiddenLayers * e.cfg.KVDim() * 4)
	}
	return st
}

// Close implements Engine.
func (e *MLX) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	for _, sq := range e.order {
		sq.free()
	}
	e.seqs, e.order = nil, nil
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
}

func (r *mlxRow) free() {
	for l := range r.k {
		r.k[l].Close()
		r.v[l].Close()
	}
	r.k, r.v = nil, nil
	r.tok.Close()
	r.logits.Close()
}

// Step implements Engine.
func (e *MLX) Step(ctx context.Context) (StepResult, error) {
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
	if len(rows) > 0 {
		start := time.Now()
		err := e.forward(ctx, rows)
		res.Wall = time.Since(start)
		if err != nil {
			for _, r := range rows {
				r.free()
			}
			return StepResult{}, err
		}
	}
	for _, r := range rows {
		sq := r.sq
		out := SeqOutput{ID: sq.id, Token: NoToken, Context: sq.n + r.count}
		if sq.pending {
			out.Prefill = r.count
		}
		for l := range sq.k {
			sq.k[l].Close()
			sq.v[l].Close()
		}
		sq.k, sq.v, r.k, r.v = r.k, r.v, nil, nil
		sq.n += r.count
		if sq.n >= len(sq.prompt) {
			t, err := r.tok.Int32()
			if err != nil {
				return StepResult{}, err
			}
			out.Token = t[0]
			if e.opt.RecordLogits {
				if out.Logits, err = r.logits.Float32(); err != nil {
					return StepResult{}, err
				}
			}
			sq.pending = false
			sq.lastTok = out.Token
		}
		r.free()
		res.Outputs = append(res.Outputs, out)
	}
	for _, sq := range failing {
		sq.err = fmt.Errorf("sequence %d: %w (%d tokens)", sq.id, ErrContextFull, e.maxCtx)
		res.Outputs = append(res.Outputs, SeqOutput{ID: sq.id, Context: sq.n, Err: sq.err})
		sq.free()
	}
	return res, nil
}

// forward builds the step's lazy graph and evaluates it at once. Rows with
// the same cached length and the same number of new tokens share one Block
// call per layer (their caches stacked along the batch axis), since Block
// shares one offset across its rows; rows of other lengths get their own
// calls rather than padding and masks.
func (e *MLX) forward(ctx context.Context, rows []*mlxRow) error {
	type key struct{ n, count int }
	var keys []key
	groups := map[key][]*mlxRow{}
	for _, r := range rows {
		k := key{r.sq.n, r.count}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], r)
	}
	var outs []*mlxc.Array
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		g := groups[k]
		if err := e.group(g, k.n, k.count); err != nil {
			return err
		}
		for _, r := range g {
			outs = append(outs, r.tok, r.logits)
			outs = append(outs, r.k...)
			outs = append(outs, r.v...)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t0 := time.Now()
	err := mlxc.Eval(outs...)
	e.evalTime += time.Since(t0)
	return err
}

// group builds the graph of rows that all hold n cached tokens and feed
// count new ones.
func (e *MLX) group(g []*mlxRow, n, count int) error {
	h, G := e.cfg.HiddenSize, len(g)
	ids := make([]int32, 0, G*count)
	for _, r := range g {
		if r.sq.pending {
			ids = append(ids, r.sq.prompt[n:n+count]...)
		} else {
			ids = append(ids, r.sq.lastTok)
		}
	}
	idx, err := mlxc.FromInt32(ids, len(ids))
	if err != nil {
		return err
	}
	x0, err := e.s.Take(e.embed, idx, 0)
	idx.Close()
	if err != nil {
		return err
	}
	x, err := e.s.Reshape(x0, G, count, h)
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
	logits, err := e.s.Matmul(n2, e.headT)
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
