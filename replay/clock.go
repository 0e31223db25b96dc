package replay

import "time"

// Clock is the time source of the driver loop. Tests run the loop inside a
// testing/synctest bubble with WallClock{} (no spinning: a goroutine that
// spins never lets a bubble's fake time advance).
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) *time.Timer
	// SpinMargin is how long before a deadline the loop stops sleeping and
	// busy-waits; 0 sleeps all the way.
	SpinMargin() time.Duration
}

// WallClock is the process's monotonic clock. Go timers on Linux usually
// fire 50 µs–1 ms late under load; Spin is the busy-wait margin that buys
// that back.
type WallClock struct {
	Spin time.Duration
}

// DefaultSpin is the busy-wait margin of the command: long enough to
// cover a timer's usual lateness, short enough not to steal much CPU from
// the engine. When the process has nothing else to run, Go sleeps in its
// netpoller in whole milliseconds, so a timer fires up to ~1 ms late even
// on an idle machine: on an idle 16-core host (H200 machine) timers fired
// 0.3-1.1 ms late, and with a 1 ms margin about one dispatch in a hundred
// was 40-130 µs late. On a 2-core Linux VM a 300 µs margin gave dispatch
// lateness p50 260 µs, 1 ms p50 0.2 µs; and against sleeping only (tiny
// cpu engine, fixed 2 ms, 300 requests, one profile, three alternated
// pairs) 1.5 ms took the mean window wait's error from -0.21..-0.26 to
// -0.04..-0.08 ms and TTFT's from +11..+23 % to +5..+8 %, for engine
// steps 1.5-2 % slower (the spin shares the two cores).
const DefaultSpin = 1500 * time.Microsecond

// Now implements Clock.
func (WallClock) Now() time.Time { return time.Now() }

// NewTimer implements Clock.
func (WallClock) NewTimer(d time.Duration) *time.Timer { return time.NewTimer(d) }

// SpinMargin implements Clock.
func (c WallClock) SpinMargin() time.Duration { return c.Spin }
