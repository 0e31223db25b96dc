package plots

import (
	"slices"
	"testing"
)

// FuzzDownsampleCDF checks the downsampling promises on arbitrary samples:
// only original points, extremes kept, every requested quantile exact.
func FuzzDownsampleCDF(f *testing.F) {
	f.Add([]byte{1, 2, 3, 3, 3, 200, 0, 7}, uint8(2), uint8(1))
	f.Add(make([]byte, 300), uint8(5), uint8(3))
	f.Fuzz(func(t *testing.T, raw []byte, middle, tailCap uint8) {
		if len(raw) == 0 {
			return
		}
		sample := make([]float64, len(raw))
		for i, b := range raw {
			sample[i] = float64(b)
		}
		cdf, err := CDF(sample)
		if err != nil {
			t.Fatal(err)
		}
		qs := []float64{0, 0.1, 0.5, 0.9, 0.99, 1}
		got, err := DownsampleCDF(cdf, Downsample{Middle: int(middle%50) + 1, TailCap: int(tailCap%20) + 1, Tail: 0.05, Quantiles: qs})
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != cdf[0] || got[len(got)-1] != cdf[len(cdf)-1] {
			t.Fatalf("extremes lost: %v … %v", got[0], got[len(got)-1])
		}
		for _, p := range got {
			if _, ok := slices.BinarySearchFunc(cdf, p, func(a, b Point) int {
				switch {
				case a.X < b.X:
					return -1
				case a.X > b.X:
					return 1
				}
				return 0
			}); !ok {
				t.Fatalf("point %v is not in the cdf", p)
			}
		}
		sorted := slices.Clone(sample)
		slices.Sort(sorted)
		for _, q := range qs {
			k := max(0, int(ceilRank(q, len(sorted)))-1)
			if want, have := sorted[k], got[QuantileIndex(got, q)].X; want != have {
				t.Fatalf("quantile %v: want %v, got %v", q, want, have)
			}
		}
	})
}

// ceilRank is the 1-based rank of the type-1 q-quantile of n values.
func ceilRank(q float64, n int) float64 {
	r := q * float64(n)
	c := float64(int(r))
	if c < r {
		c++
	}
	return c
}
