package trace

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustDist(t *testing.T, spec string) TokenDist {
	t.Helper()
	d, err := ParseTokenDist(spec, Input)
	require.NoError(t, err)
	return d
}

func TestParseTokenDist(t *testing.T) {
	for _, tc := range []struct {
		spec, canon, err string
	}{
		{spec: "const:50", canon: "const:50"},
		{spec: "uniform:10,20", canon: "uniform:10,20"},
		{spec: "exp:mean=100", canon: "exp:mean=100"},
		{spec: "lognormal:mean=512,cv=1.5", canon: "lognormal:mean=512,cv=1.5"},
		{spec: "lognormal:cv=1.5,mean=512", canon: "lognormal:mean=512,cv=1.5"},
		{spec: "const:0", err: "outside 1..10000000"},
		{spec: "const:x", err: `"x" is not an integer`},
		{spec: "uniform:20,10", err: "below lower bound"},
		{spec: "uniform:5", err: "want uniform:A,B"},
		{spec: "exp:mean=0.5", err: "mean 0.5 must be in"},
		{spec: "exp:avg=3", err: `unknown parameter "avg"`},
		{spec: "lognormal:mean=10", err: "missing cv="},
		{spec: "lognormal:mean=10,cv=0", err: "cv 0 must be"},
		{spec: "lognormal:mean=10,cv=NaN", err: "not a number"},
		{spec: "lognormal:mean=10,mean=3,cv=1", err: "given twice"},
		{spec: "zipf:1", err: `unknown kind "zipf"`},
		{spec: "50", err: "want KIND:ARGS"},
		{spec: "empirical:", err: "want empirical:FILE"},
		{spec: "empirical:/nonexistent/x.parquet", err: "no such file"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			d, err := ParseTokenDist(tc.spec, Input)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.canon, d.String())
			again, err := ParseTokenDist(d.String(), Input)
			require.NoError(t, err)
			assert.Equal(t, d, again)
		})
	}
}

func TestTokenDistMoments(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		spec     string
		mean, cv float64
	}{
		{"const:7", 7, 0},
		{"uniform:1,9", 5, math.Sqrt((81-1)/12.0) / 5},
		{"exp:mean=400", 400, 1},
		{"lognormal:mean=1000,cv=0.8", 1000, 0.8},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			d := mustDist(t, tc.spec)
			const n = 200_000
			var sum, sq float64
			for range n {
				v := float64(d.Sample(r))
				if v < 1 {
					t.Fatalf("drew %v", v)
				}
				sum += v
				sq += v * v
			}
			mean := sum / n
			cv := math.Sqrt(sq/n-mean*mean) / mean
			assert.InEpsilon(t, tc.mean, mean, 0.02)
			if tc.cv > 0 {
				assert.InEpsilon(t, tc.cv, cv, 0.05)
			} else {
				assert.Zero(t, cv)
			}
		})
	}
}

func TestEmpiricalResamples(t *testing.T) {
	path := filepath.Join(t.TempDir(), "src.parquet")
	src := []Request{{RequestID: 0, InputTokens: 3, OutputTokens: 30}, {RequestID: 1, InputTokens: 5, OutputTokens: 50}}
	require.NoError(t, WriteFile(path, Metadata{}, src))
	in, err := ParseTokenDist("empirical:"+path, Input)
	require.NoError(t, err)
	out, err := ParseTokenDist("empirical:"+path, Output)
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(3, 4))
	seen := map[int32]bool{}
	for range 100 {
		seen[in.Sample(r)] = true
		seen[out.Sample(r)] = true
	}
	assert.Equal(t, map[int32]bool{3: true, 5: true, 30: true, 50: true}, seen)
}

func genAll(t *testing.T, cfg GenConfig) []Request {
	t.Helper()
	g, err := NewGenerator(cfg)
	require.NoError(t, err)
	out := make([]Request, cfg.N)
	n := 0
	for n < cfg.N {
		k := g.Next(out[n:min(cfg.N, n+1000)])
		require.Positive(t, k)
		n += k
	}
	assert.Zero(t, g.Next(make([]Request, 1)))
	return out
}

func arrivalStats(reqs []Request) (rate, cv float64) {
	var s Stats
	s.Add(reqs)
	s.Finish()
	return s.RatePerS, s.InterarrivalCV
}

func TestGeneratorProcesses(t *testing.T) {
	c1 := mustDist(t, "const:1")
	base := GenConfig{N: 100_000, Input: c1, Output: c1, Seed: 42}
	for _, tc := range []struct {
		name     string
		edit     func(*GenConfig)
		rate, cv float64
	}{
		{"poisson", func(c *GenConfig) { c.Arrivals, c.Rate = Poisson, 200 }, 200, 1},
		{"gamma", func(c *GenConfig) { c.Arrivals, c.Rate, c.CV = Gamma, 50, 3 }, 50, 3},
		{"gamma smooth", func(c *GenConfig) { c.Arrivals, c.Rate, c.CV = Gamma, 50, 0.5 }, 50, 0.5},
		{"fixed", func(c *GenConfig) { c.Arrivals, c.Rate = Fixed, 3 }, 3, 0},
		// On 1 s at 100/s, off 4 s silent: mean rate 20/s, bursty.
		{"onoff", func(c *GenConfig) {
			c.Arrivals, c.Rate, c.On, c.Off = OnOff, 100, time.Second, 4*time.Second
		}, 20, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			reqs := genAll(t, cfg)
			assert.Zero(t, reqs[0].ArrivalNS)
			for i := 1; i < len(reqs); i++ {
				if reqs[i].ArrivalNS < reqs[i-1].ArrivalNS || reqs[i].RequestID != int64(i) {
					t.Fatalf("row %d: %+v after %+v", i, reqs[i], reqs[i-1])
				}
			}
			rate, cv := arrivalStats(reqs)
			assert.InEpsilon(t, tc.rate, rate, 0.05, "rate")
			switch {
			case tc.cv > 0:
				assert.InEpsilon(t, tc.cv, cv, 0.1, "cv")
			case tc.cv == 0:
				assert.Less(t, cv, 1e-6)
			default:
				assert.Greater(t, cv, 1.5, "on/off must be burstier than Poisson")
			}
		})
	}
}

func TestGeneratorClosed(t *testing.T) {
	reqs := genAll(t, GenConfig{N: 50, Arrivals: Closed, Input: mustDist(t, "const:20"), Output: mustDist(t, "const:50")})
	for _, q := range reqs {
		assert.Zero(t, q.ArrivalNS)
		assert.EqualValues(t, 50, q.OutputTokens)
	}
}

func TestGeneratorDeterministic(t *testing.T) {
	dir := t.TempDir()
	cfg := GenConfig{N: 5000, Arrivals: Gamma, Rate: 10, CV: 2, Input: mustDist(t, "lognormal:mean=500,cv=1"), Output: mustDist(t, "exp:mean=100"), Seed: 9}
	a, b := filepath.Join(dir, "a.parquet"), filepath.Join(dir, "b.parquet")
	require.NoError(t, GenerateFile(a, cfg, Metadata{Name: "x"}))
	require.NoError(t, GenerateFile(b, cfg, Metadata{Name: "x"}))
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	assert.True(t, bytes.Equal(ab, bb), "same config must give identical bytes")

	// Token streams are independent of the arrival stream.
	other := cfg
	other.Output = mustDist(t, "const:3")
	x, y := genAll(t, cfg), genAll(t, other)
	for i := range x {
		if x[i].ArrivalNS != y[i].ArrivalNS || x[i].InputTokens != y[i].InputTokens {
			t.Fatalf("row %d: arrivals or inputs changed with the output spec", i)
		}
	}
	seed := cfg
	seed.Seed = 10
	z := genAll(t, seed)
	assert.NotEqual(t, x[1].ArrivalNS, z[1].ArrivalNS)
	_, meta, err := ReadAll(a)
	require.NoError(t, err)
	assert.Equal(t, "batchkit trace gen --arrivals gamma --rate 10 --cv 2 --n 5000 --input lognormal:mean=500,cv=1 --output exp:mean=100 --seed 9", meta.Source)
}

func TestGenConfigCheck(t *testing.T) {
	c1 := mustDist(t, "const:1")
	for _, tc := range []struct {
		cfg  GenConfig
		want string
	}{
		{GenConfig{N: 0, Arrivals: Poisson, Rate: 1, Input: c1, Output: c1}, "n 0"},
		{GenConfig{N: 1, Arrivals: Poisson, Rate: 0, Input: c1, Output: c1}, "rate 0"},
		{GenConfig{N: 1, Arrivals: Poisson, Rate: math.Inf(1), Input: c1, Output: c1}, "rate +Inf"},
		{GenConfig{N: 1, Arrivals: Gamma, Rate: 1, CV: 0, Input: c1, Output: c1}, "cv 0"},
		{GenConfig{N: 1, Arrivals: OnOff, Rate: 1, Input: c1, Output: c1}, "on/off mean durations"},
		{GenConfig{N: 1, Arrivals: OnOff, Rate: 1, OffRate: -1, On: 1, Off: 1, Input: c1, Output: c1}, "off-state rate"},
		{GenConfig{N: 1, Arrivals: "burst", Rate: 1, Input: c1, Output: c1}, `unknown arrival process "burst"`},
		{GenConfig{N: 1, Arrivals: Closed}, "token distributions are required"},
	} {
		assert.ErrorContains(t, tc.cfg.Check(), tc.want)
	}
}
