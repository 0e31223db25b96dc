package sim

import (
	"math"
	"math/rand/v2"
)

// CostModel is the simulator's source of step durations: the profile's
// step cost with seeded lognormal jitter. Replay replaces it with a real
// engine; nothing else differs.
type CostModel struct {
	c   StepCost
	cv  float64
	rng *rand.Rand
	// sig caches (σ², σ) of the plan factor by plan length: a plan costs
	// one normal draw and one exp.
	sig [][2]float64
	// The normal draws are taken jitBatch at a time, and their factors
	// computed ahead for the plan length fSteps (the last one seen when the
	// batch was drawn) if most plans of the previous batch repeated their
	// predecessor's length: an exp whose result the event loop waits on
	// costs several times one in a loop of independent ones. A plan of
	// another length computes its factor from the same draw, so the
	// factors are the same whatever is cached.
	z, f   [jitBatch]float64
	fSteps int
	zi     int
	last   int
	repeat int
}

const jitBatch = 64

// NewCostModel returns the cost model of p, seeded.
func NewCostModel(p Profile, seed uint64) *CostModel {
	return &CostModel{c: p.Step, cv: p.JitterCV, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)), zi: jitBatch}
}

// PlanTiming gives the step boundaries of one plan.
type PlanTiming struct {
	c0, lin, quad float64 // ms: boundary(j) = c0 + lin·(j-1) + quad·(j-1)·j
	f             float64 // jitter factor × 1e6 (ms to ns)
	steps         int
}

// Time returns the timing of plan. With jitter, the whole plan is scaled
// by one lognormal factor whose CV is jitter_cv/√Steps: the CV of a sum of
// Steps independent jittered steps (Fenton–Wilkinson), so that coalescing
// steps keeps the spread of service times.
func (m *CostModel) Time(p StepPlan) PlanTiming {
	var t PlanTiming
	m.time(&p, &t)
	return t
}

// time writes the timing of p into t, in place: the simulator's loop
// runs it once per plan.
func (m *CostModel) time(p *StepPlan, t *PlanTiming) {
	c := &m.c
	dd := float64(p.Decode + p.Prefill)
	t.c0 = c.StepMS(p.Prefill, p.PrefillTokens, p.PrefillSquares, p.Decode, p.Context)
	t.lin = c.BaseMS + c.PerDecodeSeqMS*dd + c.PerKVTokenMS*float64(p.Context+p.PrefillTokens)
	t.quad = c.PerKVTokenMS * dd / 2
	t.f = 1e6
	t.steps = p.Steps
	if m.cv > 0 {
		t.f *= m.factor(p.Steps)
	}
}

// sigma returns (σ², σ) of the factor of a plan of steps steps.
func (m *CostModel) sigma(steps int) [2]float64 {
	if steps < len(m.sig) && m.sig[steps][1] > 0 {
		return m.sig[steps]
	}
	var sg [2]float64
	cv := m.cv / math.Sqrt(float64(steps))
	sg[0] = math.Log1p(cv * cv)
	sg[1] = math.Sqrt(sg[0])
	if steps < 1<<12 {
		for len(m.sig) <= steps {
			m.sig = append(m.sig, [2]float64{})
		}
		m.sig[steps] = sg
	}
	return sg
}

// lognormal is the unit-mean factor for the normal draw z. The explicit
// conversion keeps the compiler from fusing the multiply-add, so the
// value is the same wherever it is computed and on every GOAMD64 level.
func lognormal(sg [2]float64, z float64) float64 {
	return math.Exp(-sg[0]/2 + float64(sg[1]*z))
}

// factor draws the jitter factor of the next plan.
func (m *CostModel) factor(steps int) float64 {
	if m.zi == jitBatch {
		for i := range m.z {
			m.z[i] = m.rng.NormFloat64()
		}
		m.fSteps = 0
		if m.repeat >= jitBatch/2 {
			m.fSteps = m.last
			sg := m.sigma(m.fSteps)
			for i, z := range m.z {
				m.f[i] = lognormal(sg, z)
			}
		}
		m.zi, m.repeat = 0, 0
	}
	i := m.zi
	m.zi++
	if steps == m.last {
		m.repeat++
	}
	m.last = steps
	if steps == m.fSteps {
		return m.f[i]
	}
	return lognormal(m.sigma(steps), m.z[i])
}

// Boundary is the end of step j (1..Steps) in ns after the plan started;
// every step takes at least 1 ns so that time moves.
func (t *PlanTiming) Boundary(j int) int64 {
	m := float64(j - 1)
	b := int64(math.Round(t.f * (t.c0 + t.lin*m + t.quad*m*float64(j))))
	return max(b, int64(j))
}

// StepsBy is the smallest j in 1..Steps whose boundary is at or after
// elapsed ns.
func (t *PlanTiming) StepsBy(elapsed int64) int {
	lo, hi := 1, t.steps
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if t.Boundary(mid) >= elapsed {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}
