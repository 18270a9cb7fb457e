package simhash

import "golang.org/x/sys/cpu"

// popcnt reports whether the CPU counts bits in one instruction. Go
// compiles math/bits.OnesCount64 for the baseline amd64 (GOAMD64=v1) as a
// test of the CPU feature before every count, and that test made the
// prefix pass more than twice as slow as the same loop built for v2; the
// assembly version counts with POPCNT alone.
var popcnt = cpu.X86.HasPOPCNT

// prefixPass4 writes into dist the distances to q of the 4-word code
// prefixes packed in prefix (len(dist) rows) and counts them in hist
// (4*64+1 entries). It needs POPCNT.
//
//go:noescape
func prefixPass4(q *[4]uint64, prefix []uint64, dist []uint16, hist []int32)

// distances4 is the prefix pass of PrefixDistances for 4-word prefixes
// and no row skipped.
func distances4(q *[4]uint64, prefix []uint64, dist []uint16, hist []int32) {
	// The assembly reads 4*len(dist) words of prefix and counts in the
	// first 4*64+1 of hist without bounds checks: these make them safe.
	prefix, hist = prefix[:4*len(dist)], hist[:4*64+1]
	if popcnt {
		prefixPass4(q, prefix, dist, hist)
		return
	}
	distances4Go(q, prefix, dist, hist)
}

// hammingPOPCNT is Hamming for len(b) >= len(a). It needs POPCNT.
//
//go:noescape
func hammingPOPCNT(a, b []uint64) int

// Hamming returns the number of differing bits of two codes.
func Hamming(a, b []uint64) int {
	b = b[:len(a)]
	if popcnt {
		return hammingPOPCNT(a, b)
	}
	return hammingGo(a, b)
}
