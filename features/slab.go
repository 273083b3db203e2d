package features

// slab is a growable array of T in fixed-size chunks, indexed by int32.
// Growing adds a chunk and never copies, so a table of a million pairs
// grows without a pause or a transient second copy, pointers into it stay
// valid, and its slack is at most one chunk.
type slab[T any] struct {
	chunks [][]T
	n      int32
	shift  uint8 // log2 of the chunk length; 0 means defaultChunkBits
}

const defaultChunkBits = 14

// setChunk sets the chunk length to 1<<bits; only before the first grow.
func (s *slab[T]) setChunk(bits uint8) { s.shift = bits }

func (s *slab[T]) at(i int32) *T {
	sh := s.shift
	return &s.chunks[i>>sh][i&(1<<sh-1)]
}

// grow appends one zero element and returns its index.
func (s *slab[T]) grow() int32 {
	if s.shift == 0 {
		s.shift = defaultChunkBits
	}
	if int(s.n)>>s.shift == len(s.chunks) {
		s.chunks = append(s.chunks, make([]T, 1<<s.shift))
	}
	s.n++
	return s.n - 1
}

func (s *slab[T]) len() int { return int(s.n) }

// capacity is the number of elements allocated.
func (s *slab[T]) capacity() int {
	if len(s.chunks) == 0 {
		return 0
	}
	return len(s.chunks) << s.shift
}
