package sim

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/batchkit/batchkit/sim/stats"
)

// Dist summarises one metric: mean and exact quantiles (see samples for
// the resolution), in the unit the JSON key names.
type Dist struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	// CI95 holds 95 % confidence intervals of the mean and of p50, p95
	// and p99 (see Summary.CIMethod); nil for batch sizes, which are not
	// one value per independent request.
	CI95 *DistCI `json:"ci95,omitempty"`
}

// DistCI holds [lo, hi] bounds in the unit of its Dist. A bound pair is
// null when the sample is too small for a finite interval; Warnings then
// says how many samples it would need.
type DistCI struct {
	Mean     *[2]float64 `json:"mean"`
	P50      *[2]float64 `json:"p50"`
	P95      *[2]float64 `json:"p95"`
	P99      *[2]float64 `json:"p99"`
	Warnings []string    `json:"warnings,omitempty"`
}

// CILevel is the confidence level of the intervals in a Summary.
const CILevel = 0.95

// NamedDist is one of a Summary's distributions under its JSON key.
type NamedDist struct {
	Name string
	Dist Dist
}

// Dists lists the summary's per-request distributions in table order.
func (s *Summary) Dists() []NamedDist {
	return []NamedDist{
		{"window_wait_ms", s.WindowWaitMS}, {"engine_queue_ms", s.EngineQueueMS},
		{"ttft_ms", s.TTFTMS}, {"latency_ms", s.LatencyMS}, {"tpot_ms", s.TPOTMS}, {"batch_size", s.BatchSize},
	}
}

// CIMethod names how a Summary's intervals are made.
const CIMethod = "95 % CIs: mean by Student t, p50/p95/p99 by exact order statistics (binomial, coverage ≥ 95 %); " +
	"both treat requests as independent, which queueing is not, so read them as a lower bound on the uncertainty " +
	"and repeat runs (simrun --runs) for the run-to-run spread"

// Summary is one run's report; its JSON keys are shared with replay.
type Summary struct {
	Policy   string `json:"policy"`
	Trace    string `json:"trace"`
	Profile  string `json:"profile"`
	Seed     uint64 `json:"seed"`
	Requests int64  `json:"requests"`
	Rejected int64  `json:"rejected"`
	Dropped  int64  `json:"dropped"`
	Failed   int64  `json:"failed"`

	WindowWaitMS  Dist `json:"window_wait_ms"`
	EngineQueueMS Dist `json:"engine_queue_ms"`
	TTFTMS        Dist `json:"ttft_ms"`
	LatencyMS     Dist `json:"latency_ms"`
	TPOTMS        Dist `json:"tpot_ms"`
	BatchSize     Dist `json:"batch_size"`

	ThroughputTokS float64 `json:"throughput_tok_s"`
	ThroughputReqS float64 `json:"throughput_req_s"`
	MakespanS      float64 `json:"makespan_s"`
	// OverheadPct is mean latency relative to the bare engine (policy
	// none, no per-request overhead) on the same trace and clients, in %;
	// nil when no bare run was made.
	OverheadPct *float64 `json:"overhead_pct"`
	// Trimmed counts requests left out by warm-up and cool-down.
	Trimmed int64 `json:"trimmed"`
	// CIMethod says how the ci95 intervals were made.
	CIMethod string `json:"ci_method,omitempty"`
	// Runs is the spread over repeated runs (simrun --runs); nil for one.
	Runs     *RunsSpread `json:"runs,omitempty"`
	Warnings []string    `json:"warnings,omitempty"`
}

// JSON returns the summary as indented JSON.
func (s *Summary) JSON() ([]byte, error) { return json.MarshalIndent(s, "", "  ") }

// Trim says which requests the summary leaves out: the first WarmupN and
// the last CooldownN by arrival order, those arriving within WarmupNS of
// the first arrival and those arriving within CooldownNS of the last.
// Results files keep every request.
type Trim struct {
	WarmupN, CooldownN   int64
	WarmupNS, CooldownNS int64
}

// Collector builds a Summary from a stream of Results with memory flat in
// the number of requests.
type Collector struct {
	trim      Trim
	total     int64 // requests in the run if known, for CooldownN
	first     int64 // first arrival, set by the driver
	haveFirst bool

	wait, queue, ttft, lat, tpot samples
	// The metrics of the last nb requests (np for TPOT, which only
	// requests of more than one token have), not yet added: adding them
	// collBatch at a time, metric by metric, keeps each metric's sums in
	// registers over a tight loop instead of five calls a request.
	bWait, bQueue, bTTFT, bLat, bTPOT [collBatch]int64
	nb, np                            int
	batch                             []int64 // counts by batch size
	batchN                            int64
	batchSum                          int64
	s                                 Summary
	tokens                            int64
	start, end                        int64
	// Cool-down by time: results that arrived within CooldownNS of the
	// latest arrival wait here, ordered by arrival, until a later arrival
	// clears them; what is left at the end is trimmed.
	last int64
	held resultHeap
}

// NewCollector returns a collector; total is the number of requests the
// run will have (0 if unknown; then CooldownN must be 0).
func NewCollector(trim Trim, total int64) (*Collector, error) {
	if trim.CooldownN > 0 && total <= 0 {
		return nil, fmt.Errorf("cool-down by count needs a trace of known length")
	}
	return &Collector{trim: trim, total: total, start: math.MaxInt64, end: math.MinInt64}, nil
}

// Arrived tells the collector a request arrived at ns (the driver calls it
// for every arrival when Trim.CooldownNS is set).
func (c *Collector) Arrived(ns int64) {
	c.last = max(c.last, ns)
	for c.held.len() > 0 && c.held.min().r.ArrivalNS < c.last-c.trim.CooldownNS {
		h := c.held.pop()
		c.add(&h.r, h.seq)
	}
}

// Add counts one result; seq is its arrival order.
func (c *Collector) Add(r *Result, seq int64) {
	if c.trim.CooldownNS > 0 && r.ArrivalNS >= c.last-c.trim.CooldownNS {
		c.held.push(heldResult{r: *r, seq: seq})
		return
	}
	c.add(r, seq)
}

func (c *Collector) add(r *Result, seq int64) {
	if !c.haveFirst {
		// Results come in finishing order; the driver normally calls
		// FirstArrival before any of them.
		c.first, c.haveFirst = r.ArrivalNS, true
	}
	if seq < c.trim.WarmupN || (c.trim.CooldownN > 0 && seq >= c.total-c.trim.CooldownN) ||
		(c.trim.WarmupNS > 0 && r.ArrivalNS-c.first < c.trim.WarmupNS) {
		c.s.Trimmed++
		return
	}
	c.start = min(c.start, r.ArrivalNS)
	c.end = max(c.end, r.FinishNS)
	switch r.Status {
	case StatusRejected:
		c.s.Rejected++
		return
	case StatusDropped:
		c.s.Dropped++
		return
	case StatusFailed:
		c.s.Failed++
		return
	}
	c.s.Requests++
	c.tokens += int64(r.OutputTokens)
	i := c.nb
	c.bWait[i], c.bQueue[i] = r.WindowWaitNS, r.EngineQueueWaitNS
	c.bTTFT[i], c.bLat[i] = r.FirstTokenNS-r.ArrivalNS, r.FinishNS-r.ArrivalNS
	c.nb++
	if r.OutputTokens > 1 {
		c.bTPOT[c.np] = (r.FinishNS - r.FirstTokenNS) / int64(r.OutputTokens-1)
		c.np++
	}
	if c.nb == collBatch {
		c.drain()
	}
	b := int(r.BatchSize)
	for len(c.batch) <= b {
		c.batch = append(c.batch, 0)
	}
	c.batch[b]++
	c.batchN++
	c.batchSum += int64(b)
}

const collBatch = 256

// drain adds the buffered metrics.
func (c *Collector) drain() {
	c.wait.addAll(c.bWait[:c.nb])
	c.queue.addAll(c.bQueue[:c.nb])
	c.ttft.addAll(c.bTTFT[:c.nb])
	c.lat.addAll(c.bLat[:c.nb])
	c.tpot.addAll(c.bTPOT[:c.np])
	c.nb, c.np = 0, 0
}

// FirstArrival sets the time of the run's first arrival, from which
// Trim.WarmupNS counts.
func (c *Collector) FirstArrival(ns int64) {
	if !c.haveFirst {
		c.first, c.haveFirst = ns, true
	}
}

// Summary returns the summary with names filled in.
func (c *Collector) Summary(policy, trace, profile string, seed uint64) Summary {
	c.s.Trimmed += int64(c.held.len())
	c.held = resultHeap{}
	c.drain()
	s := c.s
	s.Policy, s.Trace, s.Profile, s.Seed = policy, trace, profile, seed
	s.WindowWaitMS = c.wait.dist()
	s.EngineQueueMS = c.queue.dist()
	s.TTFTMS = c.ttft.dist()
	s.LatencyMS = c.lat.dist()
	s.TPOTMS = c.tpot.dist()
	ciWarn := map[string][]string{} // warning → metrics it applies to
	var ciOrder []string
	for _, m := range []struct {
		name string
		d    *Dist
		m    *samples
	}{
		{"window_wait_ms", &s.WindowWaitMS, &c.wait}, {"engine_queue_ms", &s.EngineQueueMS, &c.queue},
		{"ttft_ms", &s.TTFTMS, &c.ttft}, {"latency_ms", &s.LatencyMS, &c.lat}, {"tpot_ms", &s.TPOTMS, &c.tpot},
	} {
		if m.m.n == 0 {
			continue
		}
		m.d.CI95 = m.m.ci(CILevel)
		for _, w := range m.d.CI95.Warnings {
			if ciWarn[w] == nil {
				ciOrder = append(ciOrder, w)
			}
			ciWarn[w] = append(ciWarn[w], m.name)
		}
		s.CIMethod = CIMethod
	}
	s.BatchSize = countDist(c.batch, c.batchN, c.batchSum)
	if c.end > c.start {
		s.MakespanS = float64(c.end-c.start) / 1e9
		s.ThroughputTokS = float64(c.tokens) / s.MakespanS
		s.ThroughputReqS = float64(s.Requests) / s.MakespanS
	}
	switch {
	case s.Requests == 0:
		s.Warnings = append(s.Warnings, "no request completed: every statistic is 0")
	case s.Requests < 100:
		s.Warnings = append(s.Warnings, fmt.Sprintf("only %d requests: p99 is close to the maximum", s.Requests))
	}
	for _, w := range ciOrder {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%s: %s", strings.Join(ciWarn[w], ", "), w))
	}
	for _, m := range []*samples{&c.wait, &c.queue, &c.ttft, &c.lat, &c.tpot} {
		if m.clamped > 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%d values above %d µs were clamped for quantiles", m.clamped, uint32(math.MaxUint32)))
			break
		}
	}
	return s
}

// SetOverhead fills OverheadPct from the bare engine's mean latency.
func (s *Summary) SetOverhead(bare *Summary) {
	if bare.Requests == 0 || bare.LatencyMS.Mean == 0 {
		return
	}
	v := math.Round((s.LatencyMS.Mean/bare.LatencyMS.Mean-1)*1e6) / 1e4
	s.OverheadPct = &v
}

// samples keeps one metric for exact quantiles at 1 µs resolution in
// memory that stays flat in the number of requests. Values are rounded to
// whole µs before ranking; rounding is monotone, so each order statistic
// is the exact one rounded to 1 µs (summaries print ms to 3 decimals).
// The mean and max are exact in ns. Up to denseAfter values are kept as a
// uint32 slice; beyond that they become counts per µs up to denseMaxUS
// (32 MiB at most) plus a slice of the rarer larger values.
type samples struct {
	n            int64
	sumHi, sumLo uint64 // 128-bit sum of ns
	neg          int64  // sum of negative values (never expected)
	max          int64
	us           []uint32
	// counts[v>>chunkBits][v&chunkMask] counts the value v µs once the
	// metric is dense; a chunk is allocated when a value first falls in it,
	// so nothing is copied as the range grows and memory follows the
	// range of values seen.
	counts [][]uint16
	// wraps[v] counts how often v's 16-bit count wrapped to 0: 16-bit
	// counts halve the cache lines a flush touches, and a value reaches
	// 65536 occurrences only in narrow, cache-resident ranges.
	wraps  map[uint32]int64
	chunks int // chunks allocated
	// inChunk[i] is how many values counts[i] holds, so that ranks skips
	// whole chunks instead of walking millions of zero-heavy counts.
	inChunk []int64
	dense   bool
	over    []uint32
	clamped int64
	sorted  bool
	// pend[i] holds chunk i's values not yet counted. Counting a chunk's
	// values together (flushChunk) keeps its 128 KiB of counts in cache
	// instead of one miss per value across a table of many MiB (seed
	// engine at 70 % load: queue, TTFT and latency span ~25 chunks); a
	// full bucket (64 KiB) puts ~8 increments on each cache line of
	// counts, and the first touch of a line, a miss, is most of the cost.
	// Sorting the values into buckets as they come replaces a counting
	// sort of one shared 4 MiB buffer at each flush (~4 ns a request
	// less; 32 Ki and 64 Ki buckets measured no faster). A bucket is
	// allocated with its chunk, so a metric counted directly costs no
	// memory for them. Only the length of a bucket changes as it fills,
	// which costs less than storing back a slice header.
	pend  [nChunks]*[pendLen]uint32
	pendN [nChunks]int32
}

const (
	denseAfter = 1 << 16
	denseMaxUS = 1 << 23
	chunkBits  = 16
	chunkMask  = 1<<chunkBits - 1
	nChunks    = denseMaxUS >> chunkBits
	pendLen    = 1 << 14 // values per chunk's bucket
	// directChunks: while no more chunks than this are in use (256 KiB),
	// values are counted at once.
	directChunks = 1
)

// addAll adds values in ns: first the exact moments over all of them,
// then their µs values to the quantile store.
func (m *samples) addAll(vs []int64) {
	if len(vs) == 0 {
		return
	}
	if m.n == 0 {
		m.max = vs[0]
	}
	mx, lo, hi, neg := m.max, m.sumLo, m.sumHi, m.neg
	for _, ns := range vs {
		mx = max(mx, ns)
		if ns >= 0 {
			var c uint64
			lo, c = bits.Add64(lo, uint64(ns), 0)
			hi += c
		} else {
			neg += ns
		}
	}
	m.n += int64(len(vs))
	m.max, m.sumLo, m.sumHi, m.neg = mx, lo, hi, neg
	for _, ns := range vs {
		u := (ns + 500) / 1000
		if u < 0 {
			u = 0
		}
		if u > math.MaxUint32 {
			u = math.MaxUint32
			m.clamped++
		}
		m.count(uint32(u))
	}
}

// count adds v µs to the quantile store.
func (m *samples) count(v uint32) {
	if !m.dense {
		m.sorted = false // only us and over are sorted
		m.us = append(m.us, v)
		if len(m.us) >= denseAfter {
			m.toDense()
		}
		return
	}
	if v >= denseMaxUS {
		m.sorted = false
		m.over = append(m.over, v)
		return
	}
	r := v >> chunkBits
	if m.chunks <= directChunks {
		if c := m.counts[r]; c != nil {
			// A few chunks stay in cache.
			if c[v&chunkMask]++; c[v&chunkMask] == 0 {
				m.wrapped(v)
			}
			m.inChunk[r]++
			return
		}
	}
	m.pendAdd(v)
}

// pendAdd puts a dense value in its chunk's bucket.
func (m *samples) pendAdd(v uint32) {
	r := v >> chunkBits
	b := m.pend[r]
	if b == nil {
		m.counts[r] = make([]uint16, 1<<chunkBits)
		b = new([pendLen]uint32)
		m.pend[r] = b
		m.chunks++
	}
	n := m.pendN[r]
	b[n] = v
	m.pendN[r] = n + 1
	if n+1 == pendLen {
		m.flushChunk(r)
	}
}

func (m *samples) wrapped(v uint32) {
	if m.wraps == nil {
		m.wraps = map[uint32]int64{}
	}
	m.wraps[v]++
}

// wrapCounts returns the values whose counts wrapped, ascending, and the
// 65536s to add to each.
func (m *samples) wrapCounts() ([]uint32, []int64) {
	vs := make([]uint32, 0, len(m.wraps))
	for v := range m.wraps {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	add := make([]int64, len(vs))
	for i, v := range vs {
		add[i] = m.wraps[v] << 16
	}
	return vs, add
}

// flush counts every pending value.
func (m *samples) flush() {
	for r, n := range m.pendN {
		if n > 0 {
			m.flushChunk(uint32(r))
		}
	}
}

// flushChunk counts chunk r's pending values.
func (m *samples) flushChunk(r uint32) {
	c := (*[1 << chunkBits]uint16)(m.counts[r])
	n := m.pendN[r]
	for _, v := range m.pend[r][:n] {
		if c[v&chunkMask]++; c[v&chunkMask] == 0 {
			m.wrapped(v)
		}
	}
	m.inChunk[r] += int64(n)
	m.pendN[r] = 0
}

func (m *samples) toDense() {
	m.dense = true
	m.counts = make([][]uint16, nChunks)
	m.inChunk = make([]int64, nChunks)
	for _, v := range m.us {
		if v < denseMaxUS {
			m.pendAdd(v)
		} else {
			m.over = append(m.over, v)
		}
	}
	m.us = nil
	m.flush()
}

// ranks fills out[i] with the value (µs) of 0-based rank ks[i]; ks is
// ascending, so dense counts are walked once.
func (m *samples) ranks(ks []int64, out []uint32) {
	m.flush()
	if !m.sorted {
		slices.Sort(m.us)
		radixSort(m.over)
		m.sorted = true
	}
	if !m.dense {
		for i, k := range ks {
			out[i] = m.us[k]
		}
		return
	}
	i := 0
	var below int64 // values below the current one
	wv, wadd := m.wrapCounts()
	wi := 0
	for ci, chunk := range m.counts {
		if chunk == nil {
			continue
		}
		if ks[i] >= below+m.inChunk[ci] {
			below += m.inChunk[ci]
			for wi < len(wv) && wv[wi]>>chunkBits == uint32(ci) {
				wi++
			}
			continue
		}
		for j, c16 := range chunk {
			c := int64(c16)
			if wi < len(wv) && wv[wi] == uint32(ci<<chunkBits+j) {
				c += wadd[wi]
				wi++
			}
			for i < len(ks) && ks[i] < below+c {
				out[i] = uint32(ci<<chunkBits + j)
				i++
			}
			below += int64(c)
			if i == len(ks) {
				return
			}
		}
	}
	for ; i < len(ks); i++ {
		out[i] = m.over[ks[i]-below]
	}
}

// radixSort sorts a in place, least significant byte first: an overloaded
// run can leave millions of values above denseMaxUS.
func radixSort(a []uint32) {
	if len(a) < 256 {
		slices.Sort(a)
		return
	}
	orig, b := a, make([]uint32, len(a))
	for shift := 0; shift < 32; shift += 8 {
		var pos [257]int
		for _, v := range a {
			pos[(v>>shift)&0xff+1]++
		}
		if pos[(a[0]>>shift)&0xff+1] == len(a) {
			continue // every value has the same byte here
		}
		for i := 1; i < len(pos); i++ {
			pos[i] += pos[i-1]
		}
		for _, v := range a {
			d := (v >> shift) & 0xff
			b[pos[d]] = v
			pos[d]++
		}
		a, b = b, a
	}
	if &a[0] != &orig[0] {
		copy(orig, a) // an odd number of passes left them in the scratch
	}
}

var quantileProbs = [4]float64{0.50, 0.90, 0.95, 0.99}

// quantiles are the linear interpolation between closest ranks (R type 7).
func (m *samples) quantiles() [4]float64 {
	var ks [8]int64
	var hs [4]float64
	for i, p := range quantileProbs {
		h := p * float64(m.n-1)
		lo := int64(math.Floor(h))
		hs[i] = h - float64(lo)
		ks[2*i], ks[2*i+1] = lo, min(lo+1, m.n-1)
	}
	var vs [8]uint32
	m.ranks(ks[:], vs[:])
	var q [4]float64
	for i := range q {
		a, b := float64(vs[2*i]), float64(vs[2*i+1])
		q[i] = a + hs[i]*(b-a)
	}
	return q
}

func (m *samples) dist() Dist {
	if m.n == 0 {
		return Dist{}
	}
	sum := float64(m.sumHi)*math.Exp2(64) + float64(m.sumLo) + float64(m.neg)
	ms := func(us float64) float64 { return math.Round(us) / 1e3 }
	q := m.quantiles()
	return Dist{
		Mean: math.Round(sum/float64(m.n)/1e3) / 1e3,
		P50:  ms(q[0]),
		P90:  ms(q[1]),
		P95:  ms(q[2]),
		P99:  ms(q[3]),
		Max:  math.Round(float64(m.max)/1e3) / 1e3,
	}
}

// ci gives the intervals of dist's mean and p50/p95/p99. The standard
// deviation comes from the µs-rounded values the quantiles use (two
// passes over what is stored, so the per-request path stays as it is);
// rounding to 1 µs moves it by far less than the printed resolution.
func (m *samples) ci(level float64) *DistCI {
	ci := &DistCI{}
	sum := float64(m.sumHi)*math.Exp2(64) + float64(m.sumLo) + float64(m.neg)
	meanNS := sum / float64(m.n)
	ms := func(us float64) float64 { return math.Round(us) / 1e3 }
	if m.n >= 2 {
		meanUS := meanNS / 1e3
		ss := m.sumSq(meanUS)
		iv, _ := stats.MeanCIMoments(int(m.n), meanUS, math.Sqrt(ss/float64(m.n-1)), level)
		ci.Mean = &[2]float64{ms(iv.Lo), ms(iv.Hi)}
	} else {
		ci.Warnings = append(ci.Warnings, fmt.Sprintf("need ≥ 2 samples for a %g %% CI of the mean; have %d", level*100, m.n))
	}
	qs := [3]float64{0.50, 0.95, 0.99}
	outs := [3]**[2]float64{&ci.P50, &ci.P95, &ci.P99}
	var ks []int64
	var at [3][2]int
	for i, q := range qs {
		lo, hi := quantileCIRanks(int(m.n), q, level)
		if lo < 0 || int64(hi) >= m.n {
			at[i] = [2]int{-1, -1}
			if w := stats.QuantileWarning(int(m.n), q, level); w != "" {
				ci.Warnings = append(ci.Warnings, w)
			}
			continue
		}
		at[i] = [2]int{len(ks), len(ks) + 1}
		ks = append(ks, int64(lo), int64(hi))
	}
	// ranks wants ascending ranks; bounds of higher quantiles are not
	// below those of lower ones, but sort to be safe and map back.
	order := make([]int, len(ks))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(ks[a], ks[b]) })
	sortedKs := make([]int64, len(ks))
	for i, j := range order {
		sortedKs[i] = ks[j]
	}
	vals := make([]uint32, len(ks))
	m.ranks(sortedKs, vals)
	byK := make([]uint32, len(ks))
	for i, j := range order {
		byK[j] = vals[i]
	}
	for i := range qs {
		if at[i][0] < 0 {
			continue
		}
		*outs[i] = &[2]float64{ms(float64(byK[at[i][0]])), ms(float64(byK[at[i][1]]))}
	}
	return ci
}

type ciKey struct {
	n        int
	q, level float64
}

// ciRanks caches QuantileCIRanks: its binomial searches cost more than the
// rest of a small summary, and the metrics of a run, the seeds of --runs
// and the resamples of a bootstrap mostly share n.
var ciRanks struct {
	sync.Mutex
	m map[ciKey][2]int
}

func quantileCIRanks(n int, q, level float64) (int, int) {
	k := ciKey{n, q, level}
	ciRanks.Lock()
	r, ok := ciRanks.m[k]
	ciRanks.Unlock()
	if ok {
		return r[0], r[1]
	}
	lo, hi, _ := stats.QuantileCIRanks(n, q, level)
	ciRanks.Lock()
	if ciRanks.m == nil || len(ciRanks.m) > 4096 {
		ciRanks.m = map[ciKey][2]int{}
	}
	ciRanks.m[k] = [2]int{lo, hi}
	ciRanks.Unlock()
	return lo, hi
}

// sumSq is Σ(v - mean)² over every stored value v (µs), summed in
// ascending order of v within the counts.
func (m *samples) sumSq(mean float64) float64 {
	m.flush()
	var ss float64
	for _, v := range m.us {
		d := float64(v) - mean
		ss += float64(1) * d * d
	}
	wv, wadd := m.wrapCounts()
	wi := 0
	for ci, chunk := range m.counts {
		if m.inChunk[ci] == 0 {
			continue
		}
		base := ci << chunkBits
		for j, c16 := range chunk {
			c := int64(c16)
			if wi < len(wv) && wv[wi] == uint32(base+j) {
				c += wadd[wi]
				wi++
			}
			if c > 0 {
				d := float64(base+j) - mean
				ss += float64(c) * d * d
			}
		}
	}
	for _, v := range m.over {
		d := float64(v) - mean
		ss += float64(1) * d * d
	}
	return ss
}

func countDist(counts []int64, n, sum int64) Dist {
	if n == 0 {
		return Dist{}
	}
	at := func(k int64) float64 {
		for v, c := range counts {
			if k < c {
				return float64(v)
			}
			k -= c
		}
		return float64(len(counts) - 1)
	}
	q := func(p float64) float64 {
		h := p * float64(n-1)
		lo := int64(math.Floor(h))
		a := at(lo)
		if lo+1 >= n {
			return a
		}
		return math.Round((a+(h-float64(lo))*(at(lo+1)-a))*1e3) / 1e3
	}
	mx := 0
	for v, c := range counts {
		if c > 0 {
			mx = v
		}
	}
	return Dist{Mean: math.Round(float64(sum)/float64(n)*1e4) / 1e4, P50: q(.5), P90: q(.9), P95: q(.95), P99: q(.99), Max: float64(mx)}
}

type heldResult struct {
	r   Result
	seq int64
}

// byArrival orders held results by arrival, ties by seq.
type byArrival struct{}

func (byArrival) less(x, y *heldResult) bool {
	return x.r.ArrivalNS < y.r.ArrivalNS || (x.r.ArrivalNS == y.r.ArrivalNS && x.seq < y.seq)
}

type resultHeap = minHeap[heldResult, byArrival]

// ParseTrim reads the command-line forms of warm-up and cool-down
// trimming: a request count ("100") or a duration ("30s"); "" is none.
func ParseTrim(warmup, cooldown string) (Trim, error) {
	var t Trim
	var err error
	if t.WarmupN, t.WarmupNS, err = countOrDuration("--warmup", warmup); err != nil {
		return t, err
	}
	t.CooldownN, t.CooldownNS, err = countOrDuration("--cooldown", cooldown)
	return t, err
}

func countOrDuration(flag, s string) (int64, int64, error) {
	if s == "" {
		return 0, 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return n, 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, 0, fmt.Errorf("%s %q: want a request count or a duration such as 30s", flag, s)
	}
	return 0, int64(d), nil
}
