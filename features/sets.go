package features

import "math/bits"

// Distinct sets of one host.
//
// A host's distinct sets (destination ports, internal destinations, ...)
// live in one open-addressing table of tagged uint64 elements. Beside each
// element sits a ring bitmap with one bit per host pane, set when the
// element occurs in that pane. A window's distinct count is then the
// number of elements with a bit inside the window's panes: one pass over
// the table answers every window size at once, and no per-pane copy of a
// set is kept. Bits of panes that left the retained range are cleared
// during that pass (and an element with no bit left is deleted), so the
// ring never aliases.

// Element tags, in the top byte of an element.
const (
	tagPort  = 1 // destination port (any destination)
	tagIHost = 2 // internal destination address id
	tagCombo = 3 // (destination port, internal destination id)
	tagPriv  = 4 // internal destination id reached on a privileged port
	tagLarge = 5 // external destination id of a connection over the large threshold
	tagXHost = 6 // external destination id (with tagIHost: the unique_hosts metric)
	numTags  = 7
)

const (
	emptyElem = 0
	tombElem  = ^uint64(0)
)

func elem(tag uint64, port uint16, addr uint32) uint64 {
	return tag<<56 | uint64(port)<<32 | uint64(addr)
}

func elemTag(e uint64) int                { return int(e >> 56) }
func elemPort(e uint64) uint16            { return uint16(e >> 32) }
func elemAddr(e uint64) uint32            { return uint32(e) }
func elemHasAddr(e uint64) bool           { t := elemTag(e); return t != tagPort }
func hashElem(e uint64) uint64            { return e * 0x9E3779B97F4A7C15 }
func ringBit(pane int32, r uint32) uint32 { return uint32(pane) & (r - 1) }

// elemSet is the table. slots holds stride = 1 + words uint64 per slot:
// the element, then its ring bitmap.
type elemSet struct {
	slots  []uint64
	live   uint32
	tombs  uint32
	perTag [numTags]uint32
}

// setGeom is shared by every host of an engine.
type setGeom struct {
	words  int    // bitmap words per element, a power of two
	ring   uint32 // bits in the ring: 64 * words
	stride int
	cap    uint32 // max elements per tag
}

func (s *elemSet) nslots(g *setGeom) int { return len(s.slots) / g.stride }

// add records that element e occurs in pane; it reports whether e is new,
// refused when e is new but its tag is at the cap, and first when this is
// e's first occurrence in pane (its bit was clear): the pane's distinct
// count of the tag grows.
func (s *elemSet) add(g *setGeom, e uint64, pane int32) (isNew, refused, first bool) {
	if s.slots == nil {
		s.slots = make([]uint64, 8*g.stride)
	}
	n := s.nslots(g)
	mask := uint64(n - 1)
	i := hashElem(e) >> (64 - bits.Len(uint(n-1))) & mask
	tomb := -1
	for {
		k := s.slots[int(i)*g.stride]
		if k == e {
			return false, false, s.setBit(g, int(i), pane)
		}
		if k == emptyElem {
			break
		}
		if k == tombElem && tomb < 0 {
			tomb = int(i)
		}
		i = (i + 1) & mask
	}
	tag := elemTag(e)
	if s.perTag[tag] >= g.cap {
		return true, true, false
	}
	if (s.live+s.tombs+1)*4 > uint32(n)*3 {
		s.rehash(g)
		return s.add(g, e, pane)
	}
	slot := int(i)
	if tomb >= 0 {
		slot = tomb
		s.tombs--
	}
	s.slots[slot*g.stride] = e
	s.live++
	s.perTag[tag]++
	s.setBit(g, slot, pane)
	return true, false, true
}

// setBit sets the pane's bit and reports whether it was clear.
func (s *elemSet) setBit(g *setGeom, slot int, pane int32) bool {
	b := ringBit(pane, g.ring)
	w := &s.slots[slot*g.stride+1+int(b>>6)]
	m := uint64(1) << (b & 63)
	clear := *w&m == 0
	*w |= m
	return clear
}

// rehash rebuilds the table, dropping tombstones and doubling when it is
// more than half full of live elements.
func (s *elemSet) rehash(g *setGeom) {
	n := len(s.slots) / g.stride
	if s.live*2 >= uint32(n) {
		n *= 2
	}
	s.resize(g, n)
}

// resize moves the live elements into a fresh table of n slots (a power
// of two), dropping the tombstones.
func (s *elemSet) resize(g *setGeom, n int) {
	old := s.slots
	s.slots = make([]uint64, n*g.stride)
	s.tombs = 0
	mask := uint64(n - 1)
	shift := 64 - bits.Len(uint(n-1))
	for j := 0; j < len(old); j += g.stride {
		k := old[j]
		if k == emptyElem || k == tombElem {
			continue
		}
		i := hashElem(k) >> shift & mask
		for s.slots[int(i)*g.stride] != emptyElem {
			i = (i + 1) & mask
		}
		copy(s.slots[int(i)*g.stride:int(i+1)*g.stride], old[j:j+g.stride])
	}
}

// del turns the slot into a tombstone.
func (s *elemSet) del(g *setGeom, slot int) {
	base := slot * g.stride
	s.perTag[elemTag(s.slots[base])]--
	s.slots[base] = tombElem
	clear(s.slots[base+1 : base+g.stride])
	s.live--
	s.tombs++
}

// shrink releases a table that became mostly empty, so a host that was
// busy once does not keep a large table forever.
func (s *elemSet) shrink(g *setGeom) {
	n := s.nslots(g)
	if s.live == 0 {
		s.slots, s.tombs = nil, 0
		return
	}
	if n > 64 && s.live*8 < uint32(n) {
		for n > 8 && s.live*4 < uint32(n) {
			n /= 2
		}
		s.resize(g, n)
	}
}

// ringMask sets in dst the ring bits of panes [lo, hi). A range of a full
// ring or more sets every bit.
func ringMask(dst []uint64, lo, hi int64, r uint32) {
	clear(dst)
	if hi <= lo {
		return
	}
	if hi-lo >= int64(r) {
		for i := range dst {
			dst[i] = ^uint64(0)
		}
		return
	}
	for p := lo; p < hi; p++ {
		b := ringBit(int32(p), r)
		dst[b>>6] |= 1 << (b & 63)
	}
}

func anyBit(m []uint64, w []uint64) bool {
	for i := range w {
		if m[i]&w[i] != 0 {
			return true
		}
	}
	return false
}
