package plots

import (
	"bytes"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGolden compares two small renderings with reviewed images under
// testdata/. Text rasterisation may differ in a few edge pixels between Go
// versions, so a handful of differing pixels is tolerated; a moved line,
// legend or label changes far more.
func TestGolden(t *testing.T) {
	figs := figures()
	for _, name := range []string{"cdf", "panel"} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, Write(&buf, "png", figs[name], Options{Width: 400, Height: 300}))
			path := filepath.Join("testdata", name+".golden.png")
			if *update {
				require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test -update to create it")
			diff, err := pixelDiff(want, buf.Bytes())
			require.NoError(t, err)
			assert.LessOrEqual(t, diff, 0.002, "fraction of differing pixels; if the change is intended, run go test -update and review the image")
		})
	}
}

// pixelDiff returns the fraction of pixels whose colour differs by more
// than 1/16 of full scale in any channel.
func pixelDiff(a, b []byte) (float64, error) {
	ia, err := png.Decode(bytes.NewReader(a))
	if err != nil {
		return 0, err
	}
	ib, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	if ia.Bounds() != ib.Bounds() {
		return 1, nil
	}
	r := ia.Bounds()
	var bad int
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, _ := ia.At(x, y).RGBA()
			r2, g2, b2, _ := ib.At(x, y).RGBA()
			if far(r1, r2) || far(g1, g2) || far(b1, b2) {
				bad++
			}
		}
	}
	return float64(bad) / float64(r.Dx()*r.Dy()), nil
}

func far(a, b uint32) bool { return max(a, b)-min(a, b) > 0xffff/16 }

func TestPixelDiffDetectsChange(t *testing.T) {
	figs := figures()
	var a, b bytes.Buffer
	require.NoError(t, Write(&a, "png", figs["cdf"], Options{Width: 400, Height: 300}))
	other := figs["cdf"].(CDFPlot)
	other.LogX = false
	require.NoError(t, Write(&b, "png", other, Options{Width: 400, Height: 300}))
	d, err := pixelDiff(a.Bytes(), b.Bytes())
	require.NoError(t, err)
	assert.Greater(t, d, 0.002, "a different figure must fail the golden tolerance")
}

func TestDeterministic(t *testing.T) {
	fig := figures()["panel"]
	for _, format := range Formats {
		var a, b bytes.Buffer
		require.NoError(t, Write(&a, format, fig, Options{Width: 300, Height: 200}), format)
		require.NoError(t, Write(&b, format, fig, Options{Width: 300, Height: 200}), format)
		assert.True(t, bytes.Equal(a.Bytes(), b.Bytes()), "%s output differs between two identical renders", format)
		assert.Greater(t, a.Len(), 1000, format)
		if format == "pdf" {
			// The writer stamps wall-clock dates; two renders in the same
			// second would hide that, so check the fixed stamp directly.
			assert.Contains(t, a.String(), "/CreationDate (D:20000101000000)")
			assert.Contains(t, a.String(), "/ModDate (D:20000101000000)")
		}
	}
}

func TestFormats(t *testing.T) {
	fig := figures()["hist"]
	heads := map[string]string{"png": "\x89PNG", "svg": "<?xml", "pdf": "%PDF"}
	for _, format := range Formats {
		var buf bytes.Buffer
		require.NoError(t, Write(&buf, format, fig, Options{Width: 300, Height: 200}))
		assert.True(t, bytes.HasPrefix(buf.Bytes(), []byte(heads[format])), "%s starts with %q", format, buf.Bytes()[:8])
	}
	assert.EqualError(t, Write(io.Discard, "gif", fig, Options{}), `unknown output format "gif" (want png, svg or pdf)`)

	for path, want := range map[string]string{"a.png": "png", "b.SVG": "svg", "dir.x/c.pdf": "pdf", "noext": "png"} {
		got, err := FormatOf(path)
		require.NoError(t, err, path)
		assert.Equal(t, want, got, path)
	}
	_, err := FormatOf("out.jpg")
	assert.EqualError(t, err, `out.jpg: unknown output format ".jpg" (want .png, .svg or .pdf)`)
}

func TestOptionsErrors(t *testing.T) {
	fig := figures()["hist"]
	for _, tt := range []struct {
		o   Options
		err string
	}{
		{Options{Width: 50, Height: 800}, "size 50x800: width and height must be between 100 and 10000 pixels"},
		{Options{Width: 1200, Height: 20000}, "size 1200x20000: width and height must be between 100 and 10000 pixels"},
		{Options{DPI: -1}, "dpi -1: must be between 1 and 1200"},
	} {
		assert.EqualError(t, Write(io.Discard, "png", fig, tt.o), tt.err)
	}
}

func TestBadInput(t *testing.T) {
	nan := math.NaN()
	good := SweepSeries{Group: "fcfs", X: []float64{1, 2}, Mean: Curve{Y: []float64{1, 2}}, P95: Curve{Y: []float64{2, 3}}}
	short := good
	short.P95 = Curve{Y: []float64{2}}
	badCI := good
	badCI.Mean = Curve{Y: []float64{1, 2}, Lo: []float64{0, 3}, Hi: []float64{2, 4}}
	halfCI := good
	halfCI.Mean = Curve{Y: []float64{1, 2}, Lo: []float64{0, 1}}
	tests := []struct {
		name string
		fig  Figure
		err  string
	}{
		{"cdf no series", CDFPlot{}, "cdf: no series"},
		{"cdf empty series", CDFPlot{Series: []Sample{{Group: "fcfs", Source: Predicted}}}, `cdf: series "fcfs (predicted)": cdf: empty sample`},
		{"cdf NaN", CDFPlot{Series: []Sample{{Group: "fcfs", Values: []float64{1, nan}}}}, `cdf: series "fcfs (measured)": cdf: value 1 is NaN; values must be finite`},
		{"cdf log of zeros", CDFPlot{LogX: true, Series: []Sample{{Group: "a", Values: []float64{0, 0}}}}, `cdf: series "a (measured)": log x needs positive values, all are ≤ 0`},
		{"cdf bad source", CDFPlot{Series: []Sample{{Source: 7, Values: []float64{1}}}}, "cdf: series 0: unknown source 7"},
		{"sweep no series", SweepPlot{}, "sweep: no series"},
		{"sweep empty", SweepPlot{Series: []SweepSeries{{Group: "a"}}}, `sweep: series "a (measured)": empty series`},
		{"sweep mismatched", SweepPlot{Series: []SweepSeries{short}}, `sweep: series "fcfs (measured)" p95: 1 values for 2 x values`},
		{"sweep CI", SweepPlot{Series: []SweepSeries{badCI}}, `sweep: series "fcfs (measured)" mean: error bars: point 1: interval [3, 4] does not contain 2`},
		{"sweep half CI", SweepPlot{Series: []SweepSeries{halfCI}}, `sweep: series "fcfs (measured)" mean: error bars: 2 centres but 2 lower and 0 upper bounds`},
		{"timeline none", TimelinePlot{}, "timeline: no series"},
		{"timeline no traces", TimelinePlot{Series: []TimelineSeries{{Group: "a"}}}, "timeline: no series has a queue, running or batch trace"},
		{"timeline mismatched", TimelinePlot{Series: []TimelineSeries{{Group: "a", Queue: Trace{T: []float64{0, 1}, V: []float64{3}}}}}, `timeline: series "a (measured)" queue depth (requests): decimate: 2 x values but 1 y values`},
		{"histogram none", HistogramPlot{}, "histogram: no series"},
		{"histogram fraction", HistogramPlot{Series: []Sample{{Group: "a", Values: []float64{1.5}}}}, `histogram: series "a (measured)": histogram: batch size 0 is 1.5; sizes must be non-negative integers`},
		{"panel empty", Panel{}, "panel: nothing to draw: CDF, sweep, timeline and histogram all have no series"},
		{"panel bad part", Panel{CDF: figures()["cdf"].(CDFPlot), Sweep: SweepPlot{Series: []SweepSeries{short}}}, `panel: sweep: series "fcfs (measured)" p95: 1 values for 2 x values`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.EqualError(t, Write(io.Discard, "png", tt.fig, Options{Width: 300, Height: 200}), tt.err)
		})
	}
}

func TestSave(t *testing.T) {
	dir := t.TempDir()
	fig := figures()["hist"]
	o := Options{Width: 300, Height: 200}
	path := filepath.Join(dir, "h.svg")
	require.NoError(t, Save(path, fig, o, false))
	first, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(first, []byte("<?xml")))

	require.NoError(t, os.WriteFile(path, []byte("keep me"), 0o644))
	assert.EqualError(t, Save(path, fig, o, false), path+": file exists (use --force to replace it)")
	kept, _ := os.ReadFile(path)
	assert.Equal(t, "keep me", string(kept))

	require.NoError(t, Save(path, fig, o, true))
	replaced, _ := os.ReadFile(path)
	assert.Equal(t, first, replaced)

	assert.Error(t, Save(filepath.Join(dir, "x.png"), HistogramPlot{}, o, false))
	_, err = os.Stat(filepath.Join(dir, "x.png"))
	assert.True(t, os.IsNotExist(err), "a failed render must leave no file")
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1, "no temporary files left behind")
}
