package beacon

// index maps 64-bit pair keys to slab positions with open addressing
// and linear probing: 4 bytes a slot at a load of at most 3/4, about a
// fifth of a Go map's cost per entry. The key itself lives in the slab,
// which the caller's key function reads. Deletion shifts the following
// cluster back (Knuth, TAOCP vol. 3, 6.4, Algorithm R), so there are no
// tombstones.
type index struct {
	slots []uint32 // slab position + 1; 0 is empty
	mask  uint64
	n     int
	seed  uint64
}

func newIndex(seed uint64) *index {
	return &index{slots: make([]uint32, 1024), mask: 1023, seed: seed}
}

// hash is SplitMix64's finaliser of the key mixed with the seed, so that
// crafted addresses cannot aim at one cluster without knowing the seed.
func (ix *index) hash(k uint64) uint64 {
	z := k ^ ix.seed
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// find returns the slab position of k, or -1.
func (ix *index) find(k uint64, key func(uint32) uint64) int {
	for i := ix.hash(k) & ix.mask; ; i = (i + 1) & ix.mask {
		s := ix.slots[i]
		if s == 0 {
			return -1
		}
		if key(s-1) == k {
			return int(s - 1)
		}
	}
}

// insert adds k at slab position pos; k must not be present.
func (ix *index) insert(k uint64, pos uint32, key func(uint32) uint64) {
	if (ix.n+1)*4 > len(ix.slots)*3 {
		ix.grow(key)
	}
	i := ix.hash(k) & ix.mask
	for ix.slots[i] != 0 {
		i = (i + 1) & ix.mask
	}
	ix.slots[i] = pos + 1
	ix.n++
}

// remove deletes k, which must be present.
func (ix *index) remove(k uint64, key func(uint32) uint64) {
	i := ix.hash(k) & ix.mask
	for key(ix.slots[i]-1) != k {
		i = (i + 1) & ix.mask
	}
	ix.slots[i] = 0
	ix.n--
	// Move back every entry of the cluster after i whose home slot is
	// not cyclically within (i, j].
	for j := (i + 1) & ix.mask; ix.slots[j] != 0; j = (j + 1) & ix.mask {
		home := ix.hash(key(ix.slots[j]-1)) & ix.mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			ix.slots[i], ix.slots[j] = ix.slots[j], 0
			i = j
		}
	}
}

func (ix *index) grow(key func(uint32) uint64) {
	old := ix.slots
	ix.slots = make([]uint32, 2*len(old))
	ix.mask = uint64(len(ix.slots) - 1)
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := ix.hash(key(s-1)) & ix.mask
		for ix.slots[i] != 0 {
			i = (i + 1) & ix.mask
		}
		ix.slots[i] = s
	}
}
