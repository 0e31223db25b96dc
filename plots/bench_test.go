package plots

import (
	"io"
	"math/rand/v2"
	"testing"
)

func tenMillionWaits() []float64 {
	return waits(rand.New(rand.NewPCG(5, 6)), 10_000_000, 4)
}

// BenchmarkCDF10M: exact CDF (sort) plus downsampling of 10 M requests,
// the cost a CDF of a large run pays per series.
func BenchmarkCDF10M(b *testing.B) {
	v := tenMillionWaits()
	b.ReportAllocs()
	for b.Loop() {
		cdf, err := CDF(v)
		if err != nil {
			b.Fatal(err)
		}
		pts, err := DownsampleCDF(cdf, Downsample{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(pts)), "points")
	}
}

func BenchmarkDownsampleCDF10M(b *testing.B) {
	cdf, err := CDF(tenMillionWaits())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DownsampleCDF(cdf, Downsample{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecimateXY10M(b *testing.B) {
	x := make([]float64, 10_000_000)
	y := make([]float64, len(x))
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range x {
		x[i] = float64(i) * 1e-3
		y[i] = float64(rng.IntN(100))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecimateXY(x, y, 1000); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderPanel1200x800 draws the 2×2 panel as a PNG.
func BenchmarkRenderPanel1200x800(b *testing.B) {
	fig := figures()["panel"]
	b.ReportAllocs()
	for b.Loop() {
		if err := Write(io.Discard, "png", fig, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
