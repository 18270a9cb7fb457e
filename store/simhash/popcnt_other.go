//go:build !amd64

package simhash

// distances4 is the prefix pass of PrefixDistances for 4-word prefixes
// and no row skipped.
func distances4(q *[4]uint64, prefix []uint64, dist []uint16, hist []int32) {
	distances4Go(q, prefix[:4*len(dist)], dist, hist[:4*64+1])
}

// Hamming returns the number of differing bits of two codes.
func Hamming(a, b []uint64) int { return hammingGo(a, b) }
