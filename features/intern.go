package features

import "net/netip"

// addrKey is an address as 16 bytes: IPv4 as its IPv4-mapped IPv6 form.
// Zones are dropped; conn logs do not carry them in a way that matters here.
type addrKey [16]byte

func keyOf(a netip.Addr) addrKey { return addrKey(a.As16()) }

func (k addrKey) addr() netip.Addr { return netip.AddrFrom16(k).Unmap() }

// maxAddrs bounds address ids to 24 bits so that a pair key (source id,
// destination id, port) packs into one uint64.
const maxAddrs = 1<<24 - 1

// addrTable interns addresses to small ids that index flat slices. Ids are
// reference counted (by the host that is the address, by pairs, by host
// set elements that name it) and recycled when the count falls to zero,
// so the table holds only addresses some state still needs.
type addrTable struct {
	ids   map[addrKey]uint32
	keys  []addrKey
	meta  []addrMeta
	free  []uint32
	limit int
}

type addrMeta struct {
	refs     uint32
	host     int32 // host slot when this address is a tracked host, else -1
	pairHead int32 // first pair with this destination, else -1
}

func newAddrTable(limit int) addrTable {
	return addrTable{ids: make(map[addrKey]uint32), limit: min(limit, maxAddrs)}
}

// get returns k's id, adding k with no references if it is new; ok is false
// when the table is full. A caller that takes no reference must call
// dropIfUnused so that a new id does not leak.
func (t *addrTable) get(k addrKey) (uint32, bool) {
	if id, ok := t.ids[k]; ok {
		return id, true
	}
	var id uint32
	if n := len(t.free); n > 0 {
		id = t.free[n-1]
		t.free = t.free[:n-1]
		t.keys[id] = k
		t.meta[id] = addrMeta{host: -1, pairHead: -1}
	} else {
		if len(t.keys) >= t.limit {
			return 0, false
		}
		id = uint32(len(t.keys))
		t.keys = append(t.keys, k)
		t.meta = append(t.meta, addrMeta{host: -1, pairHead: -1})
	}
	t.ids[k] = id
	return id, true
}

func (t *addrTable) ref(id uint32) { t.meta[id].refs++ }

func (t *addrTable) unref(id uint32) {
	m := &t.meta[id]
	m.refs--
	if m.refs == 0 {
		t.remove(id)
	}
}

func (t *addrTable) dropIfUnused(id uint32) {
	if t.meta[id].refs == 0 {
		t.remove(id)
	}
}

func (t *addrTable) remove(id uint32) {
	delete(t.ids, t.keys[id])
	t.meta[id] = addrMeta{host: -1, pairHead: -1}
	t.free = append(t.free, id)
}

func (t *addrTable) len() int { return len(t.ids) }
