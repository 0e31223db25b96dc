package trace

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// TokenDist draws token counts, always in [1, MaxTokens].
type TokenDist interface {
	// Sample draws one count.
	Sample(r *rand.Rand) int32
	// String is the canonical spec that ParseTokenDist turns back into an
	// equal distribution.
	String() string
}

// Which says which column an empirical distribution resamples.
type Which uint8

const (
	Input Which = iota + 1
	Output
)

func (w Which) String() string {
	if w == Output {
		return "output"
	}
	return "input"
}

// ParseTokenDist parses a token-length spec:
//
//	const:N                   always N
//	uniform:A,B               integers A..B inclusive, equally likely
//	exp:mean=M                exponential with mean M, rounded, at least 1
//	lognormal:mean=M,cv=C     lognormal with mean M and coefficient of
//	                          variation C, rounded, at least 1
//	empirical:FILE            resample the `which` lengths of trace FILE
//
// Draws below 1 become 1 and above MaxTokens become MaxTokens.
func ParseTokenDist(spec string, which Which) (TokenDist, error) {
	kind, args, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("token spec %q: want KIND:ARGS (const:N, uniform:A,B, exp:mean=M, lognormal:mean=M,cv=C, empirical:FILE)", spec)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("token spec %q: %s", spec, fmt.Sprintf(format, a...))
	}
	switch kind {
	case "const":
		n, err := parseTokens(args)
		if err != nil {
			return nil, bad("%v", err)
		}
		return constDist(n), nil
	case "uniform":
		a, b, ok := strings.Cut(args, ",")
		if !ok {
			return nil, bad("want uniform:A,B")
		}
		lo, err := parseTokens(a)
		if err != nil {
			return nil, bad("%v", err)
		}
		hi, err := parseTokens(b)
		if err != nil {
			return nil, bad("%v", err)
		}
		if hi < lo {
			return nil, bad("upper bound %d below lower bound %d", hi, lo)
		}
		return uniformDist{lo, hi}, nil
	case "exp":
		kv, err := parseParams(args, "mean")
		if err != nil {
			return nil, bad("%v", err)
		}
		if err := checkMean(kv["mean"]); err != nil {
			return nil, bad("%v", err)
		}
		return expDist{kv["mean"]}, nil
	case "lognormal":
		kv, err := parseParams(args, "mean", "cv")
		if err != nil {
			return nil, bad("%v", err)
		}
		if err := checkMean(kv["mean"]); err != nil {
			return nil, bad("%v", err)
		}
		if cv := kv["cv"]; !(cv > 0 && cv <= 100) {
			return nil, bad("cv %v must be in (0, 100]", cv)
		}
		return newLognormal(kv["mean"], kv["cv"]), nil
	case "empirical":
		if args == "" {
			return nil, bad("want empirical:FILE")
		}
		return loadEmpirical(args, which)
	}
	return nil, bad("unknown kind %q (want const, uniform, exp, lognormal or empirical)", kind)
}

func parseTokens(s string) (int32, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	if n < 1 || n > MaxTokens {
		return 0, fmt.Errorf("%d is outside 1..%d", n, MaxTokens)
	}
	return int32(n), nil
}

func checkMean(m float64) error {
	if !(m >= 1 && m <= MaxTokens) {
		return fmt.Errorf("mean %v must be in [1, %d]", m, MaxTokens)
	}
	return nil
}

// parseParams parses "k=v,k=v" with exactly the given keys.
func parseParams(s string, keys ...string) (map[string]float64, error) {
	kv := map[string]float64{}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", part)
		}
		if _, dup := kv[k]; dup {
			return nil, fmt.Errorf("%s given twice", k)
		}
		known := false
		for _, want := range keys {
			known = known || k == want
		}
		if !known {
			return nil, fmt.Errorf("unknown parameter %q (want %s)", k, strings.Join(keys, ", "))
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%s=%q is not a number", k, v)
		}
		kv[k] = f
	}
	for _, k := range keys {
		if _, ok := kv[k]; !ok {
			return nil, fmt.Errorf("missing %s=", k)
		}
	}
	return kv, nil
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// clampTokens rounds a continuous draw to a token count in [1, MaxTokens].
func clampTokens(x float64) int32 {
	if !(x >= 1) { // also NaN
		return 1
	}
	if x >= MaxTokens {
		return MaxTokens
	}
	return int32(math.Round(x))
}

type constDist int32

func (d constDist) Sample(*rand.Rand) int32 { return int32(d) }
func (d constDist) String() string          { return "const:" + strconv.Itoa(int(d)) }

type uniformDist struct{ lo, hi int32 }

func (d uniformDist) Sample(r *rand.Rand) int32 {
	return d.lo + int32(r.Int64N(int64(d.hi-d.lo)+1))
}
func (d uniformDist) String() string { return fmt.Sprintf("uniform:%d,%d", d.lo, d.hi) }

type expDist struct{ mean float64 }

func (d expDist) Sample(r *rand.Rand) int32 { return clampTokens(d.mean * r.ExpFloat64()) }
func (d expDist) String() string            { return "exp:mean=" + fmtFloat(d.mean) }

type lognormalDist struct{ mean, cv, mu, sigma float64 }

// newLognormal picks mu and sigma so the continuous distribution has the
// requested mean and CV: sigma² = ln(1+cv²), mu = ln(mean) − sigma²/2.
func newLognormal(mean, cv float64) lognormalDist {
	s2 := math.Log1p(cv * cv)
	return lognormalDist{mean: mean, cv: cv, mu: math.Log(mean) - s2/2, sigma: math.Sqrt(s2)}
}

func (d lognormalDist) Sample(r *rand.Rand) int32 {
	// float64() forbids fusing into an FMA, which would round differently
	// on arm64 than on amd64.
	return clampTokens(math.Exp(float64(d.sigma*r.NormFloat64()) + d.mu))
}
func (d lognormalDist) String() string {
	return "lognormal:mean=" + fmtFloat(d.mean) + ",cv=" + fmtFloat(d.cv)
}

// empiricalDist resamples the lengths of another trace uniformly.
type empiricalDist struct {
	file string
	vals []int32
}

func (d *empiricalDist) Sample(r *rand.Rand) int32 { return d.vals[r.IntN(len(d.vals))] }
func (d *empiricalDist) String() string            { return "empirical:" + d.file }

// maxEmpirical bounds the lengths kept from a huge source trace (4 bytes
// each); beyond it the first maxEmpirical rows are used.
const maxEmpirical = 1 << 25

func loadEmpirical(path string, which Which) (TokenDist, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	d := &empiricalDist{file: path, vals: make([]int32, 0, min(r.NumRows(), 1<<20))}
	buf := make([]Request, chunkRows)
	for len(d.vals) < maxEmpirical {
		n, err := r.Read(buf)
		for _, q := range buf[:n] {
			if which == Output {
				d.vals = append(d.vals, q.OutputTokens)
			} else {
				d.vals = append(d.vals, q.InputTokens)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	d.vals = d.vals[:min(len(d.vals), maxEmpirical)]
	return d, nil
}
