package features

import (
	"math"
	"slices"
)

// Host state: one entry per tracked internal source, its non-empty panes
// in a list (newest first) and its distinct sets (sets.go).

type host struct {
	addr uint32 // address id
	live bool
	// panes is the newest pane, -1 when none; the list runs newest to
	// oldest, so the open panes, where events land, are at its front.
	panes int32
	// lastTS is the newest event time seen, for idle and LRU eviction.
	lastTS int64
	// cleanLow: set bits of panes before it have been cleared.
	cleanLow int64
	set      elemSet
}

// hostPane aggregates one host's connections in one pane. Times are µs
// offsets from the pane start.
type hostPane struct {
	idx          int32 // pane index, Engine.hostIdx
	next         int32
	conns        uint32
	failed       uint32
	known        uint32 // connections with a known conn_state
	staging      uint32
	large        uint32
	first, last  uint32
	refused      [numTags]uint16 // set elements refused at the cap, saturating
	bytesOut     uint64
	bytesIn      uint64
	bytesOutExt  uint64
	stagingBytes uint64
	largeBytes   uint64
}

// hostAgg is the sum of panes over a window.
type hostAgg struct {
	conns, failed, known, staging, large uint32
	bytesOut, bytesIn, bytesOutExt       uint64
	stagingBytes, largeBytes             uint64
	first, last                          int64
	refused                              [numTags]uint32
}

func (a *hostAgg) addPane(p *hostPane, start int64) {
	if a.conns == 0 || start+int64(p.first) < a.first {
		a.first = start + int64(p.first)
	}
	if a.conns == 0 || start+int64(p.last) > a.last {
		a.last = start + int64(p.last)
	}
	a.conns += p.conns
	a.failed += p.failed
	a.known += p.known
	a.staging += p.staging
	a.large += p.large
	a.bytesOut += p.bytesOut
	a.bytesIn += p.bytesIn
	a.bytesOutExt += p.bytesOutExt
	a.stagingBytes += p.stagingBytes
	a.largeBytes += p.largeBytes
	for i, r := range p.refused {
		a.refused[i] += uint32(r)
	}
}

// hostShape is one window size of the host kind. Every host window with
// this size is evaluated from the same pass; a shape is due at a tick when
// one of its windows' hops divides the tick.
type hostShape struct {
	size  int64 // µs
	panes int64
	hops  []int64
	name  string
	nameB []byte // name, for the dictionary builder without a conversion
}

// newHostPane takes a pane from the free list or grows the slab.
func (e *Engine) newHostPane(idx int32) int32 {
	var i int32
	if e.hpFree >= 0 {
		i = e.hpFree
		e.hpFree = e.hpanes.at(i).next
		*e.hpanes.at(i) = hostPane{}
	} else {
		i = e.hpanes.grow()
	}
	e.hpanes.at(i).idx = idx
	e.hpanes.at(i).next = -1
	e.nHostPanes++
	return i
}

func (e *Engine) freeHostPane(i int32) {
	*e.hpanes.at(i) = hostPane{idx: math.MinInt32, next: e.hpFree}
	e.hpFree = i
	e.nHostPanes--
}

// hostPaneFor returns h's pane idx, creating it in order. Events land in
// the open panes, at the front of the list.
func (e *Engine) hostPaneFor(h *host, idx int32) *hostPane {
	prev := int32(-1)
	cur := h.panes
	for cur >= 0 {
		p := e.hpanes.at(cur)
		if p.idx == idx {
			return p
		}
		if p.idx < idx {
			break
		}
		prev, cur = cur, p.next
	}
	n := e.newHostPane(idx)
	e.hpanes.at(n).next = cur
	if prev < 0 {
		h.panes = n
	} else {
		e.hpanes.at(prev).next = n
	}
	return e.hpanes.at(n)
}

// addHost records one connection of an internal source. dst is the
// responder's address id (ok when interned), dstInternal whether the
// responder is internal.
func (e *Engine) addHost(hid int32, c *connView) {
	h := &e.hosts[hid]
	pidx := int32(e.hostIdx(c.t))
	if int64(pidx)-int64(e.geo.ring) >= h.cleanLow {
		// A pane far ahead of the last clean would share ring bits with
		// panes not yet cleared.
		e.cleanHost(h, e.hostLow())
	}
	p := e.hostPaneFor(h, pidx)
	off := uint32(c.t - e.hostStart(pidx))
	if p.conns == 0 || off < p.first {
		p.first = off
	}
	if p.conns == 0 || off > p.last {
		p.last = off
	}
	p.conns++
	if c.state != 0 {
		p.known++
		if c.failed {
			p.failed++
		}
	}
	p.bytesOut += c.out
	p.bytesIn += c.in
	if c.t > h.lastTS {
		h.lastTS = c.t
	}

	e.addElem(h, p, elem(tagPort, c.port, 0), pidx, -1)
	if !c.dstOK {
		return
	}
	if c.dstInternal {
		e.addElem(h, p, elem(tagIHost, 0, c.dst), pidx, int64(c.dst))
		e.addElem(h, p, elem(tagCombo, c.port, c.dst), pidx, int64(c.dst))
		if e.privPorts.has(c.port) {
			e.addElem(h, p, elem(tagPriv, 0, c.dst), pidx, int64(c.dst))
		}
		if e.stagingPorts.has(c.port) && c.out+c.in > e.cfg.Signals.DataStaging.TransferBytesOver {
			p.staging++
			p.stagingBytes += c.out + c.in
		}
		return
	}
	p.bytesOutExt += c.out
	if c.out > e.cfg.Signals.DestinationDiversity.ConnectionBytesOver {
		p.large++
		p.largeBytes += c.out
		e.addElem(h, p, elem(tagLarge, 0, c.dst), pidx, int64(c.dst))
	}
}

func (e *Engine) addElem(h *host, p *hostPane, el uint64, pidx int32, addr int64) {
	isNew, refused := h.set.add(&e.geo, el, pidx)
	if refused {
		t := elemTag(el)
		if p.refused[t] < math.MaxUint16 {
			p.refused[t]++
		}
		e.stats.SetOverflows++
		if n, ok := e.overflowLog.allow(e.maxTS); ok {
			e.overflow(n, "distinct set full: new elements are counted, not stored", "host", e.addrs.keys[h.addr].addr())
		}
		return
	}
	if isNew && addr >= 0 {
		e.addrs.ref(uint32(addr))
	}
}

// hostLow is the oldest host pane index still needed after the last
// processed tick.
func (e *Engine) hostLow() int64 {
	return e.hostIdx(e.lastTick) + 1 - e.hostKeepPanes
}

// cleanHost clears set bits of every pane outside [low, low+keepSpan),
// the panes that can still hold data after the tick that made low the
// oldest needed pane, and deletes elements left without any bit.
func (e *Engine) cleanHost(h *host, low int64) {
	keep := e.scratchMask[:e.geo.words]
	ringMask(keep, low, low+e.hostKeepSpan, e.geo.ring)
	h.cleanLow = low
	st := e.geo.stride
	s := h.set.slots
	for j := 0; j < len(s); j += st {
		k := s[j]
		if k == emptyElem || k == tombElem {
			continue
		}
		if !e.keepBits(s[j+1:j+st], keep) {
			if elemHasAddr(k) {
				e.addrs.unref(elemAddr(k))
			}
			h.set.del(&e.geo, j/st)
		}
	}
}

// keepBits masks an element's bitmap with keep and reports whether any
// bit is left.
func (e *Engine) keepBits(m, keep []uint64) bool {
	var any uint64
	for w := range keep {
		m[w] &= keep[w]
		any |= m[w]
	}
	return any != 0
}

// newHost starts tracking internal source addr, applying the overflow
// policy at the cap. It returns -1 when the host is refused.
func (e *Engine) newHost(addr uint32, t int64) int32 {
	if e.nHosts >= e.cfg.Limits.MaxHosts {
		if e.cfg.Limits.Overflow == EvictOldest {
			e.evictOldestHosts()
		}
		if e.nHosts >= e.cfg.Limits.MaxHosts {
			e.stats.HostsRefused++
			if n, ok := e.overflowLog.allow(e.maxTS); ok {
				e.overflow(n, "host cap reached: new host refused", "host", e.addrs.keys[addr].addr())
			}
			return -1
		}
	}
	var i int32
	if n := len(e.hostFree); n > 0 {
		i = e.hostFree[n-1]
		e.hostFree = e.hostFree[:n-1]
	} else {
		i = int32(len(e.hosts))
		e.hosts = append(e.hosts, host{})
	}
	e.hosts[i] = host{addr: addr, live: true, panes: -1, lastTS: t, cleanLow: e.hostLow()}
	e.addrs.ref(addr)
	e.addrs.meta[addr].host = i
	e.nHosts++
	return i
}

func (e *Engine) evictHost(i int32) {
	h := &e.hosts[i]
	e.freeHostPanes(h.panes)
	st := e.geo.stride
	for j := 0; j < len(h.set.slots); j += st {
		k := h.set.slots[j]
		if k != emptyElem && k != tombElem && elemHasAddr(k) {
			e.addrs.unref(elemAddr(k))
		}
	}
	e.addrs.meta[h.addr].host = -1
	e.addrs.unref(h.addr)
	*h = host{panes: -1}
	e.hostFree = append(e.hostFree, i)
	e.nHosts--
}

// evictOldestHosts frees about a sixteenth of the cap, least recently
// active first, skipping hosts that still have an open pane. One selection
// pass serves many insertions, so the cost per new host stays constant.
func (e *Engine) evictOldestHosts() {
	sealed := e.wm - floorMod(e.wm, e.g.hostPane) // start of the oldest open host pane
	cand := e.scratchTS[:0]
	for i := range e.hosts {
		if h := &e.hosts[i]; h.live && h.lastTS < sealed {
			cand = append(cand, h.lastTS)
		}
	}
	e.scratchTS = cand
	n := max(1, e.cfg.Limits.MaxHosts/16)
	if len(cand) == 0 {
		return
	}
	n = min(n, len(cand))
	cut := nthSmallest(cand, n-1)
	evicted := 0
	for i := range e.hosts {
		if evicted >= n {
			break
		}
		if h := &e.hosts[i]; h.live && h.lastTS <= cut && h.lastTS < sealed {
			e.evictHost(int32(i))
			evicted++
		}
	}
	e.stats.HostsEvictedCap += uint64(evicted)
	if n, ok := e.overflowLog.allow(e.maxTS); ok {
		e.overflow(n, "host cap reached: least recently active hosts evicted", "evicted", evicted)
	}
}

// hostTick evaluates the host shapes due at tick T and trims or evicts
// host state no later window needs.
func (e *Engine) hostTick(T int64) {
	tp := e.hostIdx(T) // panes before tp are complete
	due := e.dueShapes[:0]
	for k := range e.hostShapes {
		for _, hop := range e.hostShapes[k].hops {
			if floorMod(T, hop) == 0 {
				due = append(due, k)
				break
			}
		}
	}
	e.dueShapes = due
	var largest int64
	for _, k := range due {
		largest = max(largest, e.hostShapes[k].panes)
	}
	for k, idx := range due {
		ringMask(e.shapeMasks[k], tp-e.hostShapes[idx].panes, tp, e.geo.ring)
		e.closed = append(e.closed, WindowBounds{"host", e.hostShapes[idx].name, T - e.hostShapes[idx].size, T})
	}

	deep := largest == e.hostKeepPanes // the walk reaches the oldest needed pane
	for i := range e.hosts {
		h := &e.hosts[i]
		if !h.live {
			continue
		}
		if h.panes < 0 || int64(e.hpanes.at(h.panes).idx) < tp-e.hostKeepPanes {
			// Nothing for this tick's windows or any later one.
			e.stats.HostsEvictedIdle++
			e.evictHost(int32(i))
			continue
		}
		if len(due) > 0 {
			e.evalHost(int32(i), tp, T, due, largest, deep)
		}
	}
}

// freeHostPanes frees a list of panes.
func (e *Engine) freeHostPanes(p int32) {
	for p >= 0 {
		n := e.hpanes.at(p).next
		e.freeHostPane(p)
		p = n
	}
}

// evalHost computes the rows of host i for the due shapes at tick T
// (largest: the largest due shape, in panes). A deep walk (the largest
// due shape is the largest kept) also frees the panes before its window,
// which no later tick needs; shallower ticks leave them for the next deep
// one (at most one hop of the largest window later).
func (e *Engine) evalHost(i int32, tp, T int64, due []int, largest int64, deep bool) {
	h := &e.hosts[i]
	n := len(due)
	aggs := e.scratchAggs[:n]
	clear(aggs)
	prev := int32(-1)
	for p := h.panes; p >= 0; p = e.hpanes.at(p).next {
		hp := e.hpanes.at(p)
		idx := int64(hp.idx)
		if idx < tp-largest {
			if deep {
				// Cut after prev, the oldest pane of this tick's largest
				// window (kept one deep walk longer than needed).
				var rest int32
				if prev < 0 {
					rest, h.panes = h.panes, -1
				} else {
					rest = e.hpanes.at(prev).next
					e.hpanes.at(prev).next = -1
				}
				e.freeHostPanes(rest)
			}
			break
		}
		prev = p
		if idx >= tp {
			continue
		}
		start := e.hostStart(hp.idx)
		for x, k := range due {
			if idx >= tp-e.hostShapes[k].panes {
				aggs[x].addPane(hp, start)
			}
		}
	}
	if aggs[n-1].conns == 0 {
		return // nothing in the largest due window, hence in none
	}

	// One pass over the distinct sets for every shape; then each
	// element's bits of panes before this tick's largest window are
	// cleared (that window's oldest pane stays until the next pass, for
	// hostDetail), and an element left without bits is deleted.
	clean := tp - e.hostKeepPanes
	keep := e.scratchMask[:e.geo.words]
	ringMask(keep, clean, clean+e.hostKeepSpan, e.geo.ring)
	h.cleanLow = clean
	var d [maxShapes]distinct
	st := e.geo.stride
	s := h.set.slots
	for j := 0; j < len(s); j += st {
		el := s[j]
		if el == emptyElem || el == tombElem {
			continue
		}
		m := s[j+1 : j+st]
		for x := 0; x < n; x++ {
			if !anyBit(m, e.shapeMasks[x]) {
				continue
			}
			dd := &d[x]
			switch elemTag(el) {
			case tagPort:
				dd.ports++
			case tagIHost:
				dd.ihosts++
			case tagPriv:
				dd.privHosts++
			case tagLarge:
				dd.large++
			case tagCombo:
				port := elemPort(el)
				if pi := e.privPorts.index(port); pi >= 0 {
					dd.privPorts |= 1 << uint(pi)
				}
				cnt := e.portHosts[x]
				if cnt[port] == 0 {
					e.portTouched[x] = append(e.portTouched[x], port)
				}
				cnt[port]++
				if c := cnt[port]; c > dd.maxHosts || (c == dd.maxHosts && port < dd.maxPort) {
					dd.maxHosts, dd.maxPort = c, port
				}
			}
		}
		if !e.keepBits(m, keep) {
			if elemHasAddr(el) {
				e.addrs.unref(elemAddr(el))
			}
			h.set.del(&e.geo, j/st)
		}
	}
	h.set.shrink(&e.geo)
	for x := 0; x < n; x++ {
		for _, p := range e.portTouched[x] {
			e.portHosts[x][p] = 0
		}
		e.portTouched[x] = e.portTouched[x][:0]
	}

	key := e.addrs.keys[h.addr]
	for x, k := range due {
		a := &aggs[x]
		if a.conns == 0 {
			continue
		}
		sh := &e.hostShapes[k]
		dd := &d[x]
		r := hostRow{
			start: T - sh.size, end: T, shape: k, host: key, hostIdx: i,
			conns: a.conns, failed: a.failed, known: a.known,
			ports:     dd.ports + a.refused[tagPort],
			ihosts:    dd.ihosts + a.refused[tagIHost],
			privPorts: uint32(popcount(dd.privPorts)), privHosts: dd.privHosts + a.refused[tagPriv],
			privServices: uint32(e.services(dd.privPorts)),
			maxHosts:     dd.maxHosts, maxPort: dd.maxPort,
			bytesOut: a.bytesOut, bytesIn: a.bytesIn, bytesOutExt: a.bytesOutExt,
			staging: a.staging, stagingBytes: a.stagingBytes,
			large: dd.large + a.refused[tagLarge], largeBytes: a.largeBytes,
			first: a.first, last: a.last,
		}
		r.hostHi, r.hostLo = key.halves()
		for _, c := range a.refused {
			if c > 0 {
				r.saturated = true
			}
		}
		e.hostSignals(&r, T)
		e.hostRows = append(e.hostRows, r)
	}
}

// maxShapes bounds distinct window sizes per kind (eight host signals).
const maxShapes = 8

type distinct struct {
	ports, ihosts, privHosts, large uint32
	privPorts                       uint64 // bit i: the i-th privileged port
	maxHosts                        uint32
	maxPort                         uint16
}

// hostDetail lists, for a signal's evidence, the elements of tag (and
// port, when port >= 0) inside the window [tp-panes, tp), sorted by
// address then element, at most limit. The slice is scratch, valid until
// the next call.
func (e *Engine) hostDetail(hid int32, tag int, port int, tp, panes int64, limit int) []uint64 {
	h := &e.hosts[hid]
	m := e.scratchMask[:e.geo.words]
	ringMask(m, tp-panes, tp, e.geo.ring)
	out := e.scratchEl[:0]
	defer func() { e.scratchEl = out[:0] }()
	st := e.geo.stride
	s := h.set.slots
	for j := 0; j < len(s); j += st {
		el := s[j]
		if el == emptyElem || el == tombElem || elemTag(el) != tag || (port >= 0 && int(elemPort(el)) != port) {
			continue
		}
		if anyBit(s[j+1:j+st], m) {
			out = append(out, el)
		}
	}
	slices.SortFunc(out, func(a, b uint64) int {
		if elemHasAddr(a) {
			if c := compareKeys(e.addrs.keys[elemAddr(a)], e.addrs.keys[elemAddr(b)]); c != 0 {
				return c
			}
		}
		return cmpU64(a, b)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}
