package sim

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
)

// SweepPoint is one policy spec of an expanded sweep.
type SweepPoint struct {
	Spec  string
	Param string
	// Value of Param: durations in ms, numbers as they are.
	Value float64
}

// maxSweepPoints bounds a sweep so a typo cannot start millions of runs.
const maxSweepPoints = 10000

// ExpandSweep expands one "key=from..to/step" range in a policy spec,
// e.g. "fixed:window=0ms..4ms/0.25ms" into 17 specs; both ends included.
func ExpandSweep(spec string) ([]SweepPoint, error) {
	name, args, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("sweep %q: no parameters (want e.g. fixed:window=0ms..4ms/0.25ms)", spec)
	}
	parts := strings.Split(args, ",")
	at := -1
	for i, p := range parts {
		if strings.Contains(p, "..") {
			if at >= 0 {
				return nil, fmt.Errorf("sweep %q: more than one range", spec)
			}
			at = i
		}
	}
	if at < 0 {
		return nil, fmt.Errorf("sweep %q: no range key=from..to/step", spec)
	}
	key, rng, ok := strings.Cut(parts[at], "=")
	if !ok {
		return nil, fmt.Errorf("sweep %q: range %q has no key=", spec, parts[at])
	}
	lohi, stepS, ok := strings.Cut(rng, "/")
	if !ok {
		return nil, fmt.Errorf("sweep %q: range %q has no /step", spec, rng)
	}
	loS, hiS, _ := strings.Cut(lohi, "..")
	var lo, hi, step float64
	dur := false
	if d1, e1 := time.ParseDuration(loS); e1 == nil {
		d2, e2 := time.ParseDuration(hiS)
		d3, e3 := time.ParseDuration(stepS)
		if e2 != nil || e3 != nil {
			return nil, fmt.Errorf("sweep %q: %s: from is a duration, so to and step must be too", spec, key)
		}
		dur = true
		lo, hi, step = float64(d1), float64(d2), float64(d3)
	} else {
		var e2, e3 error
		lo, e1 = strconv.ParseFloat(loS, 64)
		hi, e2 = strconv.ParseFloat(hiS, 64)
		step, e3 = strconv.ParseFloat(stepS, 64)
		if e1 != nil || e2 != nil || e3 != nil {
			return nil, fmt.Errorf("sweep %q: %s: from, to and step must be durations or numbers", spec, key)
		}
	}
	if !(step > 0) || math.IsInf(step, 0) || !(hi >= lo) || math.IsInf(hi-lo, 0) {
		return nil, fmt.Errorf("sweep %q: %s: want from <= to and step > 0", spec, key)
	}
	n := math.Floor((hi-lo)/step+1e-9) + 1
	if n > maxSweepPoints {
		return nil, fmt.Errorf("sweep %q: %s: %v points, at most %d", spec, key, n, maxSweepPoints)
	}
	out := make([]SweepPoint, 0, int(n))
	for i := 0; i < int(n); i++ {
		v := lo + float64(i)*step
		var s string
		val := v
		if dur {
			d := time.Duration(math.Round(v))
			s = d.String()
			val = float64(d) / 1e6
		} else {
			s = strconv.FormatFloat(v, 'g', -1, 64)
		}
		p := append([]string(nil), parts...)
		p[at] = key + "=" + s
		out = append(out, SweepPoint{Spec: name + ":" + strings.Join(p, ","), Param: key, Value: val})
	}
	return out, nil
}

// Parallel calls fn(0..n-1) on up to workers goroutines (0: all cores)
// and returns the error of the lowest index that failed.
func Parallel(n, workers int, fn func(i int) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return firstErr(errs)
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// TableRow is one run in a sweep table: the Parquet file the plotting
// command reads. Times in ms.
type TableRow struct {
	Policy   string  `parquet:"policy"`
	Param    string  `parquet:"param"`
	Value    float64 `parquet:"value"`
	Trace    string  `parquet:"trace"`
	Profile  string  `parquet:"profile"`
	Seed     int64   `parquet:"seed"`
	Requests int64   `parquet:"requests"`
	Rejected int64   `parquet:"rejected"`
	Dropped  int64   `parquet:"dropped"`

	WindowWaitMean  float64 `parquet:"window_wait_ms_mean"`
	WindowWaitP50   float64 `parquet:"window_wait_ms_p50"`
	WindowWaitP95   float64 `parquet:"window_wait_ms_p95"`
	WindowWaitP99   float64 `parquet:"window_wait_ms_p99"`
	EngineQueueMean float64 `parquet:"engine_queue_ms_mean"`
	EngineQueueP95  float64 `parquet:"engine_queue_ms_p95"`
	EngineQueueP99  float64 `parquet:"engine_queue_ms_p99"`
	TTFTMean        float64 `parquet:"ttft_ms_mean"`
	TTFTP50         float64 `parquet:"ttft_ms_p50"`
	TTFTP95         float64 `parquet:"ttft_ms_p95"`
	TTFTP99         float64 `parquet:"ttft_ms_p99"`
	LatencyMean     float64 `parquet:"latency_ms_mean"`
	LatencyP50      float64 `parquet:"latency_ms_p50"`
	LatencyP95      float64 `parquet:"latency_ms_p95"`
	LatencyP99      float64 `parquet:"latency_ms_p99"`
	TPOTMean        float64 `parquet:"tpot_ms_mean"`
	TPOTP99         float64 `parquet:"tpot_ms_p99"`
	BatchSizeMean   float64 `parquet:"batch_size_mean"`
	BatchSizeP99    float64 `parquet:"batch_size_p99"`
	ThroughputTokS  float64 `parquet:"throughput_tok_s"`
	ThroughputReqS  float64 `parquet:"throughput_req_s"`
	MakespanS       float64 `parquet:"makespan_s"`
	// OverheadPct is NaN when there was no bare run.
	OverheadPct float64 `parquet:"overhead_pct"`

	// Runs is the number of repeated runs (1 without --runs). With
	// seeded runs every statistic above is the mean over them.
	Runs int64 `parquet:"runs"`
	// CIMethod says where the _lo/_hi bounds come from: the run's own
	// per-request intervals, seeded runs or the bootstrap.
	CIMethod string `parquet:"ci_method,dict"`
	// 95 % confidence bounds of the plotted statistics; NaN where there
	// is none (too few samples or runs; overhead of a single run).
	WindowWaitMeanLo float64 `parquet:"window_wait_ms_mean_lo"`
	WindowWaitMeanHi float64 `parquet:"window_wait_ms_mean_hi"`
	WindowWaitP95Lo  float64 `parquet:"window_wait_ms_p95_lo"`
	WindowWaitP95Hi  float64 `parquet:"window_wait_ms_p95_hi"`
	TTFTMeanLo       float64 `parquet:"ttft_ms_mean_lo"`
	TTFTMeanHi       float64 `parquet:"ttft_ms_mean_hi"`
	TTFTP95Lo        float64 `parquet:"ttft_ms_p95_lo"`
	TTFTP95Hi        float64 `parquet:"ttft_ms_p95_hi"`
	LatencyMeanLo    float64 `parquet:"latency_ms_mean_lo"`
	LatencyMeanHi    float64 `parquet:"latency_ms_mean_hi"`
	LatencyP95Lo     float64 `parquet:"latency_ms_p95_lo"`
	LatencyP95Hi     float64 `parquet:"latency_ms_p95_hi"`
	OverheadPctLo    float64 `parquet:"overhead_pct_lo"`
	OverheadPctHi    float64 `parquet:"overhead_pct_hi"`
}

// Table CI methods (TableRow.CIMethod).
const (
	TableCIRun       = "per-request"
	TableCISeeds     = RunsSeeds
	TableCIBootstrap = RunsBootstrap
)

// Row flattens a summary for the sweep table. With seeded repeated runs
// (Summary.Runs) the statistics are the means over the runs; the _lo/_hi
// bounds come from the runs, or else from the run's own per-request
// intervals.
func (s *Summary) Row(param string, value float64) TableRow {
	ov := math.NaN()
	if s.OverheadPct != nil {
		ov = *s.OverheadPct
	}
	row := TableRow{
		Policy: s.Policy, Param: param, Value: value, Trace: s.Trace, Profile: s.Profile, Seed: int64(s.Seed),
		Requests: s.Requests, Rejected: s.Rejected, Dropped: s.Dropped,
		WindowWaitMean: s.WindowWaitMS.Mean, WindowWaitP50: s.WindowWaitMS.P50, WindowWaitP95: s.WindowWaitMS.P95, WindowWaitP99: s.WindowWaitMS.P99,
		EngineQueueMean: s.EngineQueueMS.Mean, EngineQueueP95: s.EngineQueueMS.P95, EngineQueueP99: s.EngineQueueMS.P99,
		TTFTMean: s.TTFTMS.Mean, TTFTP50: s.TTFTMS.P50, TTFTP95: s.TTFTMS.P95, TTFTP99: s.TTFTMS.P99,
		LatencyMean: s.LatencyMS.Mean, LatencyP50: s.LatencyMS.P50, LatencyP95: s.LatencyMS.P95, LatencyP99: s.LatencyMS.P99,
		TPOTMean: s.TPOTMS.Mean, TPOTP99: s.TPOTMS.P99, BatchSizeMean: s.BatchSize.Mean, BatchSizeP99: s.BatchSize.P99,
		ThroughputTokS: s.ThroughputTokS, ThroughputReqS: s.ThroughputReqS, MakespanS: s.MakespanS, OverheadPct: ov,
		Runs: 1, CIMethod: TableCIRun,
	}
	type ci struct {
		centre     *float64
		lo, hi     *float64
		run        *[2]float64 // the run's own interval
		runsSpread *Spread
	}
	var wm, wp, tm, tp, lm, lp Spread
	var ovs *Spread
	if r := s.Runs; r != nil {
		row.Runs, row.CIMethod = int64(r.N), r.Method
		wm, wp, tm, tp, lm, lp, ovs = r.WindowWaitMS.Mean, r.WindowWaitMS.P95, r.TTFTMS.Mean, r.TTFTMS.P95, r.LatencyMS.Mean, r.LatencyMS.P95, r.OverheadPct
		if r.Method == RunsSeeds {
			for _, c := range []struct {
				dst *float64
				sp  Spread
			}{
				{&row.WindowWaitMean, r.WindowWaitMS.Mean}, {&row.WindowWaitP50, r.WindowWaitMS.P50}, {&row.WindowWaitP95, r.WindowWaitMS.P95}, {&row.WindowWaitP99, r.WindowWaitMS.P99},
				{&row.EngineQueueMean, r.EngineQueueMS.Mean}, {&row.EngineQueueP95, r.EngineQueueMS.P95}, {&row.EngineQueueP99, r.EngineQueueMS.P99},
				{&row.TTFTMean, r.TTFTMS.Mean}, {&row.TTFTP50, r.TTFTMS.P50}, {&row.TTFTP95, r.TTFTMS.P95}, {&row.TTFTP99, r.TTFTMS.P99},
				{&row.LatencyMean, r.LatencyMS.Mean}, {&row.LatencyP50, r.LatencyMS.P50}, {&row.LatencyP95, r.LatencyMS.P95}, {&row.LatencyP99, r.LatencyMS.P99},
				{&row.TPOTMean, r.TPOTMS.Mean}, {&row.TPOTP99, r.TPOTMS.P99},
				{&row.ThroughputTokS, r.ThroughputTokS}, {&row.ThroughputReqS, r.ThroughputReqS},
			} {
				*c.dst = c.sp.Mean
			}
			if r.OverheadPct != nil {
				row.OverheadPct = r.OverheadPct.Mean
			}
		}
	}
	runCI := func(d Dist) (*[2]float64, *[2]float64) {
		if d.CI95 == nil {
			return nil, nil
		}
		return d.CI95.Mean, d.CI95.P95
	}
	wmr, wpr := runCI(s.WindowWaitMS)
	tmr, tpr := runCI(s.TTFTMS)
	lmr, lpr := runCI(s.LatencyMS)
	for _, c := range []ci{
		{&row.WindowWaitMean, &row.WindowWaitMeanLo, &row.WindowWaitMeanHi, wmr, &wm},
		{&row.WindowWaitP95, &row.WindowWaitP95Lo, &row.WindowWaitP95Hi, wpr, &wp},
		{&row.TTFTMean, &row.TTFTMeanLo, &row.TTFTMeanHi, tmr, &tm},
		{&row.TTFTP95, &row.TTFTP95Lo, &row.TTFTP95Hi, tpr, &tp},
		{&row.LatencyMean, &row.LatencyMeanLo, &row.LatencyMeanHi, lmr, &lm},
		{&row.LatencyP95, &row.LatencyP95Lo, &row.LatencyP95Hi, lpr, &lp},
		{&row.OverheadPct, &row.OverheadPctLo, &row.OverheadPctHi, nil, ovs},
	} {
		b := c.run
		if s.Runs != nil {
			b = nil
			if c.runsSpread != nil {
				b = c.runsSpread.CI95
			}
		}
		*c.lo, *c.hi = math.NaN(), math.NaN()
		// A bound pair that misses its centre (rounding at the edges)
		// would draw a broken error bar: leave it out instead.
		if b != nil && b[0] <= *c.centre && *c.centre <= b[1] {
			*c.lo, *c.hi = b[0], b[1]
		}
	}
	return row
}

// MetaTable marks a sweep table file.
const MetaTable = "batchkit.sweep.schema_version"

// WriteTable writes a sweep table; it refuses an existing path unless force.
func WriteTable(path string, rows []TableRow, force bool) error {
	if !force {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%s: already exists (use --force to overwrite)", path)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	_ = f.Chmod(0o644) // CreateTemp makes it 0600; outputs are for others to read
	w := parquet.NewGenericWriter[TableRow](f, parquet.KeyValueMetadata(MetaTable, "1"))
	_, err = w.Write(rows)
	if e := w.Close(); err == nil {
		err = e
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

// ReadTable reads a sweep table written by WriteTable.
func ReadTable(path string) (rows []TableRow, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer func() {
		if e := recover(); e != nil {
			rows, err = nil, fmt.Errorf("%s: not a sweep table: corrupt Parquet (%v)", path, e)
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: not a sweep table: %v", path, err)
	}
	if _, ok := pf.Lookup(MetaTable); !ok {
		return nil, fmt.Errorf("%s: not a sweep table: no %s metadata", path, MetaTable)
	}
	rows = make([]TableRow, pf.NumRows())
	r := parquet.NewGenericReader[TableRow](f)
	defer r.Close()
	n, err := r.Read(rows)
	if err != nil && n < len(rows) {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return rows, nil
}
