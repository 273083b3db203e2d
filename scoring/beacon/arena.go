package beacon

// arena holds the pairs' history bytes in size-classed blocks carved
// from 64 KiB chunks, addressed by 32-bit handles: no Go pointer per
// pair, so a million pairs cost the garbage collector nothing to scan
// and no slice header (24 bytes) each.
//
// Class c holds blocks of minBlock << c bytes. A handle is chunk << 16 |
// offset / minBlock, plus one so that 0 means "no block".
type arena struct {
	chunks [][]byte
	// per class: the chunk being carved and the next offset in it, and
	// the freed blocks.
	cur  [numClasses]int32
	next [numClasses]int
	free [numClasses][]uint32
	used int // bytes in live blocks
}

const (
	minBlock   = 8
	numClasses = 11 // 8 B .. 8 KiB: hardCap x MaxHistory entries of a few bytes
	chunkSize  = 64 << 10
)

func classSize(c uint8) int { return minBlock << c }

// classFor returns the smallest class holding n bytes; ok is false when
// n exceeds the largest class.
func classFor(n int) (uint8, bool) {
	for c := uint8(0); c < numClasses; c++ {
		if classSize(c) >= n {
			return c, true
		}
	}
	return 0, false
}

func (a *arena) alloc(c uint8) uint32 {
	a.used += classSize(c)
	if f := a.free[c]; len(f) > 0 {
		h := f[len(f)-1]
		a.free[c] = f[:len(f)-1]
		return h
	}
	size := classSize(c)
	if len(a.chunks) == 0 || a.cur[c] == 0 || a.next[c]+size > chunkSize {
		a.chunks = append(a.chunks, make([]byte, chunkSize))
		a.cur[c] = int32(len(a.chunks)) // chunk index + 1
		a.next[c] = 0
	}
	off := a.next[c]
	a.next[c] += size
	return uint32(a.cur[c]-1)<<16 | uint32(off/minBlock) + 1
}

func (a *arena) release(h uint32, c uint8) {
	if h == 0 {
		return
	}
	a.used -= classSize(c)
	a.free[c] = append(a.free[c], h)
}

// bytes returns the block's memory.
func (a *arena) bytes(h uint32, c uint8) []byte {
	h--
	off := int(h&0xffff) * minBlock
	return a.chunks[h>>16][off : off+classSize(c) : off+classSize(c)]
}

// footprint is the memory the arena holds, free blocks included.
func (a *arena) footprint() int {
	n := len(a.chunks) * chunkSize
	for c := range a.free {
		n += cap(a.free[c]) * 4
	}
	return n
}
