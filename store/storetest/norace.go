//go:build !race

package storetest

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
