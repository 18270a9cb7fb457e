//go:build !amd64

package store

func dot32(a, b []float32) float32 { return sdot(a, b[:len(a)]) }
