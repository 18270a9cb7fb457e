//go:build !amd64

package store

// dot32 is Dot32: gonum's kernel.
func dot32(a, b []float32) float32 { return sdot(a, b[:len(a)]) }
