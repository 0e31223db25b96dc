package plots

import "fmt"

// Source says where a series comes from: a prediction (simulator) is drawn
// dashed, a measurement (replay against a real engine) solid.
type Source int

const (
	// Measured comes from a real engine (replay); drawn solid.
	Measured Source = iota
	// Predicted comes from the simulator; drawn dashed.
	Predicted
)

func (s Source) String() string {
	switch s {
	case Measured:
		return "measured"
	case Predicted:
		return "predicted"
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// Sample is a set of observations of one series: per-request values of a
// metric for a CDF, or dispatched batch sizes for a histogram. Group names
// the policy or configuration; all series of one group share a colour.
type Sample struct {
	Group  string
	Source Source
	Values []float64
}

// Curve is one y series of a sweep with optional 95 % confidence bounds.
// Lo and Hi are both nil (no error bars) or both as long as Y.
type Curve struct {
	Y, Lo, Hi []float64
}

// SweepSeries is one policy's results over a swept parameter: X holds the
// parameter values (window, load, clients) in ascending order; Mean and P95
// the metric at each; Overhead the overhead in percent against the bare
// engine, or a nil Y when not measured.
type SweepSeries struct {
	Group    string
	Source   Source
	X        []float64
	Mean     Curve
	P95      Curve
	Overhead Curve
}

// Trace is a quantity over time: T in seconds since the run started
// (ascending), V its value from that instant on.
type Trace struct {
	T, V []float64
}

// TimelineSeries is one run over time. Any trace may be empty; a timeline
// shows the rows that at least one series has.
type TimelineSeries struct {
	Group   string
	Source  Source
	Queue   Trace // requests waiting to be dispatched
	Running Trace // sequences running in the engine
	Batches Trace // size of each dispatched batch, at its dispatch time
}

// label is the legend text of a series.
func label(group string, src Source) string {
	if group == "" {
		return src.String()
	}
	return group + " (" + src.String() + ")"
}

func checkSource(s Source) error {
	if s != Measured && s != Predicted {
		return fmt.Errorf("unknown source %d", int(s))
	}
	return nil
}

func (c Curve) check(name string, n int) error {
	if len(c.Y) != n {
		return fmt.Errorf("%s: %d values for %d x values", name, len(c.Y), n)
	}
	if err := checkFinite(name, c.Y); err != nil {
		return err
	}
	if c.Lo == nil && c.Hi == nil {
		return nil
	}
	if _, err := ErrorBars(c.Y, c.Lo, c.Hi); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
