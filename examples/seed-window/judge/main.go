// Command judge weighs the seed report's own numbers with batchkit's
// statistics: is its measured difference distinguishable from zero, how many
// questions would show the effect the simulator predicts, and how much of
// the reported overhead a batching window (or a fixed per-request cost) can
// explain. Every default is a figure from the report
// (../shared/seed/000_f978cbb31cb6cc2d.txt); flags let you judge your own.
package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/batchkit/batchkit/sim/stats"
	"github.com/spf13/pflag"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// arm is one run's published summary of a metric in ms.
type arm struct {
	mean, sd float64
	n        int
}

func parseArm(flag, s string) (arm, error) {
	f := strings.Split(s, ",")
	if len(f) != 3 {
		return arm{}, fmt.Errorf("--%s %q: want MEAN_MS,SD_MS,N", flag, s)
	}
	mean, err1 := strconv.ParseFloat(f[0], 64)
	sd, err2 := strconv.ParseFloat(f[1], 64)
	n, err3 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2, err3); err != nil || !(sd >= 0) || n < 2 || math.IsInf(mean, 0) || math.IsNaN(mean) {
		return arm{}, fmt.Errorf("--%s %q: want MEAN_MS,SD_MS,N with SD ≥ 0 and N ≥ 2", flag, s)
	}
	return arm{mean, sd, n}, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("judge", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a := fs.String("a", "415.85,6.49,50", "run A's mean response time, its SD (ms) and questions (report: v1.4.1, 2.0 ms window)")
	b := fs.String("b", "414.34,6.45,50", "run B's (report: Phase 1, 1.0 ms window)")
	predicted := fs.Duration("predicted", 500*time.Microsecond, "the effect on mean latency the simulator predicts for A→B")
	pairedSD := fs.Duration("paired-sd", 0, "SD of per-request differences in a paired run (from simrun); 0: skip the paired figure")
	bareTotal := fs.Duration("bare-total", 183320*time.Millisecond, "bare engine's total wall time (report: 183.32 s)")
	servedTotal := fs.Duration("served-total", 204740*time.Millisecond, "served stack's total wall time (report: 204.74 s, +11.7 %)")
	bareMean := fs.Float64("bare-mean", 406.20, "bare engine's mean response time in ms (report: 406.20)")
	window := fs.Duration("window", 2*time.Millisecond, "the batching window of run A")
	windowB := fs.Duration("window-b", time.Millisecond, "the batching window of run B")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "judge: %v\n", err)
		return 2
	}
	if *help {
		fmt.Fprintln(stdout, "judge: weigh a before/after report's summary numbers (defaults: the seed report)\n\nUsage: judge [--a MEAN,SD,N] [--b MEAN,SD,N] [--predicted D] [--paired-sd D] ...\n\nFlags:")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	A, err := parseArm("a", *a)
	if err == nil {
		var B arm
		if B, err = parseArm("b", *b); err == nil {
			err = judge(stdout, A, B, *predicted, *pairedSD, *bareTotal, *servedTotal, *bareMean, *window, *windowB)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "judge: %v\n", err)
		return 2
	}
	return 0
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func judge(w io.Writer, A, B arm, predicted, pairedSD, bareTotal, servedTotal time.Duration, bareMean float64, window, windowB time.Duration) error {
	if predicted <= 0 || pairedSD < 0 || bareTotal <= 0 || servedTotal <= 0 || !(bareMean > 0) || window < 0 || windowB < 0 {
		return errors.New("--predicted, --bare-total, --served-total and --bare-mean must be positive; --paired-sd, --window and --window-b not negative")
	}
	diff, p, warns := stats.WelchFromSummary(A.mean, A.sd, A.n, B.mean, B.sd, B.n, 0.95)
	verdict := "NOT distinguishable from zero"
	if !diff.Contains(0) {
		verdict = "distinguishable from zero"
	}
	fmt.Fprintf(w, "1. The measured difference\n")
	fmt.Fprintf(w, "   B−A mean response = %+.2f ms, %s 95%% CI [%.2f, %.2f] ms, p = %.2f: %s.\n", diff.Est, diff.Method, diff.Lo, diff.Hi, p, verdict)
	for _, s := range warns {
		fmt.Fprintf(w, "   note: %s\n", s)
	}
	sd := math.Sqrt((A.sd*A.sd + B.sd*B.sd) / 2)
	fmt.Fprintf(w, "   A true difference much under the CI's half-width, %.2f ms, could not have been told from zero by these runs.\n", (diff.Hi-diff.Lo)/2)

	fmt.Fprintf(w, "\n2. Questions needed (95 %% confidence, 80 %% power)\n")
	effects := []struct {
		what string
		d    float64
	}{
		{"the simulator's predicted effect", ms(predicted)},
		{fmt.Sprintf("the window change itself (%v → %v)", window, windowB), math.Abs(ms(window - windowB))},
		{"the served stack's whole cost", A.mean - bareMean},
	}
	for _, e := range effects {
		if !(e.d > 0) {
			continue
		}
		n := stats.NPerArmMean(sd, e.d, false, 0.95, stats.DefaultPower)
		fmt.Fprintf(w, "   %s, %.2f ms: %d per arm in two independent runs (SD %.2f ms)", e.what, e.d, n, sd)
		if pairedSD > 0 {
			fmt.Fprintf(w, "; %d paired (same questions, per-question SD of the difference %.2f ms)", stats.NPerArmMean(ms(pairedSD), e.d, true, 0.95, stats.DefaultPower), ms(pairedSD))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "   p99 needs ≥ %d questions for a finite 95 %% CI; with %d it is the maximum.\n", stats.MinSamplesQuantileCI(0.99, 0.95), A.n)

	extra := servedTotal - bareTotal
	perReq := ms(extra) / float64(A.n)
	fmt.Fprintf(w, "\n3. The overhead\n")
	fmt.Fprintf(w, "   Total wall time %+.2f s (%+.1f %%) over %d questions = %.1f ms per question.\n", extra.Seconds(), 100*(ms(servedTotal)/ms(bareTotal)-1), A.n, perReq)
	fmt.Fprintf(w, "   Mean response time %+.2f ms per question (%.2f vs %.2f ms): per-request latency carries %.1f %% of the extra wall time.\n",
		A.mean-bareMean, A.mean, bareMean, 100*(A.mean-bareMean)/perReq)
	fmt.Fprintf(w, "   A %v window adds at most %v per question (one client: every request waits at most one window), %.3f s in all: %.2f %% of the bare run.\n",
		window, window, ms(window)*float64(A.n)/1e3, 100*ms(window)*float64(A.n)/ms(bareTotal))
	fmt.Fprintf(w, "   To explain %+.1f %% a fixed per-request overhead would have to be %.1f ms, %.0f %% of the bare engine's whole response time,\n",
		100*(ms(servedTotal)/ms(bareTotal)-1), perReq, 100*perReq/bareMean)
	fmt.Fprintf(w, "   yet the measured responses grew by only %.2f ms: most of the overhead lies outside the requests' measured latency.\n", A.mean-bareMean)
	return nil
}
