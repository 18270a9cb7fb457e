//go:build race

package storetest

// raceEnabled reports whether the race detector is on; the probe then runs
// fewer operations, since it slows every call many times over.
const raceEnabled = true
