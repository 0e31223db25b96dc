package realengine

import (
	"fmt"
	"math"
)

// ReferenceLogits runs the model over tokens one position at a time in
// float64, with the most direct code possible, and returns the logits after
// every position. It is slow on purpose: engines (the CPU engine here, the
// MLX engine behind its build tag) are checked against it.
func ReferenceLogits(c Config, w *Weights, tokens []int32) ([][]float64, error) {
	if err := w.check(c); err != nil {
		return nil, err
	}
	h, hd := c.HiddenSize, c.HeadDim
	nh, nkv := c.NumAttentionHeads, c.NumKeyValueHeads
	group := nh / nkv
	invFreq := c.RopeInvFreq()
	keys := make([][][]float64, c.NumHiddenLayers) // [layer][pos][kvdim]
	vals := make([][][]float64, c.NumHiddenLayers)
	out := make([][]float64, 0, len(tokens))
	for pos, tok := range tokens {
		if tok < 0 || int(tok) >= c.VocabSize {
			return nil, fmt.Errorf("token %d at position %d outside vocabulary of %d", tok, pos, c.VocabSize)
		}
		x := make([]float64, h)
		for i := range x {
			x[i] = float64(w.Embed[int(tok)*h+i])
		}
		for li := range w.Layers {
			l := &w.Layers[li]
			xn := refRMSNorm(x, l.AttnNorm, c.RMSNormEps)
			q := refMatVec(l.Wq, xn)
			k := refMatVec(l.Wk, xn)
			v := refMatVec(l.Wv, xn)
			for hh := 0; hh < nh; hh++ {
				refRope(q[hh*hd:(hh+1)*hd], pos, invFreq)
			}
			for hh := 0; hh < nkv; hh++ {
				refRope(k[hh*hd:(hh+1)*hd], pos, invFreq)
			}
			keys[li] = append(keys[li], k)
			vals[li] = append(vals[li], v)
			attn := make([]float64, nh*hd)
			scale := 1 / math.Sqrt(float64(hd))
			for hh := 0; hh < nh; hh++ {
				kvh := hh / group
				qh := q[hh*hd : (hh+1)*hd]
				scores := make([]float64, pos+1)
				maxS := math.Inf(-1)
				for t := 0; t <= pos; t++ {
					var s float64
					for d := 0; d < hd; d++ {
						s += qh[d] * keys[li][t][kvh*hd+d]
					}
					scores[t] = s * scale
					maxS = math.Max(maxS, scores[t])
				}
				var sum float64
				for t := range scores {
					scores[t] = math.Exp(scores[t] - maxS)
					sum += scores[t]
				}
				for t := range scores {
					p := scores[t] / sum
					for d := 0; d < hd; d++ {
						attn[hh*hd+d] += p * vals[li][t][kvh*hd+d]
					}
				}
			}
			o := refMatVec(l.Wo, attn)
			for i := range x {
				x[i] += o[i]
			}
			xn = refRMSNorm(x, l.MLPNorm, c.RMSNormEps)
			g := refMatVec(l.Wgate, xn)
			u := refMatVec(l.Wup, xn)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
			d := refMatVec(l.Wdown, g)
			for i := range x {
				x[i] += d[i]
			}
		}
		out = append(out, refMatVec(w.Head(), refRMSNorm(x, w.Norm, c.RMSNormEps)))
	}
	return out, nil
}

func refRMSNorm(x []float64, weight []float32, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	r := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * r * float64(weight[i])
	}
	return out
}

// refMatVec computes m·x for a row-major [len(m)/len(x), len(x)] matrix.
func refMatVec(m []float32, x []float64) []float64 {
	n := len(x)
	out := make([]float64, len(m)/n)
	for r := range out {
		var s float64
		for j, v := range m[r*n : (r+1)*n] {
			s += float64(v) * x[j]
		}
		out[r] = s
	}
	return out
}

// refRope rotates pairs (i, i+half), the "rotate_half" convention of
// Hugging Face Llama and of MLX's RoPE with traditional=false.
func refRope(x []float64, pos int, invFreq []float64) {
	half := len(x) / 2
	for i := 0; i < half; i++ {
		ang := float64(pos) * invFreq[i]
		s, co := math.Sincos(ang)
		a, b := x[i], x[i+half]
		x[i] = a*co - b*s
		x[i+half] = b*co + a*s
	}
}
