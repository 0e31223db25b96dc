package trace

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Arrival processes understood by GenConfig.Arrivals.
const (
	Poisson = "poisson" // exponential gaps at Rate
	Gamma   = "gamma"   // gamma gaps: mean 1/Rate, coefficient of variation CV
	OnOff   = "onoff"   // two-state MMPP: Poisson at Rate while on, OffRate while off
	Fixed   = "fixed"   // exactly 1/Rate apart
	Closed  = "closed"  // closed-loop benchmark order: every arrival 0
)

// ArrivalKinds lists the arrival processes, for help texts.
var ArrivalKinds = []string{Poisson, Gamma, OnOff, Fixed, Closed}

// GenConfig describes a synthetic trace. The same config always generates
// the same rows.
type GenConfig struct {
	N        int
	Arrivals string
	// Rate is the mean request rate per second (the on-state rate for
	// OnOff). Unused by Closed.
	Rate float64
	// CV is the gamma process's coefficient of variation of gaps (1 is
	// Poisson, larger is burstier).
	CV float64
	// OffRate is OnOff's rate while off (0: silent).
	OffRate float64
	// On and Off are OnOff's mean sojourn times (exponentially distributed).
	On, Off       time.Duration
	Input, Output TokenDist
	Seed          uint64
}

// Check rejects impossible parameters.
func (c *GenConfig) Check() error {
	if c.N < 1 {
		return fmt.Errorf("n %d must be at least 1", c.N)
	}
	if c.Input == nil || c.Output == nil {
		return fmt.Errorf("input and output token distributions are required")
	}
	rateOK := c.Rate > 0 && c.Rate <= 1e9 && !math.IsInf(c.Rate, 0)
	switch c.Arrivals {
	case Poisson, Fixed:
		if !rateOK {
			return fmt.Errorf("rate %v must be in (0, 1e9] requests/s", c.Rate)
		}
	case Gamma:
		if !rateOK {
			return fmt.Errorf("rate %v must be in (0, 1e9] requests/s", c.Rate)
		}
		if !(c.CV >= 0.01 && c.CV <= 100) {
			return fmt.Errorf("gamma cv %v must be in [0.01, 100]", c.CV)
		}
	case OnOff:
		if !rateOK {
			return fmt.Errorf("on-state rate %v must be in (0, 1e9] requests/s", c.Rate)
		}
		if !(c.OffRate >= 0 && c.OffRate <= 1e9) {
			return fmt.Errorf("off-state rate %v must be in [0, 1e9] requests/s", c.OffRate)
		}
		if c.On <= 0 || c.Off <= 0 {
			return fmt.Errorf("on/off mean durations (%v, %v) must be positive", c.On, c.Off)
		}
	case Closed:
	default:
		return fmt.Errorf("unknown arrival process %q (want %s)", c.Arrivals, strings.Join(ArrivalKinds, ", "))
	}
	return nil
}

// Source is the canonical description stored as the trace's provenance.
func (c *GenConfig) Source() string {
	s := fmt.Sprintf("batchkit trace gen --arrivals %s", c.Arrivals)
	switch c.Arrivals {
	case Poisson, Fixed:
		s += " --rate " + fmtFloat(c.Rate)
	case Gamma:
		s += " --rate " + fmtFloat(c.Rate) + " --cv " + fmtFloat(c.CV)
	case OnOff:
		s += fmt.Sprintf(" --rate %s --off-rate %s --on %v --off %v", fmtFloat(c.Rate), fmtFloat(c.OffRate), c.On, c.Off)
	}
	return s + fmt.Sprintf(" --n %d --input %s --output %s --seed %d", c.N, c.Input, c.Output, c.Seed)
}

// Generator produces a GenConfig's rows in order, a chunk at a time, so a
// trace of any length streams in constant memory.
type Generator struct {
	cfg               GenConfig
	arr, in, out      *rand.Rand
	next              int
	t                 float64 // current time, ns (onoff)
	at                int64   // last arrival, ns (poisson, gamma)
	on                bool
	stateLeft         float64 // ns left in the current on/off state
	gammaK, gammaTh   float64
	fixedStepNS       float64
	onMeanNS, offMean float64
}

// NewGenerator checks cfg and starts a generator. Arrivals, input and
// output lengths use separate random streams, so changing the length
// distributions leaves the arrival times unchanged and vice versa.
func NewGenerator(cfg GenConfig) (*Generator, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	g := &Generator{
		cfg: cfg,
		arr: rand.New(rand.NewPCG(cfg.Seed, 1)),
		in:  rand.New(rand.NewPCG(cfg.Seed, 2)),
		out: rand.New(rand.NewPCG(cfg.Seed, 3)),
		on:  true,
	}
	switch cfg.Arrivals {
	case Gamma:
		g.gammaK = 1 / (cfg.CV * cfg.CV)
		g.gammaTh = 1e9 / (cfg.Rate * g.gammaK)
	case Fixed:
		g.fixedStepNS = 1e9 / cfg.Rate
	case OnOff:
		g.onMeanNS, g.offMean = float64(cfg.On), float64(cfg.Off)
		g.stateLeft = g.onMeanNS * g.arr.ExpFloat64()
	}
	return g, nil
}

// Next fills buf with the next rows and returns how many; 0 when done.
func (g *Generator) Next(buf []Request) int {
	n := 0
	for ; n < len(buf) && g.next < g.cfg.N; n++ {
		var at int64
		if g.next > 0 {
			at = g.arrival()
		}
		buf[n] = Request{
			RequestID:    int64(g.next),
			ArrivalNS:    at,
			InputTokens:  g.cfg.Input.Sample(g.in),
			OutputTokens: g.cfg.Output.Sample(g.out),
		}
		g.next++
	}
	return n
}

// arrival returns the next arrival after the first (which is at 0, since a
// trace's clock starts at its first request).
func (g *Generator) arrival() int64 {
	switch g.cfg.Arrivals {
	// Poisson and gamma gaps are rounded to whole ns before they are
	// summed, so a last-bit difference between platforms' math libraries
	// almost never changes an arrival (it would have to land on a
	// half-ns boundary).
	case Poisson:
		g.at = satAdd(g.at, float64(g.arr.ExpFloat64()*(1e9/g.cfg.Rate)))
		return g.at
	case Gamma:
		g.at = satAdd(g.at, float64(gammaSample(g.arr, g.gammaK)*g.gammaTh))
		return g.at
	case Fixed:
		// Multiply instead of accumulating so rounding never drifts.
		return int64(math.Round(float64(g.next) * g.fixedStepNS))
	case OnOff:
		g.t = g.onOffNext()
	case Closed:
		return 0
	}
	if g.t > math.MaxInt64/2 {
		g.t = math.MaxInt64 / 2
	}
	return int64(math.Round(g.t))
}

// satAdd adds a gap in ns, rounded, saturating far below MaxInt64.
func satAdd(at int64, gap float64) int64 {
	const limit = math.MaxInt64 / 2
	if gap >= limit || at > limit-int64(gap) {
		return limit
	}
	return at + int64(math.Round(gap))
}

// onOffNext advances the two-state MMPP to its next arrival. Both the
// state sojourns and the gaps are exponential, so on a state change the
// pending gap is simply redrawn (memorylessness).
func (g *Generator) onOffNext() float64 {
	for {
		rate := g.cfg.Rate
		if !g.on {
			rate = g.cfg.OffRate
		}
		gap := math.Inf(1)
		if rate > 0 {
			gap = float64(g.arr.ExpFloat64() * (1e9 / rate))
		}
		if gap < g.stateLeft {
			g.stateLeft -= gap
			g.t += gap
			return g.t
		}
		g.t += g.stateLeft
		g.on = !g.on
		mean := g.onMeanNS
		if !g.on {
			mean = g.offMean
		}
		g.stateLeft = float64(mean * g.arr.ExpFloat64())
	}
}

// gammaSample draws Gamma(k, 1) by Marsaglia and Tsang's method, with the
// usual U^(1/k) boost for k < 1.
func gammaSample(r *rand.Rand, k float64) float64 {
	if k < 1 {
		u := r.Float64()
		for u == 0 {
			u = r.Float64()
		}
		return gammaSample(r, k+1) * math.Pow(u, 1/k)
	}
	d := k - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x {
			return d * v
		}
		if u > 0 && math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// GenerateFile writes the trace cfg describes to path; meta.Source is set
// from cfg when empty.
func GenerateFile(path string, cfg GenConfig, meta Metadata, opts ...CreateOption) error {
	g, err := NewGenerator(cfg)
	if err != nil {
		return err
	}
	if meta.Source == "" {
		meta.Source = cfg.Source()
	}
	w, err := Create(path, meta, opts...)
	if err != nil {
		return err
	}
	buf := make([]Request, 8192)
	for {
		n := g.Next(buf)
		if n == 0 {
			break
		}
		if err := w.Write(buf[:n]); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}
