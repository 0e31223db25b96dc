package realengine

import (
	"fmt"
	"math"
)

// MLX affine quantisation (mlx.core.quantize, mode "affine"): each row of a
// [rows, cols] matrix is cut into groups of groupSize consecutive elements;
// element x of a group is stored as an unsigned bits-wide integer q with
// x ≈ scale*q + bias, one scale and bias per group. The q values are packed
// 32/bits to a uint32, the first element in the lowest bits, so a packed
// matrix is [rows, cols*bits/32] and scales and biases are [rows,
// cols/groupSize].

// Dequantize expands an MLX affine-quantised [rows, cols] matrix to float32.
func Dequantize(packed []uint32, scales, biases []float32, rows, cols, groupSize, bits int) ([]float32, error) {
	if bits != 4 && bits != 8 {
		return nil, fmt.Errorf("quantization: bits %d not supported (4 or 8)", bits)
	}
	per := 32 / bits
	if groupSize <= 0 || cols%groupSize != 0 || groupSize%per != 0 {
		return nil, fmt.Errorf("quantization: %d columns do not split into groups of %d", cols, groupSize)
	}
	groups := cols / groupSize
	if len(packed) != rows*cols/per || len(scales) != rows*groups || len(biases) != rows*groups {
		return nil, fmt.Errorf("quantization: %d words, %d scales, %d biases for a %dx%d matrix with %d-bit groups of %d",
			len(packed), len(scales), len(biases), rows, cols, bits, groupSize)
	}
	mask := uint32(1)<<bits - 1
	out := make([]float32, rows*cols)
	for i := range out {
		word := packed[i/per]
		q := word >> (uint(i%per) * uint(bits)) & mask
		g := i / groupSize // rows are whole groups, so this indexes [row, group]
		out[i] = scales[g]*float32(q) + biases[g]
	}
	return out, nil
}

// Quantize is the inverse used to write quantised test models: per group,
// min/max affine quantisation with round to nearest. MLX's own quantize picks
// scale and bias a little differently (it makes the edge of larger magnitude
// exact); any choice is read back the same way by Dequantize, which is what
// defines the format.
func Quantize(w []float32, rows, cols, groupSize, bits int) (packed []uint32, scales, biases []float32, err error) {
	if bits != 4 && bits != 8 {
		return nil, nil, nil, fmt.Errorf("quantization: bits %d not supported (4 or 8)", bits)
	}
	per := 32 / bits
	if len(w) != rows*cols || groupSize <= 0 || cols%groupSize != 0 || groupSize%per != 0 {
		return nil, nil, nil, fmt.Errorf("quantization: cannot split a %dx%d matrix into groups of %d", rows, cols, groupSize)
	}
	levels := float32(uint32(1)<<bits - 1)
	ng := rows * cols / groupSize
	scales = make([]float32, ng)
	biases = make([]float32, ng)
	packed = make([]uint32, rows*cols/per)
	for g := 0; g < ng; g++ {
		grp := w[g*groupSize : (g+1)*groupSize]
		lo, hi := grp[0], grp[0]
		for _, v := range grp {
			lo = min(lo, v)
			hi = max(hi, v)
		}
		scale := (hi - lo) / levels
		scales[g], biases[g] = scale, lo
		for j, v := range grp {
			var q uint32
			if scale > 0 {
				q = uint32(min(levels, max(0, float32(math.Round(float64((v-lo)/scale))))))
			}
			i := g*groupSize + j
			packed[i/per] |= q << (uint(i%per) * uint(bits))
		}
	}
	return packed, scales, biases, nil
}
