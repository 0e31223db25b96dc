package realengine

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// CPUOptions configure the pure-Go engine.
type CPUOptions struct {
	// Model is recorded in Info (preset name or directory).
	Model string
	// MaxContext caps prompt plus generated tokens per sequence; 0 means
	// the config's max_position_embeddings.
	MaxContext int
	// Threads bounds the goroutines of the attention loops; 0 means
	// GOMAXPROCS. Matrix products use gonum's BLAS, which picks its own.
	Threads int
	// RecordLogits copies each sequence's logits into its SeqOutput.
	RecordLogits bool
}

// CPU is the pure-Go engine: float32 matrix products through gonum's BLAS,
// a per-sequence KV cache, and all sequences of a step stacked into one
// matrix so that projections and the MLP cost grow with the tokens in the
// step and attention with each sequence's context.
type CPU struct {
	cfg     Config
	w       *Weights
	opt     CPUOptions
	invFreq []float32
	seqs    map[SeqID]*cpuSeq
	order   []*cpuSeq // admission order
	closed  bool
	scratch cpuScratch
}

type cpuSeq struct {
	id      SeqID
	prompt  []int32
	hint    int
	chunk   int  // prompt tokens per step, 0 for all at once
	pending bool // prompt not fully in the cache yet
	err     error
	n       int         // tokens committed to the cache
	k, v    [][]float32 // per layer, [capacity*kvDim]
	last    int32
}

// cpuScratch is reused from step to step so a steady state allocates little.
type cpuScratch struct {
	x, xn, q, k, v, attn, o, gate, up []float32
	last, logits                      []float32
	scores                            [][]float32
}

// NewCPU builds a CPU engine over weights w of shape c.
func NewCPU(c Config, w *Weights, opt CPUOptions) (*CPU, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := w.check(c); err != nil {
		return nil, err
	}
	if opt.MaxContext <= 0 || opt.MaxContext > c.MaxPositionEmbeddings {
		opt.MaxContext = c.MaxPositionEmbeddings
	}
	if opt.Threads <= 0 {
		opt.Threads = runtime.GOMAXPROCS(0)
	}
	inv := c.RopeInvFreq()
	e := &CPU{cfg: c, w: w, opt: opt, seqs: map[SeqID]*cpuSeq{}, invFreq: make([]float32, len(inv))}
	for i, f := range inv {
		e.invFreq[i] = float32(f)
	}
	return e, nil
}

// Info implements Engine.
func (e *CPU) Info() Info {
	return Info{Engine: "cpu", Model: e.opt.Model, Device: fmt.Sprintf("cpu (%d threads)", e.opt.Threads), DType: "float32", Config: e.cfg}
}

// Admit implements Engine.
func (e *CPU) Admit(s Sequence) error {
	if e.closed {
		return ErrClosed
	}
	if _, dup := e.seqs[s.ID]; dup {
		return fmt.Errorf("sequence %d: already admitted", s.ID)
	}
	if len(s.Prompt) == 0 {
		return fmt.Errorf("sequence %d: empty prompt", s.ID)
	}
	if len(s.Prompt) >= e.opt.MaxContext {
		return fmt.Errorf("sequence %d: prompt of %d tokens leaves no room in a context of %d", s.ID, len(s.Prompt), e.opt.MaxContext)
	}
	for i, t := range s.Prompt {
		if t < 0 || int(t) >= e.cfg.VocabSize {
			return fmt.Errorf("sequence %d: token %d at position %d outside vocabulary of %d", s.ID, t, i, e.cfg.VocabSize)
		}
	}
	sq := &cpuSeq{id: s.ID, prompt: slices.Clone(s.Prompt), hint: max(0, s.MaxNewTokens), chunk: max(0, s.PrefillChunk), pending: true}
	e.seqs[s.ID] = sq
	e.order = append(e.order, sq)
	return nil
}

// Retire implements Engine.
func (e *CPU) Retire(id SeqID) error {
	sq, ok := e.seqs[id]
	if !ok {
		return fmt.Errorf("sequence %d: %w", id, ErrUnknownSequence)
	}
	sq.k, sq.v = nil, nil
	delete(e.seqs, id)
	e.order = slices.DeleteFunc(e.order, func(s *cpuSeq) bool { return s == sq })
	return nil
}

// Stats implements Engine.
func (e *CPU) Stats() Stats {
	var st Stats
	st.Sequences = len(e.seqs)
	for _, sq := range e.order {
		if sq.pending {
			st.Pending++
		}
		st.KVTokens += sq.n
		for l := range sq.k {
			st.KVBytes += int64(4 * (cap(sq.k[l]) + cap(sq.v[l])))
		}
	}
	return st
}

// Close implements Engine.
func (e *CPU) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	e.seqs = nil
	e.order = nil
	e.scratch = cpuScratch{}
	return nil
}

// stepRow ties a block of rows of the step's activation matrix to a sequence.
type stepRow struct {
	sq    *cpuSeq
	row   int // first row in the step's matrix
	count int // rows (prompt tokens for a prefill, 1 for a decode)
	pos   int // position of the first row
}

// Step implements Engine.
func (e *CPU) Step(ctx context.Context) (StepResult, error) {
	if e.closed {
		return StepResult{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return StepResult{}, err
	}
	var res StepResult
	var blocks []stepRow
	var failing []*cpuSeq
	rows := 0
	// Prefills first, then decodes, each in admission order.
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
			if sq.n+count > e.opt.MaxContext {
				failing = append(failing, sq)
				continue
			}
			blocks = append(blocks, stepRow{sq: sq, row: rows, count: count, pos: sq.n})
			rows += count
			if sq.pending {
				res.PrefillTokens += count
			} else {
				res.DecodeSeqs++
				res.KVTokens += sq.n
			}
		}
	}
	var tokens []int32
	if rows > 0 {
		start := time.Now()
		var err error
		tokens, err = e.forward(ctx, blocks, rows)
		if err != nil {
			return StepResult{}, err
		}
		res.Wall = time.Since(start)
	}
	// Commit only now, so a cancelled step leaves every cache as it was.
	ti := 0
	for _, b := range blocks {
		sq := b.sq
		out := SeqOutput{ID: sq.id, Token: NoToken, Context: sq.n + b.count}
		if sq.pending {
			out.Prefill = b.count
		}
		sq.n += b.count
		if sq.n >= len(sq.prompt) {
			out.Token = tokens[ti]
			if e.opt.RecordLogits {
				v := e.cfg.VocabSize
				out.Logits = slices.Clone(e.scratch.logits[ti*v : (ti+1)*v])
			}
			ti++
			sq.pending = false
			sq.last = out.Token
		}
		res.Outputs = append(res.Outputs, out)
	}
	// Failures too are applied only once the step stands, so a cancelled
	// step does not swallow them.
	for _, sq := range failing {
		sq.err = fmt.Errorf("sequence %d: %w (%d tokens)", sq.id, ErrContextFull, e.opt.MaxContext)
		res.Outputs = append(res.Outputs, SeqOutput{ID: sq.id, Context: sq.n, Err: sq.err})
		sq.k, sq.v, sq.n = nil, nil, 0
	}
	return res, nil
}

func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// reserve makes room in sq's caches for need positions in total.
func (e *CPU) reserve(sq *cpuSeq, need int) {
	kvDim := e.cfg.KVDim()
	if sq.k == nil {
		sq.k = make([][]float32, e.cfg.NumHiddenLayers)
		sq.v = make([][]float32, e.cfg.NumHiddenLayers)
	}
	if cap(sq.k[0]) >= need*kvDim {
		return
	}
	// The hint sizes the cache once; without it, double.
	c := max(need, len(sq.prompt)+sq.hint+1, 2*cap(sq.k[0])/kvDim)
	c = min(c, e.opt.MaxContext)
	for l := range sq.k {
		nk := make([]float32, c*kvDim)
		copy(nk, sq.k[l][:sq.n*kvDim])
		nv := make([]float32, c*kvDim)
		copy(nv, sq.v[l][:sq.n*kvDim])
		sq.k[l], sq.v[l] = nk, nv
	}
}

// forward runs the stacked rows through the model and returns the greedy
// token of each block that produces one (all but middle prompt chunks), in
// block order; scratch.logits holds their logits.
func (e *CPU) forward(ctx context.Context, blocks []stepRow, rows int) ([]int32, error) {
	c := e.cfg
	h, qDim, kvDim, im := c.HiddenSize, c.QDim(), c.KVDim(), c.IntermediateSize
	s := &e.scratch
	s.x = grow(s.x, rows*h)
	s.xn = grow(s.xn, rows*h)
	s.q = grow(s.q, rows*qDim)
	s.k = grow(s.k, rows*kvDim)
	s.v = grow(s.v, rows*kvDim)
	s.attn = grow(s.attn, rows*qDim)
	s.o = grow(s.o, rows*h)
	s.gate = grow(s.gate, rows*im)
	s.up = grow(s.up, rows*im)
	for _, b := range blocks {
		e.reserve(b.sq, b.pos+b.count)
		for i := 0; i < b.count; i++ {
			tok := b.sq.last
			if b.sq.pending {
				tok = b.sq.prompt[b.pos+i]
			}
			copy(s.x[(b.row+i)*h:(b.row+i+1)*h], e.w.Embed[int(tok)*h:(int(tok)+1)*h])
		}
	}
	eps := float32(c.RMSNormEps)
	for li := range e.w.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l := &e.w.Layers[li]
		rmsNorm(s.xn, s.x, l.AttnNorm, rows, h, eps)
		e.matmulT(s.q, s.xn, l.Wq, rows, h, qDim)
		e.matmulT(s.k, s.xn, l.Wk, rows, h, kvDim)
		e.matmulT(s.v, s.xn, l.Wv, rows, h, kvDim)
		for _, b := range blocks {
			for i := 0; i < b.count; i++ {
				r, pos := b.row+i, b.pos+i
				e.rope(s.q[r*qDim:(r+1)*qDim], pos)
				e.rope(s.k[r*kvDim:(r+1)*kvDim], pos)
			}
			copy(b.sq.k[li][b.pos*kvDim:], s.k[b.row*kvDim:(b.row+b.count)*kvDim])
			copy(b.sq.v[li][b.pos*kvDim:], s.v[b.row*kvDim:(b.row+b.count)*kvDim])
		}
		e.attention(li, blocks)
		e.matmulT(s.o, s.attn, l.Wo, rows, qDim, h)
		addInto(s.x, s.o)
		rmsNorm(s.xn, s.x, l.MLPNorm, rows, h, eps)
		e.matmulT(s.gate, s.xn, l.Wgate, rows, h, im)
		e.matmulT(s.up, s.xn, l.Wup, rows, h, im)
		for i, g := range s.gate {
			s.gate[i] = g / (1 + float32(math.Exp(float64(-g)))) * s.up[i]
		}
		e.matmulT(s.o, s.gate, l.Wdown, rows, im, h)
		addInto(s.x, s.o)
	}
	// Only the last row of a block that ends its prompt or decodes needs
	// logits; a block holding a middle chunk of a prompt produces no token.
	nb := 0
	s.last = grow(s.last, len(blocks)*h)
	for _, b := range blocks {
		if b.sq.pending && b.pos+b.count < len(b.sq.prompt) {
			continue
		}
		r := b.row + b.count - 1
		copy(s.last[nb*h:(nb+1)*h], s.x[r*h:(r+1)*h])
		nb++
	}
	if nb == 0 {
		return nil, nil
	}
	rmsNorm(s.xn, s.last, e.w.Norm, nb, h, eps)
	s.logits = grow(s.logits, nb*c.VocabSize)
	e.matmulT(s.logits, s.xn[:nb*h], e.w.Head(), nb, h, c.VocabSize)
	tokens := make([]int32, nb)
	for i := range tokens {
		row := s.logits[i*c.VocabSize : (i+1)*c.VocabSize]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		tokens[i] = int32(best)
	}
	return tokens, nil
}

// attention fills scratch.attn for every block from the sequences' caches
// (already holding this step's keys and values), one (block, head) pair per
// work item spread over the engine's threads.
func (e *CPU) attention(li int, blocks []stepRow) {
	c := e.cfg
	hd, qDim, kvDim := c.HeadDim, c.QDim(), c.KVDim()
	nh := c.NumAttentionHeads
	group := nh / c.NumKeyValueHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	s := &e.scratch
	items := len(blocks) * nh
	workers := min(e.opt.Threads, items)
	for len(s.scores) < workers {
		s.scores = append(s.scores, nil)
	}
	work := func(wid, item int) {
		b := blocks[item/nh]
		hh := item % nh
		kvh := hh / group
		ctxLen := b.pos + b.count
		sc := grow(s.scores[wid], b.count*ctxLen)
		s.scores[wid] = sc
		q := blas32.General{Rows: b.count, Cols: hd, Stride: qDim, Data: s.q[b.row*qDim+hh*hd:]}
		k := blas32.General{Rows: ctxLen, Cols: hd, Stride: kvDim, Data: b.sq.k[li][kvh*hd:]}
		v := blas32.General{Rows: ctxLen, Cols: hd, Stride: kvDim, Data: b.sq.v[li][kvh*hd:]}
		scores := blas32.General{Rows: b.count, Cols: ctxLen, Stride: ctxLen, Data: sc}
		gemm(blas.Trans, scale, q, k, scores, 1)
		for i := 0; i < b.count; i++ {
			// Causal: row i sees positions up to b.pos+i.
			row := sc[i*ctxLen : i*ctxLen+b.pos+i+1]
			softmax(row)
			clear(sc[i*ctxLen+b.pos+i+1 : (i+1)*ctxLen])
		}
		out := blas32.General{Rows: b.count, Cols: hd, Stride: qDim, Data: s.attn[b.row*qDim+hh*hd:]}
		gemm(blas.NoTrans, 1, scores, v, out, 1)
	}
	if workers <= 1 {
		for it := 0; it < items; it++ {
			work(0, it)
		}
		return
	}
	var wg sync.WaitGroup
	for wid := 0; wid < workers; wid++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := wid; it < items; it += workers {
				work(wid, it)
			}
		}()
	}
	wg.Wait()
}

func (e *CPU) rope(x []float32, pos int) {
	hd := e.cfg.HeadDim
	half := hd / 2
	for base := 0; base < len(x); base += hd {
		for i := 0; i < half; i++ {
			// float64 angle: position times frequency loses precision in
			// float32 at long contexts.
			sn, cs := math.Sincos(float64(pos) * float64(e.invFreq[i]))
			a, b := x[base+i], x[base+i+half]
			x[base+i] = a*float32(cs) - b*float32(sn)
			x[base+i+half] = b*float32(cs) + a*float32(sn)
		}
	}
}

func softmax(row []float32) {
	m := row[0]
	for _, v := range row {
		m = max(m, v)
	}
	var sum float32
	for i, v := range row {
		ev := float32(math.Exp(float64(v - m)))
		row[i] = ev
		sum += ev
	}
	inv := 1 / sum
	for i := range row {
		row[i] *= inv
	}
}

func rmsNorm(dst, x, weight []float32, rows, h int, eps float32) {
	for r := 0; r < rows; r++ {
		xr := x[r*h : (r+1)*h]
		var ss float32
		for _, v := range xr {
			ss += v * v
		}
		inv := float32(1 / math.Sqrt(float64(ss/float32(h)+eps)))
		dr := dst[r*h : (r+1)*h]
		for i, v := range xr {
			dr[i] = v * inv * weight[i]
		}
	}
}

func addInto(dst, src []float32) {
	for i, v := range src[:len(dst)] {
		dst[i] += v
	}
}

// matmulT computes dst[rows, out] = x[rows, in] · wᵀ for w in the Hugging
// Face [out, in] layout, over the engine's threads.
func (e *CPU) matmulT(dst, x, w []float32, rows, in, out int) {
	gemm(blas.Trans, 1,
		blas32.General{Rows: rows, Cols: in, Stride: in, Data: x[:rows*in]},
		blas32.General{Rows: out, Cols: in, Stride: in, Data: w},
		blas32.General{Rows: rows, Cols: out, Stride: out, Data: dst[:rows*out]},
		e.opt.Threads)
}

// Tiles small enough that gonum multiplies each one serially (it goes
// parallel from four 64×64 blocks of the output, with GOMAXPROCS
// goroutines of its own).
const tileRows, tileCols = 64, 192

// gemm computes c = alpha·a·op(b) tile by tile on at most threads
// goroutines. The engine thus never runs more goroutines than its threads:
// gonum's own parallel product would occupy every P, and replay's driver
// loop, which needs one free P to wake on time, would be late by a block's
// compute.
func gemm(tB blas.Transpose, alpha float32, a, b, c blas32.General, threads int) {
	rt, ct := (c.Rows+tileRows-1)/tileRows, (c.Cols+tileCols-1)/tileCols
	tile := func(t int) {
		i0, j0 := (t/ct)*tileRows, (t%ct)*tileCols
		i1, j1 := min(i0+tileRows, c.Rows), min(j0+tileCols, c.Cols)
		as := blas32.General{Rows: i1 - i0, Cols: a.Cols, Stride: a.Stride, Data: a.Data[i0*a.Stride:]}
		bs := b
		if tB == blas.Trans {
			bs.Rows, bs.Data = j1-j0, b.Data[j0*b.Stride:]
		} else {
			bs.Cols, bs.Data = j1-j0, b.Data[j0:]
		}
		cs := blas32.General{Rows: i1 - i0, Cols: j1 - j0, Stride: c.Stride, Data: c.Data[i0*c.Stride+j0:]}
		blas32.Gemm(blas.NoTrans, tB, alpha, as, bs, 0, cs)
	}
	n := rt * ct
	workers := min(threads, n)
	if workers <= 1 {
		for t := range n {
			tile(t)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for t := w; t < n; t += workers {
				tile(t)
			}
		})
	}
	wg.Wait()
}
