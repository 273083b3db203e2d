package features

// slab is a growable array of T in fixed-size chunks, indexed by int32.
// Growing adds a chunk and never copies, so a table of a million pairs
// grows without a pause or a transient second copy, and its slack is at
// most one chunk.
type slab[T any] struct {
	chunks [][]T
	n      int32
}

const (
	chunkBits = 14
	chunkSize = 1 << chunkBits
	chunkMask = chunkSize - 1
)

func (s *slab[T]) at(i int32) *T { return &s.chunks[i>>chunkBits][i&chunkMask] }

// grow appends one zero element and returns its index.
func (s *slab[T]) grow() int32 {
	if int(s.n)>>chunkBits == len(s.chunks) {
		s.chunks = append(s.chunks, make([]T, chunkSize))
	}
	s.n++
	return s.n - 1
}

func (s *slab[T]) len() int { return int(s.n) }

// capacity is the number of elements allocated.
func (s *slab[T]) capacity() int { return len(s.chunks) * chunkSize }
