package realengine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// Layer holds one decoder layer's weights in the Hugging Face layout:
// projection matrices are row-major [out, in].
type Layer struct {
	AttnNorm []float32 // [hidden]
	Wq       []float32 // [num_heads*head_dim, hidden]
	Wk       []float32 // [num_kv_heads*head_dim, hidden]
	Wv       []float32 // [num_kv_heads*head_dim, hidden]
	Wo       []float32 // [hidden, num_heads*head_dim]
	MLPNorm  []float32 // [hidden]
	Wgate    []float32 // [intermediate, hidden]
	Wup      []float32 // [intermediate, hidden]
	Wdown    []float32 // [hidden, intermediate]
}

// Weights is a whole model in float32. With a tied head, LMHead is nil and
// Embed serves as the output projection.
type Weights struct {
	Embed  []float32 // [vocab, hidden]
	Layers []Layer
	Norm   []float32 // [hidden]
	LMHead []float32 // [vocab, hidden], nil when tied
}

// Head is the output projection, [vocab, hidden].
func (w *Weights) Head() []float32 {
	if w.LMHead != nil {
		return w.LMHead
	}
	return w.Embed
}

// matrixSpec names one tensor of the Hugging Face layout and its shape.
type matrixSpec struct {
	name  string
	rows  int
	cols  int // 0 for vectors
	field *[]float32
}

// specs lists every tensor of the model under its Hugging Face name, with a
// pointer to where it lives in w, so loading, saving and random init agree.
func (w *Weights) specs(c Config) []matrixSpec {
	h, q, kv, im := c.HiddenSize, c.QDim(), c.KVDim(), c.IntermediateSize
	s := []matrixSpec{{"model.embed_tokens.weight", c.VocabSize, h, &w.Embed}}
	for i := range w.Layers {
		l := &w.Layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		s = append(s,
			matrixSpec{p + "input_layernorm.weight", h, 0, &l.AttnNorm},
			matrixSpec{p + "self_attn.q_proj.weight", q, h, &l.Wq},
			matrixSpec{p + "self_attn.k_proj.weight", kv, h, &l.Wk},
			matrixSpec{p + "self_attn.v_proj.weight", kv, h, &l.Wv},
			matrixSpec{p + "self_attn.o_proj.weight", h, q, &l.Wo},
			matrixSpec{p + "post_attention_layernorm.weight", h, 0, &l.MLPNorm},
			matrixSpec{p + "mlp.gate_proj.weight", im, h, &l.Wgate},
			matrixSpec{p + "mlp.up_proj.weight", im, h, &l.Wup},
			matrixSpec{p + "mlp.down_proj.weight", h, im, &l.Wdown},
		)
	}
	s = append(s, matrixSpec{"model.norm.weight", h, 0, &w.Norm})
	if !c.TieWordEmbeddings {
		s = append(s, matrixSpec{"lm_head.weight", c.VocabSize, h, &w.LMHead})
	}
	return s
}

func (m matrixSpec) size() int {
	if m.cols == 0 {
		return m.rows
	}
	return m.rows * m.cols
}

// RandomWeights draws a model of shape c from seed: matrices uniform with the
// variance of a 1/sqrt(fan_in) init, so activations keep a sane scale through
// the layers; norm weights near 1 but not equal, so a forward pass that
// forgets them is caught by tests. The same seed gives the same weights.
func RandomWeights(c Config, seed uint64) (*Weights, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.NumParams() > 1<<31 {
		return nil, fmt.Errorf("random weights: %d parameters is more than this engine holds", c.NumParams())
	}
	w := &Weights{Layers: make([]Layer, c.NumHiddenLayers)}
	// Each tensor draws from its own stream (seed, tensor index), so the
	// tensors fill in parallel and the weights do not depend on how many
	// goroutines did it: a 3B-parameter preset loads in about a second on
	// 16 cores instead of ten on one.
	specs := w.specs(c)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(specs)) {
		wg.Go(func() {
			for i := range next {
				s := specs[i]
				r := rand.New(rand.NewPCG(seed, 0x6c6c616d61+uint64(i)))
				v := make([]float32, s.size())
				if s.cols == 0 {
					for j := range v {
						v[j] = float32(1 + 0.1*(2*r.Float64()-1))
					}
				} else {
					// Uniform on [-a, a] has variance a²/3.
					a := math.Sqrt(3 / float64(s.cols))
					for j := range v {
						v[j] = float32(a * (2*r.Float64() - 1))
					}
				}
				*s.field = v
			}
		})
	}
	for i := range specs {
		next <- i
	}
	close(next)
	wg.Wait()
	return w, nil
}

// check verifies that every tensor has the size the config asks for.
func (w *Weights) check(c Config) error {
	if len(w.Layers) != c.NumHiddenLayers {
		return fmt.Errorf("weights have %d layers, config %d", len(w.Layers), c.NumHiddenLayers)
	}
	for _, s := range w.specs(c) {
		if len(*s.field) != s.size() {
			return fmt.Errorf("tensor %s: %d values, want %d", s.name, len(*s.field), s.size())
		}
	}
	return nil
}
