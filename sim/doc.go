// Package sim is batchkit's discrete-event simulator: it runs a batching
// policy (package policies) against a model of an LLM serving engine on a
// virtual clock and records, for every request, where its time went.
//
// # The serving model and its seam
//
// Server is the serving model, shared with replay: a request arrives, pays
// the profile's fixed per-request overhead, waits in the policy's queue, is
// dispatched in a batch to the engine queue, is admitted into the engine's
// running set (sequential: one request at a time; static: one whole batch
// at a time; continuous: at every step boundary up to max_batch sequences
// and an optional token budget), is prefilled in one step that yields its
// first token and decodes one token per further step.
//
// Server never reads a clock and never decides how long a step takes. A
// driver feeds it Arrive (a client sent a request), Timer (NextTimer is
// due: an overhead ended or the policy's wake-up) and StepDone (the plan in
// flight ended), each with the time now; after each call it asks NextStep
// for the next StepPlan — which sequences to prefill (P prompt tokens), how
// many decode (D) over how much context (K), for how many steps — and runs
// it. That is the whole seam:
//
//   - Run, the simulator, is a thin virtual-clock loop: durations come from
//     CostModel (the Profile's base + per_prefill_token·P + per_decode_seq·D
//   - per_kv_token·K per step, with seeded lognormal jitter), and plans
//     may span several steps (ServerConfig.MultiStep), cut short with Cut
//     when a dispatched request could join (CutWanted).
//   - Replay drives the same Server with wall-clock now values, runs each
//     one-step plan (MultiStep false) on a real engine using
//     StepPlan.Admitted/Retired, and calls StepDone with the measured end.
//
// The policy hears every event through Server, except those it declares
// ignored (policies.EventFilter) and those whose Step it says would be a
// no-op (policies.Skipper): Server skips them by the rules those
// interfaces document, so the simulator and replay skip the same ones and
// a policy decides alike under both. A policy that implements
// policies.RefStepper is stepped through StepRef, by reference.
//
// Per-request records are Result (the Parquet schema shared with replay,
// written by ResultWriter, read by OpenResults/ReadResults); Collector
// turns a stream of them into a Summary with exact quantiles at 1 µs
// resolution in memory flat in the number of requests.
//
// The package must not read the wall clock, use a global random source or
// print: commands (cmd/simrun) do the printing.
package sim
