package plots

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgpdf"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Options sets the size of a rendered figure. Width and Height are in
// pixels (for SVG and PDF, in pixels at DPI); fonts and lines scale with the
// smaller side so that a figure reads the same at any size.
type Options struct {
	Width, Height int // default 1200×800
	DPI           int // default 96
}

// Limits on Options, so a typo cannot ask for a gigapixel image.
const (
	MinSize = 100
	MaxSize = 10000
	MaxDPI  = 1200
)

func (o Options) withDefaults() (Options, error) {
	if o.Width == 0 {
		o.Width = 1200
	}
	if o.Height == 0 {
		o.Height = 800
	}
	if o.DPI == 0 {
		o.DPI = 96
	}
	if o.Width < MinSize || o.Width > MaxSize || o.Height < MinSize || o.Height > MaxSize {
		return o, fmt.Errorf("size %dx%d: width and height must be between %d and %d pixels", o.Width, o.Height, MinSize, MaxSize)
	}
	if o.DPI < 1 || o.DPI > MaxDPI {
		return o, fmt.Errorf("dpi %d: must be between 1 and %d", o.DPI, MaxDPI)
	}
	return o, nil
}

// Figure is something this package can draw: CDFPlot, SweepPlot,
// TimelinePlot, HistogramPlot or Panel.
type Figure interface {
	// figure validates the input and lays out the plots.
	figure(st style) (*figure, error)
}

// Formats lists the output formats, by file extension without the dot.
var Formats = []string{"png", "svg", "pdf"}

// FormatOf returns the output format named by path's extension: png, svg
// or pdf; a path without extension is PNG.
func FormatOf(path string) (string, error) {
	ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), "."))
	switch ext {
	case "":
		return "png", nil
	case "png", "svg", "pdf":
		return ext, nil
	}
	return "", fmt.Errorf("%s: unknown output format %q (want .png, .svg or .pdf)", path, "."+ext)
}

// Write renders fig in format ("png", "svg" or "pdf") to w.
func Write(w io.Writer, format string, fig Figure, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	// A pixel is 1/DPI inch, so the canvas has exactly Width×Height pixels.
	cw := vg.Length(o.Width) * vg.Inch / vg.Length(o.DPI)
	ch := vg.Length(o.Height) * vg.Inch / vg.Length(o.DPI)
	var c vg.CanvasWriterTo
	switch format {
	case "png":
		img := image.NewRGBA(image.Rect(0, 0, o.Width, o.Height))
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseDPI(o.DPI), vgimg.UseImage(img))}
	case "svg":
		c = vgsvg.New(cw, ch)
	case "pdf":
		c = vgpdf.New(cw, ch)
	default:
		return fmt.Errorf("unknown output format %q (want png, svg or pdf)", format)
	}
	f, err := fig.figure(newStyle(cw, ch))
	if err != nil {
		return err
	}
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	f.draw(dc)
	if format != "pdf" {
		_, err = c.WriteTo(w)
		return err
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return err
	}
	_, err = w.Write(pdfDates.ReplaceAll(buf.Bytes(), []byte("/$1 (D:20000101000000)")))
	return err
}

// pdfDates matches the wall-clock dates the PDF writer stamps into every
// document. They are replaced by a fixed date of the same length, so the
// cross-reference offsets stay valid and equal inputs give equal files.
var pdfDates = regexp.MustCompile(`/(CreationDate|ModDate) \(D:[0-9]{14}\)`)

// Save renders fig to path in the format its extension names. An existing
// file is replaced only when force is set; the figure is written to a
// temporary file in the same directory and renamed, so a failed run never
// leaves a half-written image.
func Save(path string, fig Figure, o Options, force bool) error {
	format, err := FormatOf(path)
	if err != nil {
		return err
	}
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: file exists (use --force to replace it)", path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	var buf bytes.Buffer
	if err := Write(&buf, format, fig, o); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_ = tmp.Chmod(0o644)        // CreateTemp makes it 0600; outputs are for others to read
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if !force {
		// Checked again right before the rename: another run may have
		// created the file while this one was drawing.
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: file exists (use --force to replace it)", path)
		}
	}
	return os.Rename(tmp.Name(), path)
}

// style holds the sizes that scale with the canvas.
type style struct {
	tick, label, title, heading vg.Length // font sizes
	line                        vg.Length // data line width
	dash                        []vg.Length
	glyph                       vg.Length
	pad                         vg.Length
}

func newStyle(w, h vg.Length) style {
	// 12 pt ticks on a 1200×800 px (900×600 pt) canvas; clamped so tiny
	// golden images stay legible and posters do not get huge text.
	u := vg.Length(math.Max(7, math.Min(18, float64(min(w, h))/50)))
	return style{
		tick:    u,
		label:   u * 1.1,
		title:   u * 1.2,
		heading: u * 1.4,
		line:    u / 6,
		dash:    []vg.Length{u * 0.6, u * 0.35},
		glyph:   u * 0.3,
		pad:     u * 0.6,
	}
}

// scaled returns the style for a part of a figure drawn smaller.
func (s style) scaled(f float64) style {
	k := vg.Length(f)
	return style{
		tick: s.tick * k, label: s.label * k, title: s.title * k, heading: s.heading,
		line: s.line * k, dash: []vg.Length{s.dash[0] * k, s.dash[1] * k},
		glyph: s.glyph * k, pad: s.pad * k,
	}
}

func (s style) text(size vg.Length) text.Style {
	return text.Style{
		Color:   color.Black,
		Font:    font.From(plot.DefaultFont, size),
		Handler: plot.DefaultTextHandler,
	}
}

// lineStyle is the look of one series: colour from its group, dashes from
// its source.
func (s style) lineStyle(c color.Color, src Source) draw.LineStyle {
	ls := draw.LineStyle{Color: c, Width: s.line}
	if src == Predicted {
		ls.Dashes = s.dash
	}
	return ls
}

// palette is the Okabe–Ito colour-blind-safe set, yellow left out because
// it vanishes on white.
var palette = []color.Color{
	color.RGBA{0x00, 0x72, 0xB2, 0xFF}, // blue
	color.RGBA{0xD5, 0x5E, 0x00, 0xFF}, // vermillion
	color.RGBA{0x00, 0x9E, 0x73, 0xFF}, // bluish green
	color.RGBA{0xCC, 0x79, 0xA7, 0xFF}, // reddish purple
	color.RGBA{0xE6, 0x9F, 0x00, 0xFF}, // orange
	color.RGBA{0x56, 0xB4, 0xE9, 0xFF}, // sky blue
	color.RGBA{0x00, 0x00, 0x00, 0xFF}, // black
}

// colours gives each group a colour in order of first appearance.
type colours struct {
	byGroup map[string]color.Color
	keys    []seriesKey // legend order
}

type seriesKey struct {
	group  string
	source Source
}

func newColours() *colours { return &colours{byGroup: map[string]color.Color{}} }

func (c *colours) of(group string, src Source) color.Color {
	col, ok := c.byGroup[group]
	if !ok {
		col = palette[len(c.byGroup)%len(palette)]
		c.byGroup[group] = col
	}
	k := seriesKey{group, src}
	for _, have := range c.keys {
		if have == k {
			return col
		}
	}
	c.keys = append(c.keys, k)
	return col
}

// legendEntry is one line of a figure's legend.
type legendEntry struct {
	name   string
	thumbs []plot.Thumbnailer
}

// figure is a laid-out image: an optional heading, one or more cells, each
// a column of rows of plots, and a legend drawn beside them so it never
// covers data.
type figure struct {
	heading string
	cols    int // cells per row
	cells   []cell
	legend  []legendEntry
	st      style
}

type cell struct {
	grid [][]*plot.Plot // rows × columns within the cell
}

func (f *figure) draw(c draw.Canvas) {
	st := f.st
	pad := st.pad
	c = draw.Crop(c, pad, -pad, pad, -pad)
	if f.heading != "" {
		ts := st.text(st.heading)
		ts.XAlign = draw.XCenter
		ts.YAlign = draw.YTop
		c.FillText(ts, vg.Point{X: c.Center().X, Y: c.Max.Y}, f.heading)
		c = draw.Crop(c, 0, 0, 0, -(ts.Height(f.heading) + pad))
	}
	if len(f.legend) > 0 {
		l := plot.NewLegend()
		l.TextStyle = st.text(st.tick)
		l.ThumbnailWidth = st.tick * 2.5
		l.Left = true
		l.Top = true
		l.Padding = st.tick * 0.3
		for _, e := range f.legend {
			l.Add(e.name, e.thumbs...)
		}
		r := l.Rectangle(c)
		w := r.Max.X - r.Min.X
		lc := draw.Crop(c, c.Max.X-c.Min.X-w, 0, 0, -pad)
		l.Draw(lc)
		c = draw.Crop(c, 0, -(w + pad), 0, 0)
	}
	rows := (len(f.cells) + f.cols - 1) / f.cols
	outer := draw.Tiles{Rows: rows, Cols: f.cols, PadX: pad * 2, PadY: pad * 2}
	for i, cl := range f.cells {
		cc := outer.At(c, i%f.cols, i/f.cols)
		inner := draw.Tiles{Rows: len(cl.grid), Cols: len(cl.grid[0]), PadX: pad * 2, PadY: pad}
		canvases := alignColumns(cl.grid, inner, cc)
		for r, row := range cl.grid {
			for k, p := range row {
				if p != nil {
					p.Draw(canvases[r][k])
				}
			}
		}
	}
}

// newPlot returns an empty plot with the figure's fonts and a light grid.
func (s style) newPlot(title, xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle = s.text(s.title)
	p.Title.TextStyle.XAlign = draw.XCenter
	p.Title.TextStyle.YAlign = draw.YTop
	p.Title.Padding = s.pad * 0.6
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Tick.Label = s.text(s.tick)
		a.Tick.Length = s.tick * 0.4
		a.Tick.Width = s.line / 3
		a.Width = s.line / 3
		a.Padding = s.tick * 0.3
		a.Label.Padding = s.tick * 0.3
		a.Label.TextStyle = s.text(s.label)
		a.Label.TextStyle.XAlign = draw.XCenter
		a.Label.TextStyle.YAlign = draw.YBottom
	}
	p.X.Tick.Label.XAlign = draw.XCenter
	p.X.Tick.Label.YAlign = draw.YTop
	p.Y.Tick.Label.XAlign = draw.XRight
	p.Y.Tick.Label.YAlign = draw.YCenter
	p.X.Tick.Marker = niceTicks{}
	p.Y.Tick.Marker = niceTicks{}
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	p.Add(gridLines(s))
	return p
}

// alignColumns gives every plot an equal tile and then narrows tiles so
// the data areas of one column line up, as stacked timeline rows must.
// plot.Align would also equalise heights, but on small canvases it can
// hand a row a negative height; equal tiles cannot.
func alignColumns(grid [][]*plot.Plot, t draw.Tiles, c draw.Canvas) [][]draw.Canvas {
	out := make([][]draw.Canvas, len(grid))
	for r, row := range grid {
		out[r] = make([]draw.Canvas, len(row))
		for k := range row {
			out[r][k] = t.At(c, k, r)
		}
	}
	for r, row := range grid {
		for k, p := range row {
			if p != nil {
				fit(p, out[r][k])
			}
		}
	}
	for k := range t.Cols {
		var left, right vg.Length
		for r, row := range grid {
			if row[k] == nil {
				continue
			}
			tile := out[r][k]
			dc := row[k].DataCanvas(tile)
			left = max(left, dc.Min.X-tile.Min.X)
			right = max(right, tile.Max.X-dc.Max.X)
		}
		for r, row := range grid {
			if row[k] == nil {
				continue
			}
			tile := out[r][k]
			dc := row[k].DataCanvas(tile)
			out[r][k] = draw.Crop(tile, left-(dc.Min.X-tile.Min.X), -(right - (tile.Max.X - dc.Max.X)), 0, 0)
		}
	}
	return out
}

// fit adapts a plot to the tile it gets: fewer ticks on short or narrow
// axes so labels do not collide, and a y label shrunk to the tile's height.
// An axis label longer than its axis makes gonum's layout give the data
// area a negative size.
func fit(p *plot.Plot, tile draw.Canvas) {
	// The data area without the y label, which only takes width when it
	// fits, so this is the height the label and the ticks have.
	ylabel := p.Y.Label.Text
	p.Y.Label.Text = ""
	dc := p.DataCanvas(tile)
	p.Y.Label.Text = ylabel
	w, h := dc.Max.X-dc.Min.X, dc.Max.Y-dc.Min.Y
	if m, ok := p.Y.Tick.Marker.(niceTicks); ok {
		m.Target = min(6, max(3, int(h/(p.Y.Tick.Label.Font.Size*2.5))))
		p.Y.Tick.Marker = m
	}
	if m, ok := p.X.Tick.Marker.(niceTicks); ok {
		m.Target = min(8, max(2, int(w/(p.X.Tick.Label.Font.Size*5))))
		p.X.Tick.Marker = m
	}
	if m, ok := p.X.Tick.Marker.(logTicks); ok && p.X.Min > 0 {
		// 1, 2 and 5 labels take about three labels' width per decade.
		decades := math.Log10(p.X.Max / p.X.Min)
		m.Sparse = float64(w)/decades < float64(p.X.Tick.Label.Font.Size)*9
		p.X.Tick.Marker = m
	}
	if ylabel != "" && h > 0 {
		room := h * 0.95
		if lw := p.Y.Label.TextStyle.Width(ylabel); lw > room {
			p.Y.Label.TextStyle.Font.Size *= room / lw
		}
	}
}
