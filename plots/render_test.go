package plots

import (
	"bytes"
	"flag"
	"fmt"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	update = flag.Bool("update", false, "rewrite the golden images under testdata/")
	keep   = flag.String("keep", "", "also write every rendered test figure into this directory, for viewing")
)

// waits draws n window waits in ms: a point mass at zero and a lognormal
// body, predicted runs a little faster than measured ones.
func waits(rng *rand.Rand, n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		if rng.Float64() < 0.1 {
			continue
		}
		v[i] = scale * math.Exp(rng.NormFloat64()*0.8)
	}
	return v
}

func sampleSweep(group string, src Source, bias float64) SweepSeries {
	s := SweepSeries{Group: group, Source: src}
	for _, w := range []float64{0, 2, 5, 10, 20, 50} {
		m := bias * (1 + w*0.45)
		p := bias * (3 + w*0.95)
		o := bias * 40 / (1 + w/5)
		s.X = append(s.X, w)
		s.Mean.Y = append(s.Mean.Y, m)
		s.P95.Y = append(s.P95.Y, p)
		s.Overhead.Y = append(s.Overhead.Y, o)
		if src == Measured {
			s.Mean.Lo, s.Mean.Hi = append(s.Mean.Lo, m*0.9), append(s.Mean.Hi, m*1.12)
			s.P95.Lo, s.P95.Hi = append(s.P95.Lo, p*0.85), append(s.P95.Hi, p*1.2)
			s.Overhead.Lo, s.Overhead.Hi = append(s.Overhead.Lo, o*0.9), append(s.Overhead.Hi, o*1.1)
		}
	}
	return s
}

func sampleTimeline(rng *rand.Rand, group string, src Source, n int, rate float64) TimelineSeries {
	s := TimelineSeries{Group: group, Source: src}
	q, run := 0.0, 0.0
	for i := 0; i < n; i++ {
		t := float64(i) * 0.01
		q = math.Max(0, q+float64(rng.IntN(5))-2*rate)
		run = math.Min(32, math.Max(0, run+float64(rng.IntN(3))-1))
		s.Queue.T, s.Queue.V = append(s.Queue.T, t), append(s.Queue.V, q)
		s.Running.T, s.Running.V = append(s.Running.T, t), append(s.Running.V, run)
		if i%5 == 0 {
			s.Batches.T = append(s.Batches.T, t)
			s.Batches.V = append(s.Batches.V, float64(1+rng.IntN(int(8*rate))))
		}
	}
	return s
}

func batchSizes(rng *rand.Rand, n, max int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(1 + min(rng.IntN(max), rng.IntN(max)))
	}
	return v
}

// figures returns one figure of every kind, from deterministic synthetic
// data shaped like a simulator (predicted) and replay (measured) pair.
func figures() map[string]Figure {
	rng := rand.New(rand.NewPCG(1, 2))
	cdf := CDFPlot{
		Title: "Window wait: fcfs vs adaptive", Metric: "window wait", Unit: "ms", LogX: true,
		Series: []Sample{
			{Group: "fcfs", Source: Predicted, Values: waits(rng, 5000, 4)},
			{Group: "fcfs", Source: Measured, Values: waits(rng, 5000, 5)},
			{Group: "adaptive", Source: Predicted, Values: waits(rng, 5000, 1.5)},
			{Group: "adaptive", Source: Measured, Values: waits(rng, 5000, 2)},
		},
	}
	sweep := SweepPlot{
		Title: "Window sweep", XLabel: "window (ms)", Metric: "window wait", Unit: "ms",
		Series: []SweepSeries{
			sampleSweep("fcfs", Predicted, 1), sampleSweep("fcfs", Measured, 1.1),
			sampleSweep("adaptive", Predicted, 0.6), sampleSweep("adaptive", Measured, 0.7),
		},
	}
	timeline := TimelinePlot{
		Title: "Run timeline",
		Series: []TimelineSeries{
			sampleTimeline(rng, "fcfs", Predicted, 3000, 1),
			sampleTimeline(rng, "fcfs", Measured, 3000, 0.98),
		},
	}
	hist := HistogramPlot{
		Title: "Dispatched batch sizes",
		Series: []Sample{
			{Group: "fcfs", Source: Predicted, Values: batchSizes(rng, 2000, 16)},
			{Group: "fcfs", Source: Measured, Values: batchSizes(rng, 2000, 14)},
		},
	}
	pair := func(s []Sample) []Sample { return s[:2] }
	return map[string]Figure{
		"cdf":      cdf,
		"sweep":    sweep,
		"timeline": timeline,
		"hist":     hist,
		"panel": Panel{
			Title:     "fcfs: simulator prediction vs replay measurement",
			CDF:       CDFPlot{Metric: "window wait", Unit: "ms", LogX: true, Series: pair(cdf.Series)},
			Sweep:     SweepPlot{XLabel: "window (ms)", Metric: "window wait", Unit: "ms", Series: sweep.Series[:2]},
			Timeline:  timeline,
			Histogram: hist,
		},
	}
}

func TestRenderEveryKindPNGSize(t *testing.T) {
	for name, fig := range figures() {
		sizes := []Options{{Width: 480, Height: 320}, {Width: 300, Height: 200, DPI: 48}}
		if *keep != "" {
			sizes = append(sizes, Options{}, Options{Width: 640, Height: 480, DPI: 144})
		}
		for _, o := range sizes {
			var buf bytes.Buffer
			require.NoError(t, Write(&buf, "png", fig, o), name)
			img, err := png.Decode(bytes.NewReader(buf.Bytes()))
			require.NoError(t, err, name)
			o, _ = o.withDefaults()
			assert.Equal(t, o.Width, img.Bounds().Dx(), name)
			assert.Equal(t, o.Height, img.Bounds().Dy(), name)
			if *keep != "" {
				require.NoError(t, os.WriteFile(filepath.Join(*keep, name+"_"+itoa(o.Width)+".png"), buf.Bytes(), 0o644))
			}
		}
	}
}

func itoa(i int) string { return fmt.Sprintf("%04d", i) }

func TestPanelWithoutSomeParts(t *testing.T) {
	figs := figures()
	p := figs["panel"].(Panel)
	p.Sweep = SweepPlot{}
	p.Timeline = TimelinePlot{}
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, "png", p, Options{Width: 800, Height: 400}))
	img, err := png.Decode(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	assert.Equal(t, 800, img.Bounds().Dx())
	assert.Equal(t, 400, img.Bounds().Dy())
	if *keep != "" {
		require.NoError(t, os.WriteFile(filepath.Join(*keep, "panel_two.png"), buf.Bytes(), 0o644))
	}
}
