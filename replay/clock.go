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
// the engine. Measured on a 2-core Linux VM: with 300 µs, dispatch
// lateness was p50 260 µs (timers fired up to 0.55 ms late); with 1 ms,
// p50 0.2 µs and p99 12 µs.
const DefaultSpin = time.Millisecond

// Now implements Clock.
func (WallClock) Now() time.Time { return time.Now() }

// NewTimer implements Clock.
func (WallClock) NewTimer(d time.Duration) *time.Timer { return time.NewTimer(d) }

// SpinMargin implements Clock.
func (c WallClock) SpinMargin() time.Duration { return c.Spin }
