package stats

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// WriteTable renders the comparison as a benchstat-style text table: each
// arm's value with its CI as ±%, the delta as a percentage or ~ when the CI
// of the difference includes zero, the CI and p-value, the method, and the
// warnings as footnotes.
func (c Comparison) WriteTable(w io.Writer) error {
	var b strings.Builder
	pairing := "unpaired"
	if len(c.Rows) > 0 && c.Rows[0].Paired {
		pairing = "paired per request"
	}
	fmt.Fprintf(&b, "A = %s, B = %s (%s; %s confidence; bootstrap seed %d)\n", c.NameA, c.NameB, pairing, pct(c.Level), c.Seed)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	detect := false
	for _, r := range c.Rows {
		detect = detect || r.NNeeded != nil
	}
	head := "metric\tstat\tA\t\tB\t\tvs A\tdelta\tCI of delta\tp\tmethod"
	if detect {
		head += "\tn/arm for " + firstEffect(c.Rows)
	}
	fmt.Fprintln(tw, head)
	for _, r := range c.Rows {
		vs := "~"
		switch {
		case r.Undetermined:
			vs = "?"
		case r.Significant:
			vs = fmtPct(r.DeltaPct)
		}
		line := fmt.Sprintf("%s\t%s\t%s\t± %s\t%s\t± %s\t%s\t%s\t[%s, %s]\t%s\t%s",
			r.Metric, r.Stat, fmtNum(r.A), rangePct(r.A, r.ACI), fmtNum(r.B), rangePct(r.B, r.BCI),
			vs, fmtSigned(r.Delta), fmtNum(r.CI95[0]), fmtNum(r.CI95[1]), fmtP(r.PValue), r.Method)
		if detect {
			n := "-"
			if r.NNeeded != nil {
				n = fmtCount(*r.NNeeded)
			}
			line += "\t" + n
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(c.Rows) > 0 {
		fmt.Fprintf(&b, "n: A %d, B %d per metric; ~ means the %s CI of B−A includes zero; ? means too few samples to judge\n", c.Rows[0].NA, c.Rows[0].NB, pct(c.Level))
	}
	for i, wn := range foldWarnings(c.Warnings) {
		fmt.Fprintf(&b, "note %d: %s\n", i+1, wn)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// foldWarnings joins warnings that say the same of several metrics
// ("latency_ms: p99 of 50 samples is the maximum") into one note naming
// them all, so a table of many metrics keeps a short footer.
func foldWarnings(ws []string) []string {
	var order []string
	metrics := map[string][]string{}
	for _, w := range ws {
		metric, text, ok := strings.Cut(w, ": ")
		if !ok || strings.ContainsAny(metric, " ") {
			metric, text = "", w
		}
		if _, seen := metrics[text]; !seen {
			order = append(order, text)
		}
		if metric != "" {
			metrics[text] = append(metrics[text], metric)
		} else if metrics[text] == nil {
			metrics[text] = []string{}
		}
	}
	out := make([]string, 0, len(order))
	for _, text := range order {
		if m := metrics[text]; len(m) > 0 {
			out = append(out, strings.Join(m, ", ")+": "+text)
		} else {
			out = append(out, text)
		}
	}
	return out
}

func firstEffect(rows []Row) string {
	for _, r := range rows {
		if r.Effect != "" {
			return r.Effect
		}
	}
	return "effect"
}

// rangePct is benchstat's "± x%": the larger half-width of the interval
// relative to the centre.
func rangePct(center float64, ci [2]float64) string {
	if math.IsInf(ci[0], 0) || math.IsInf(ci[1], 0) {
		return "∞"
	}
	if center == 0 || math.Signbit(ci[0]) != math.Signbit(center) || math.Signbit(ci[1]) != math.Signbit(center) {
		return "?"
	}
	v := math.Max(ci[1]/center-1, 1-ci[0]/center)
	return fmt.Sprintf("%.1f%%", 100*v)
}

func fmtPct(x float64) string {
	if math.IsNaN(x) {
		return "?"
	}
	return fmt.Sprintf("%+.2f%%", x)
}

func fmtP(p float64) string {
	if p < 0.001 {
		return "<0.001"
	}
	return fmt.Sprintf("%.3f", p)
}

func fmtSigned(x float64) string {
	s := fmtNum(x)
	if x > 0 {
		return "+" + s
	}
	return s
}

// fmtNum keeps about four significant figures, fixed-point, so tables line
// up and golden files stay stable.
func fmtNum(x float64) string {
	switch {
	case math.IsNaN(x):
		return "?"
	case math.IsInf(x, 1):
		return "+∞"
	case math.IsInf(x, -1):
		return "-∞"
	}
	a := math.Abs(x)
	switch {
	case a >= 1000:
		return fmt.Sprintf("%.0f", x)
	case a >= 100:
		return fmt.Sprintf("%.1f", x)
	case a >= 10:
		return fmt.Sprintf("%.2f", x)
	case a >= 1 || a == 0:
		return fmt.Sprintf("%.3f", x)
	}
	return fmt.Sprintf("%.3g", x)
}

// jsonFloat encodes NaN and ±Inf (unknown or unbounded) as null, which JSON
// cannot otherwise carry.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	x := float64(f)
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(x)
}

type jsonRow struct {
	Metric       string       `json:"metric"`
	Stat         string       `json:"stat"`
	NA           int          `json:"n_a"`
	NB           int          `json:"n_b"`
	A            jsonFloat    `json:"a"`
	B            jsonFloat    `json:"b"`
	ACI          [2]jsonFloat `json:"a_ci95"`
	BCI          [2]jsonFloat `json:"b_ci95"`
	ArmMethod    string       `json:"arm_method"`
	Delta        jsonFloat    `json:"delta"`
	DeltaPct     jsonFloat    `json:"delta_pct"`
	CI95         [2]jsonFloat `json:"ci95"`
	PValue       jsonFloat    `json:"p_value"`
	Significant  bool         `json:"significant"`
	Undetermined bool         `json:"undetermined,omitempty"`
	Method       string       `json:"method"`
	Paired       bool         `json:"paired"`
	NNeeded      *int         `json:"n_needed,omitempty"`
	Effect       string       `json:"effect,omitempty"`
}

// WriteJSON writes the comparison as one indented JSON object: a_name,
// b_name, level, seed, metrics (one object per metric and statistic) and
// warnings. Unbounded interval ends and undefined values are null.
func (c Comparison) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}

// MarshalJSON encodes NaN and ±Inf as null so the JSON form always exists.
func (c Comparison) MarshalJSON() ([]byte, error) {
	out := struct {
		NameA    string    `json:"a_name"`
		NameB    string    `json:"b_name"`
		Level    float64   `json:"level"`
		Seed     uint64    `json:"seed"`
		Rows     []jsonRow `json:"metrics"`
		Warnings []string  `json:"warnings"`
	}{c.NameA, c.NameB, c.Level, c.Seed, make([]jsonRow, 0, len(c.Rows)), c.Warnings}
	if out.Warnings == nil {
		out.Warnings = []string{}
	}
	pair := func(v [2]float64) [2]jsonFloat { return [2]jsonFloat{jsonFloat(v[0]), jsonFloat(v[1])} }
	for _, r := range c.Rows {
		out.Rows = append(out.Rows, jsonRow{r.Metric, r.Stat, r.NA, r.NB, jsonFloat(r.A), jsonFloat(r.B),
			pair(r.ACI), pair(r.BCI), r.ArmMethod, jsonFloat(r.Delta), jsonFloat(r.DeltaPct), pair(r.CI95),
			jsonFloat(r.PValue), r.Significant, r.Undetermined, r.Method, r.Paired, r.NNeeded, r.Effect})
	}
	return json.Marshal(out)
}
