//go:build race

package series

// The race detector's runtime allocates for itself, so allocation
// figures mean nothing under it.
const raceEnabled = true
