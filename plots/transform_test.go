package plots

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot"
)

func TestCDF(t *testing.T) {
	tests := []struct {
		name   string
		sample []float64
		want   []Point
		err    string
	}{
		{"ties collapse to the last step", []float64{3, 1, 2, 2}, []Point{{1, 0.25}, {2, 0.75}, {3, 1}}, ""},
		{"single value", []float64{7}, []Point{{7, 1}}, ""},
		{"all equal", []float64{0, 0, 0}, []Point{{0, 1}}, ""},
		{"negative and zero", []float64{0, -1, 5, 0, 2}, []Point{{-1, 0.2}, {0, 0.6}, {2, 0.8}, {5, 1}}, ""},
		{"empty", nil, nil, "cdf: empty sample"},
		{"NaN", []float64{1, math.NaN()}, nil, "cdf: value 1 is NaN; values must be finite"},
		{"Inf", []float64{math.Inf(1)}, nil, "cdf: value 0 is +Inf; values must be finite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.sample)
			got, err := CDF(tt.sample)
			if tt.err != "" {
				assert.EqualError(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, in, tt.sample, "CDF must not reorder its input")
		})
	}
}

func TestQuantileIndex(t *testing.T) {
	cdf := []Point{{1, 0.25}, {2, 0.75}, {3, 1}}
	for q, want := range map[float64]int{0: 0, 0.25: 0, 0.26: 1, 0.5: 1, 0.75: 1, 0.76: 2, 1: 2} {
		assert.Equal(t, want, QuantileIndex(cdf, q), "q=%v", q)
	}
}

func TestDownsampleCDFSmallExact(t *testing.T) {
	var sample []float64
	for i := 1; i <= 20; i++ {
		sample = append(sample, float64(i))
	}
	cdf, err := CDF(sample)
	require.NoError(t, err)
	got, err := DownsampleCDF(cdf, Downsample{Middle: 2, Tail: 0.1, TailCap: 1, Quantiles: []float64{0.5}})
	require.NoError(t, err)
	// min, the 10 % tail bound, the body's single interior level (0.5,
	// also the requested median), the 90 % bound and max.
	assert.Equal(t, []Point{{1, 0.05}, {2, 0.1}, {10, 0.5}, {18, 0.9}, {20, 1}}, got)
}

func TestDownsampleCDFKeepsExtremesQuantilesAndTails(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	sample := make([]float64, 300_000)
	for i := range sample {
		// Rounded so the sample has heavy ties, like millisecond waits.
		sample[i] = math.Round(rng.ExpFloat64()*1000) / 10
	}
	cdf, err := CDF(sample)
	require.NoError(t, err)
	d := Downsample{Middle: 500, TailCap: 150, Quantiles: []float64{0.5, 0.9, 0.99, 0.999, 0.9999}}
	got, err := DownsampleCDF(cdf, d)
	require.NoError(t, err)
	require.Less(t, len(got), len(cdf))
	assert.LessOrEqual(t, len(got), 500+2*150+5+4)

	assert.Equal(t, cdf[0], got[0], "minimum")
	assert.Equal(t, cdf[len(cdf)-1], got[len(got)-1], "maximum")
	original := map[Point]bool{}
	for _, p := range cdf {
		original[p] = true
	}
	for _, p := range got {
		assert.True(t, original[p], "kept point %v is not an original CDF point", p)
	}
	sorted := slices.Clone(sample)
	slices.Sort(sorted)
	for _, q := range d.Quantiles {
		// The q-quantile of the sample (type 1), computed independently.
		want := sorted[int(math.Ceil(q*float64(len(sorted))))-1]
		k := QuantileIndex(got, q)
		assert.Equal(t, want, got[k].X, "quantile %v", q)
		assert.Equal(t, cdf[QuantileIndex(cdf, q)], got[k], "quantile %v", q)
	}
	// Upper tail beyond p99: longer than the cap, so exactly evenly thinned
	// to TailCap points (plus the quantiles that fall inside it).
	hi := cdf[QuantileIndex(cdf, 0.99)].X
	var tail int
	for _, p := range got {
		if p.X >= hi {
			tail++
		}
	}
	assert.GreaterOrEqual(t, tail, 150)
	assert.LessOrEqual(t, tail, 150+3)
}

func TestDownsampleCDFKeepsWholeShortTails(t *testing.T) {
	sample := make([]float64, 50_000)
	for i := range sample {
		sample[i] = float64(i)
	}
	cdf, err := CDF(sample)
	require.NoError(t, err)
	got, err := DownsampleCDF(cdf, Downsample{Middle: 100, TailCap: 1000})
	require.NoError(t, err)
	// Each 1 % tail holds 500 points, under the cap: all kept.
	for i := 0; i < 500; i++ {
		assert.Contains(t, got, cdf[i])
		assert.Contains(t, got, cdf[len(cdf)-1-i])
	}
	assert.Less(t, len(got), 2*501+100+len(DefaultQuantiles)+4)
}

func TestDownsampleCDFSmallInputUnchanged(t *testing.T) {
	cdf := []Point{{1, 0.5}, {2, 1}}
	got, err := DownsampleCDF(cdf, Downsample{})
	require.NoError(t, err)
	assert.Equal(t, cdf, got)
}

func TestDownsampleCDFErrors(t *testing.T) {
	ok := []Point{{1, 0.5}, {2, 1}}
	tests := []struct {
		name string
		cdf  []Point
		d    Downsample
		err  string
	}{
		{"empty", nil, Downsample{}, "downsample: empty cdf"},
		{"not increasing", []Point{{2, 0.5}, {1, 1}}, Downsample{}, "downsample: cdf point 1 (1, 1) does not increase from point 0"},
		{"bad tail", ok, Downsample{Tail: 0.6}, "downsample: tail 0.6 must be in (0, 0.5)"},
		{"bad middle", ok, Downsample{Middle: -1}, "downsample: middle points -1 must be at least 1"},
		{"bad cap", ok, Downsample{TailCap: -3}, "downsample: tail cap -3 must be at least 1"},
		{"bad quantile", ok, Downsample{Quantiles: []float64{1.5}}, "downsample: quantile 1.5 must be in [0, 1]"},
		{"NaN quantile", ok, Downsample{Quantiles: []float64{math.NaN()}}, "downsample: quantile NaN must be in [0, 1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DownsampleCDF(tt.cdf, tt.d)
			assert.EqualError(t, err, tt.err)
		})
	}
}

func TestDecimateXY(t *testing.T) {
	x := []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	y := []float64{0, 5, 1, 2, 9, 3, 4, 4, 4, 0, 7, 1}
	got, err := DecimateXY(x, y, 2)
	require.NoError(t, err)
	assert.Equal(t, []Point{{0, 0}, {4, 9}, {5, 3}, {6, 4}, {9, 0}, {10, 7}, {11, 1}}, got)

	got, err = DecimateXY(x, y, 3) // 12 ≤ 4×3: unchanged
	require.NoError(t, err)
	assert.Len(t, got, 12)

	for _, tt := range []struct {
		name string
		x, y []float64
		b    int
		err  string
	}{
		{"empty", nil, nil, 1, "decimate: empty series"},
		{"lengths", []float64{1, 2}, []float64{1}, 1, "decimate: 2 x values but 1 y values"},
		{"NaN", []float64{1, 2}, []float64{1, math.NaN()}, 1, "decimate y: value 1 is NaN; values must be finite"},
		{"descending", []float64{2, 1}, []float64{1, 1}, 1, "decimate: x value 1 (1) is smaller than value 0 (2); x must be ascending"},
		{"buckets", []float64{1}, []float64{1}, 0, "decimate: buckets 0 must be at least 1"},
	} {
		_, err := DecimateXY(tt.x, tt.y, tt.b)
		assert.EqualError(t, err, tt.err, tt.name)
	}
}

func TestErrorBars(t *testing.T) {
	got, err := ErrorBars([]float64{10, 20, 0.5}, []float64{8, 20, 0.25}, []float64{13, 25, 0.75})
	require.NoError(t, err)
	assert.Equal(t, []ErrorBar{{2, 3}, {0, 5}, {0.25, 0.25}}, got)

	for _, tt := range []struct {
		name      string
		c, lo, hi []float64
		err       string
	}{
		{"lengths", []float64{1}, []float64{1, 2}, []float64{1}, "error bars: 1 centres but 2 lower and 1 upper bounds"},
		{"lo above", []float64{1}, []float64{2}, []float64{3}, "error bars: point 0: interval [2, 3] does not contain 1"},
		{"hi below", []float64{1}, []float64{0}, []float64{0.5}, "error bars: point 0: interval [0, 0.5] does not contain 1"},
		{"NaN", []float64{1}, []float64{math.NaN()}, []float64{2}, "error bars lower bound: value 0 is NaN; values must be finite"},
	} {
		_, err := ErrorBars(tt.c, tt.lo, tt.hi)
		assert.EqualError(t, err, tt.err, tt.name)
	}
}

func TestBatchHistogram(t *testing.T) {
	got, err := BatchHistogram([]float64{1, 1, 2, 4}, 10)
	require.NoError(t, err)
	assert.Equal(t, []Bin{{1, 2, 2, 0.5}, {2, 3, 1, 0.25}, {3, 4, 0, 0}, {4, 5, 1, 0.25}}, got)

	got, err = BatchHistogram([]float64{1, 2, 3, 4, 4}, 2)
	require.NoError(t, err)
	assert.Equal(t, []Bin{{1, 3, 2, 0.4}, {3, 5, 3, 0.6}}, got)

	got, err = BatchHistogram([]float64{1, 2, 3, 4, 5}, 2) // width 3 covers 1..6
	require.NoError(t, err)
	assert.Equal(t, []Bin{{1, 4, 3, 0.6}, {4, 7, 2, 0.4}}, got)

	for _, tt := range []struct {
		name  string
		sizes []float64
		max   int
		err   string
	}{
		{"empty", nil, 5, "histogram: no batch sizes"},
		{"fraction", []float64{1, 2.5}, 5, "histogram: batch size 1 is 2.5; sizes must be non-negative integers"},
		{"negative", []float64{-1}, 5, "histogram: batch size 0 is -1; sizes must be non-negative integers"},
		{"NaN", []float64{math.NaN()}, 5, "histogram: value 0 is NaN; values must be finite"},
		{"bins", []float64{1}, 0, "histogram: max bins 0 must be at least 1"},
	} {
		_, err := BatchHistogram(tt.sizes, tt.max)
		assert.EqualError(t, err, tt.err, tt.name)
	}
}

func TestTicks(t *testing.T) {
	labels := func(ts []plot.Tick) []string {
		var out []string
		for _, t := range ts {
			if t.Label != "" {
				out = append(out, t.Label)
			}
		}
		return out
	}
	assert.Equal(t, []string{"0", "10", "20", "30", "40", "50"}, labels(niceTicks{}.Ticks(0, 50)))
	assert.Equal(t, []string{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"}, labels(niceTicks{}.Ticks(0, 1)))
	assert.Equal(t, []string{"3", "4", "5"}, labels(niceTicks{MinStep: 1}.Ticks(2.5, 5.5)))
	assert.Equal(t, []string{"0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "50", "100"}, labels(logTicks{}.Ticks(0.1, 100)))
	assert.Equal(t, []string{"0.01", "0.1", "1", "10", "100", "1000", "10000"}, labels(logTicks{}.Ticks(0.01, 10000)))
}
