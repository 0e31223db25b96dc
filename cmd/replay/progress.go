package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/batchkit/batchkit/replay"
)

// printer writes progress to stderr: one rewritten line on a terminal,
// plain lines at most every 10 s otherwise.
type printer struct {
	w    io.Writer
	tty  bool
	last time.Time
}

func newPrinter(w io.Writer) *printer {
	p := &printer{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *printer) line(s string, final bool) {
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", s)
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	if final || time.Since(p.last) >= 10*time.Second {
		p.last = time.Now()
		fmt.Fprintln(p.w, s)
	}
}

// watch prints a run's progress every tick until stop is closed.
func watch(pr *printer, label string, p *replay.Progress, stop <-chan struct{}, finished chan<- struct{}) {
	defer close(finished)
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	show := func(final bool) {
		done, total, inf := p.Done.Load(), p.Total.Load(), p.InFlight.Load()
		el := time.Since(start).Seconds()
		rate := 0.0
		if el > 0 {
			rate = float64(done) / el
		}
		eta := "?"
		if rate > 0 && total > done {
			eta = (time.Duration(float64(total-done)/rate) * time.Second / time.Second).Round(time.Second).String()
		} else if total == done {
			eta = "0s"
		}
		pr.line(fmt.Sprintf("%s: %d/%d done, %d in flight, %.1f req/s, ETA %s", label, done, total, inf, rate, eta), final)
	}
	for {
		select {
		case <-stop:
			show(true)
			return
		case <-tick.C:
			show(false)
		}
	}
}
