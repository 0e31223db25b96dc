// Package replay runs batching policies in wall-clock time against a real
// engine (package realengine), through the very serving model the
// simulator uses (sim.Server), so that a prediction of package sim can be
// held against a measurement.
//
// One driver loop (Run) owns the clock: it selects over client sends (open
// loop at trace times, or closed loop), the completion of the engine step
// in flight and the Server's next timer, and it is the only code that
// reads the time. Engine steps run in one worker goroutine; the loop
// translates each one-step sim.StepPlan into Retire/Admit/Step calls. Waits
// sleep until shortly before a deadline and busy-wait the rest (Clock's
// SpinMargin), so that policy wake-ups keep sub-millisecond windows; the
// lateness of every wake-up and every open-loop send is recorded
// (Report.Dispatch, Report.Send).
//
// Results use sim's Parquet schema and Summary keys; step records
// (StepRecord) add the measured step times. Calibrate helpers turn a
// realengine.Calibration into a sim.Profile.
//
// The package must not print (commands do) and must not read the clock
// anywhere but in Run's loop, so that tests drive it inside testing/synctest
// bubbles with a fake engine.
package replay
