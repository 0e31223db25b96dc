// Package stats turns samples of per-request measurements (latency, TTFT,
// TPOT, window wait, throughput) into numbers that say how sure they are:
// confidence intervals for means and quantiles, paired and unpaired
// comparisons of two runs, summaries of repeated runs, and sample-size
// guidance for an effect the user wants to detect.
//
// Every Interval names the method that produced it:
//
//   - means: Student t interval (assumes the sample mean is roughly normal,
//     which the central limit theorem gives for a few dozen requests);
//   - quantiles of one sample: exact distribution-free order-statistic
//     interval (the number of samples below the true quantile is binomial);
//   - differences of means: Welch t (unpaired) or t on per-request
//     differences (paired);
//   - differences of quantiles and other statistics without a closed form:
//     seeded percentile bootstrap, resamples capped (default 1000);
//   - unpaired p-values for quantiles: Mann–Whitney U from
//     golang.org/x/perf/benchmath.
//
// Sample-size guidance uses the normal approximation with a Student t
// correction for means. For quantiles it is a large-sample approximation,
// labelled so: the variance of a sample quantile shrinks as 1/n, estimated
// either from the asymptotic formula p(1−p)/(n f(q)²) with f a Gaussian
// kernel density (NPerArmQuantile), or from the bootstrap standard error of
// the observed difference (NPerArmFromSE, which Compare uses because it
// captures pairing without estimating a joint tail probability). Both are
// rough when few samples lie in the tail, and say so.
//
// The package works on plain float64 slices and imports no other project
// package, so the simulator, replay and the commands can all use it. For
// callers that keep samples in another form (the simulator's summaries
// count values per µs), QuantileCIRanks gives the order statistics that
// bound a quantile's interval and MeanCIMoments the mean's interval from
// running moments. It never
// prints: caveats are returned as plain-language warnings next to the numbers.
// Randomness (bootstrap) always comes from an explicit seed, so the same
// inputs and seed give byte-identical results.
package stats
