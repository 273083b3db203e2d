package features

import (
	"math"
	"slices"
)

// Host state: one entry per tracked internal source, its non-empty panes
// in a list (newest first) and its distinct sets (sets.go).
//
// Work per tick is proportional to the hosts that changed, never to all
// tracked hosts (see doc.go, "Evaluation"):
//
//   - paneHosts lists, per pane, the hosts with a pane there. When a pane
//     seals, its hosts are registered for the tiling rows that will hold
//     it and prechecked against every signal's threshold; when a pane
//     leaves the retained range, its hosts whose newest pane it was are
//     evicted.
//   - A class groups the host signals of one hop. A host is on a class's
//     list while some signal of the class may cross its threshold at the
//     class's next hop; a host whose gates all fail leaves the list until
//     one of its panes seals again. A gate is a necessary condition of the
//     signal computed from pane sums (hostGate), so skipping a host whose
//     gates fail changes no output.

type host struct {
	set      elemSet
	lastTS   int64 // newest event time seen, for LRU eviction
	cleanLow int64 // set bits lie in [cleanLow, cleanLow + ring) panes
	addr     uint32
	gen      uint32 // bumped on eviction: list references carry it
	// panes is the newest pane, -1 when none; the list runs newest to
	// oldest, so the open panes, where events land, are at its front.
	panes   int32
	visit   int32 // tick (host pane index) of the last visit scheduled
	live    bool
	classes uint8 // bit c: on the list of host class c
	// sums are the gate inputs summed over every pane in the list (kept
	// as events land and panes are freed; privMask only grows while the
	// host has panes): an upper bound of any window's sums, so a class
	// none of whose gates passes on it needs no walk (sealHosts).
	// sumsSat counts the panes whose distinct count of a gate tag
	// saturated.
	sums    hostAgg
	sumsSat [numGateTags]uint16
}

// hostRef names a host slot in a list; a stale reference (the slot was
// evicted, perhaps reused) has an older gen.
type hostRef struct {
	id  int32
	gen uint32
}

// hostPane aggregates one host's connections in one pane. Times are µs
// offsets from the pane start.
type hostPane struct {
	idx         int32 // pane index, Engine.hostIdx
	next        int32
	conns       uint32
	failed      uint32
	known       uint32 // connections with a known conn_state
	staging     uint32
	first, last uint32
	// distinct[gatePort...]: the pane's own distinct count of the tags
	// gates read (saturating: MaxUint16 means at least that). Summed over
	// a window it bounds the window's distinct count from above.
	distinct     [numGateTags]uint16
	refused      [numTags]uint16 // set elements refused at the cap, saturating
	privMask     uint64          // bit i: the i-th privileged port used towards an internal host
	bytesOut     uint64
	bytesIn      uint64
	bytesOutExt  uint64
	stagingBytes uint64
	largeBytes   uint64
}

// Tags whose per-pane distinct counts gates read.
const (
	gatePort = iota
	gateCombo
	gatePriv
	gateLarge
	gateIHost
	numGateTags
)

// gateOf maps a tag to its gate counter, -1 for none.
func gateOf(tag int) int {
	switch tag {
	case tagPort:
		return gatePort
	case tagCombo:
		return gateCombo
	case tagPriv:
		return gatePriv
	case tagLarge:
		return gateLarge
	case tagIHost:
		return gateIHost
	}
	return -1
}

// hostAgg is the sum of panes over a window.
type hostAgg struct {
	conns, failed, known, staging  uint32
	bytesOut, bytesIn, bytesOutExt uint64
	stagingBytes, largeBytes       uint64
	first, last                    int64
	privMask                       uint64
	refused                        [numTags]uint32
	distinct                       [numGateTags]uint32
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
	a.bytesOut += p.bytesOut
	a.bytesIn += p.bytesIn
	a.bytesOutExt += p.bytesOutExt
	a.stagingBytes += p.stagingBytes
	a.largeBytes += p.largeBytes
	a.privMask |= p.privMask
	for i := range p.refused {
		a.refused[i] += uint32(p.refused[i])
	}
	for i, d := range p.distinct {
		if d == math.MaxUint16 {
			a.distinct[i] = math.MaxUint32 / 2 // at least this many: no gate bound fails
		} else if a.distinct[i] < math.MaxUint32/2 {
			a.distinct[i] += uint32(d)
		}
	}
}

// bound is an upper bound of the window's distinct count of tag, refused
// insertions included (as rows count them).
func (a *hostAgg) bound(tag int) uint32 {
	return a.distinct[gateOf(tag)] + min(a.refused[tag], math.MaxUint32/2)
}

// hostShape is one window size of the host kind. Every host window with
// this size is evaluated from the same pass.
type hostShape struct {
	size  int64 // µs
	panes int64
	name  string
	nameB []byte // name, for the dictionary builder without a conversion
}

// specClass is the set of signals of one kind that share a hop.
type specClass struct {
	hop   int64  // µs
	specs uint16 // bit i: spec i
}

// paneList is one slot of a ring of per-pane lists.
type paneList[T any] struct {
	idx  int64 // pane index the slot holds
	refs []T
}

// slotFor returns the ring slot of pane idx, emptied if it held another.
func slotFor[T any](ring []paneList[T], idx int64) *paneList[T] {
	s := &ring[uint64(idx)&uint64(len(ring)-1)]
	if s.idx != idx {
		s.idx = idx
		s.refs = s.refs[:0]
	}
	return s
}

// slotAt returns the ring slot of pane idx, or nil if it holds another.
func slotAt[T any](ring []paneList[T], idx int64) *paneList[T] {
	s := &ring[uint64(idx)&uint64(len(ring)-1)]
	if s.idx != idx {
		return nil
	}
	return s
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

// hostPaneFor returns h's pane idx, creating it in order (and listing
// the host under that pane). Events land in the open panes, at the front
// of the list.
func (e *Engine) hostPaneFor(hid int32, h *host, idx int32) *hostPane {
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
	s := slotFor(e.paneHosts, int64(idx))
	s.refs = append(s.refs, hostRef{hid, h.gen})
	return e.hpanes.at(n)
}

// addHost records one connection of an internal source. dst is the
// responder's address id (ok when interned), dstInternal whether the
// responder is internal.
func (e *Engine) addHost(hid int32, c *connView) {
	h := &e.hosts[hid]
	pidx := int32(e.hostIdx(c.t))
	if int64(pidx) >= h.cleanLow+int64(e.geo.ring) {
		// A pane past the ring would share bits with panes not yet
		// cleared.
		e.cleanHost(h, e.hostLow())
	}
	p := e.hostPaneFor(hid, h, pidx)
	off := uint32(c.t - e.hostStart(pidx))
	if p.conns == 0 || off < p.first {
		p.first = off
	}
	if p.conns == 0 || off > p.last {
		p.last = off
	}
	p.conns++
	h.sums.conns++
	if c.state != 0 {
		p.known++
		h.sums.known++
		if c.failed {
			p.failed++
			h.sums.failed++
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
		if pi := e.privPorts.index(c.port); pi >= 0 {
			p.privMask |= 1 << uint(pi)
			h.sums.privMask |= 1 << uint(pi)
			e.addElem(h, p, elem(tagPriv, 0, c.dst), pidx, int64(c.dst))
		}
		if e.stagingPorts.has(c.port) && c.out+c.in > e.cfg.Signals.DataStaging.TransferBytesOver {
			p.staging++
			p.stagingBytes += c.out + c.in
			h.sums.stagingBytes += c.out + c.in
		}
		return
	}
	p.bytesOutExt += c.out
	h.sums.bytesOutExt += c.out
	e.addElem(h, p, elem(tagXHost, 0, c.dst), pidx, int64(c.dst))
	if c.out > e.cfg.Signals.DestinationDiversity.ConnectionBytesOver {
		p.largeBytes += c.out
		h.sums.largeBytes += c.out
		e.addElem(h, p, elem(tagLarge, 0, c.dst), pidx, int64(c.dst))
	}
}

func (e *Engine) addElem(h *host, p *hostPane, el uint64, pidx int32, addr int64) {
	isNew, refused, first := h.set.add(&e.geo, el, pidx)
	t := elemTag(el)
	if refused {
		if p.refused[t] < math.MaxUint16 {
			p.refused[t]++
			h.sums.refused[t]++
		}
		e.stats.SetOverflows++
		if n, ok := e.overflowLog.allow(e.maxTS); ok {
			e.overflow(n, "distinct set full: new elements are counted, not stored", "host", e.addrs.keys[h.addr].addr())
		}
		return
	}
	if g := gateOf(t); first && g >= 0 && p.distinct[g] < math.MaxUint16 {
		p.distinct[g]++
		h.sums.distinct[g]++
		if p.distinct[g] == math.MaxUint16 {
			h.sumsSat[g]++
		}
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

// cleanHost clears the set bits of panes before low and deletes elements
// left without any bit. Set bits lie in [cleanLow, cleanLow + ring), so
// those of [cleanLow, low) go and those of [low, cleanLow + ring) stay,
// however long ago the last cleaning was; afterwards they lie in [low,
// low + ring).
func (e *Engine) cleanHost(h *host, low int64) {
	keep := e.scratchMask[:e.geo.words]
	e.keepMask(keep, h, low)
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
	h.set.shrink(&e.geo)
}

// keepMask fills keep with the ring bits that stay when h is cleaned up
// to low, and moves h.cleanLow there.
func (e *Engine) keepMask(keep []uint64, h *host, low int64) {
	if low < h.cleanLow {
		low = h.cleanLow
	}
	ringMask(keep, low, h.cleanLow+int64(e.geo.ring), e.geo.ring)
	h.cleanLow = low
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
	gen := e.hosts[i].gen
	e.hosts[i] = host{addr: addr, gen: gen, live: true, panes: -1, lastTS: t, cleanLow: e.hostLow(), visit: math.MinInt32}
	e.addrs.ref(addr)
	e.addrs.meta[addr].host = i
	e.nHosts++
	return i
}

func (e *Engine) evictHost(i int32) {
	h := &e.hosts[i]
	e.freeHostPanes(h, h.panes)
	st := e.geo.stride
	for j := 0; j < len(h.set.slots); j += st {
		k := h.set.slots[j]
		if k != emptyElem && k != tombElem && elemHasAddr(k) {
			e.addrs.unref(elemAddr(k))
		}
	}
	e.addrs.meta[h.addr].host = -1
	e.addrs.unref(h.addr)
	*h = host{panes: -1, gen: h.gen + 1}
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

// freeHostPanes frees a list of h's panes, taking them out of h.sums.
func (e *Engine) freeHostPanes(h *host, p int32) {
	for p >= 0 {
		hp := e.hpanes.at(p)
		s := &h.sums
		s.conns -= hp.conns
		s.known -= hp.known
		s.failed -= hp.failed
		s.bytesOutExt -= hp.bytesOutExt
		s.stagingBytes -= hp.stagingBytes
		s.largeBytes -= hp.largeBytes
		for t, r := range hp.refused {
			s.refused[t] -= uint32(r)
		}
		for g, d := range hp.distinct {
			s.distinct[g] -= uint32(d)
			if d == math.MaxUint16 {
				h.sumsSat[g]--
			}
		}
		if s.conns == 0 {
			s.privMask = 0
		}
		n := hp.next
		e.freeHostPane(p)
		p = n
	}
}

// sumsBound is h.sums as a window aggregate: saturated distinct counts
// pass every gate bound, as in hostAgg.addPane.
func (h *host) sumsBound() hostAgg {
	a := h.sums
	for g, n := range h.sumsSat {
		if n > 0 {
			a.distinct[g] = math.MaxUint32 / 2
		}
	}
	return a
}

// hostBoundGate is hostGate on an upper bound a of a window's sums (a
// host's sums): false only when no window of the host can pass the gate.
// Every gate grows with each sum except FAILED_CONNECTIONS' ratio, for
// which a passing window has at least MinRatio * MinAttempts failures.
func (e *Engine) hostBoundGate(i int, a *hostAgg) bool {
	if e.hostSpecs[i].typ == FailedConnections {
		fc := &e.cfg.Signals.FailedConnections
		// The slack keeps the bound conservative under rounding.
		return a.conns > 0 && a.known >= uint32(fc.MinAttempts) &&
			float64(a.failed) >= fc.MinRatio*float64(fc.MinAttempts)*(1-1e-9)
	}
	return e.hostGate(i, a)
}

// hostRefOK reports whether r still names the live host it was taken
// from.
func (e *Engine) hostRefOK(r hostRef) bool {
	h := &e.hosts[r.id]
	return h.live && h.gen == r.gen
}

// hostTick closes the host panes and windows that end at T: it evicts
// hosts left with nothing in any window, seals pane tp-1, then visits the
// hosts that may fire a signal or owe a tiling row at T.
func (e *Engine) hostTick(T int64) {
	tp := e.hostIdx(T) // panes before tp are complete

	// Hosts whose newest pane is the one that just left every window.
	if s := slotAt(e.paneHosts, tp-e.hostKeepPanes-1); s != nil {
		for _, r := range s.refs {
			if !e.hostRefOK(r) {
				continue
			}
			if h := &e.hosts[r.id]; int64(e.hpanes.at(h.panes).idx) < tp-e.hostKeepPanes {
				e.stats.HostsEvictedIdle++
				e.evictHost(r.id)
			}
		}
		s.refs = s.refs[:0]
		s.idx = math.MinInt64
	}

	var rowShapes uint8
	for k := range e.hostShapes {
		if sh := &e.hostShapes[k]; floorMod(T, sh.size) == 0 {
			rowShapes |= 1 << uint(k)
			e.closed = append(e.closed, WindowBounds{"host", sh.name, T - sh.size, T})
		}
	}
	var classDue uint8
	for c := range e.hostClasses {
		if floorMod(T, e.hostClasses[c].hop) == 0 {
			classDue |= 1 << uint(c)
		}
	}

	if s := slotAt(e.paneHosts, tp-1); s != nil {
		e.sealHosts(T, tp, s.refs)
	}

	// Visits: hosts on the lists of the classes due now, and hosts owing
	// a tiling row.
	vs := e.hostVisits[:0]
	stamp := int32(tp)
	visit := func(r hostRef) {
		if !e.hostRefOK(r) {
			return
		}
		if h := &e.hosts[r.id]; h.visit != stamp {
			h.visit = stamp
			vs = append(vs, r.id)
		}
	}
	for c := range e.hostClasses {
		if classDue&(1<<uint(c)) == 0 {
			continue
		}
		for _, r := range e.hostClassLists[c] {
			if e.hostRefOK(r) && e.hosts[r.id].classes&(1<<uint(c)) != 0 {
				visit(r)
			}
		}
	}
	for k := range e.hostShapes {
		if rowShapes&(1<<uint(k)) != 0 {
			for _, r := range e.hostRowLists[k] {
				visit(r)
			}
			e.hostRowLists[k] = e.hostRowLists[k][:0]
		}
	}
	e.hostVisits = vs
	for _, id := range vs {
		e.visitHost(id, T, tp, classDue, rowShapes)
	}

	// Class lists keep the hosts that stayed on them.
	for c := range e.hostClasses {
		if classDue&(1<<uint(c)) == 0 {
			continue
		}
		bit := uint8(1) << uint(c)
		l := e.hostClassLists[c]
		kept := l[:0]
		for _, r := range l {
			if e.hostRefOK(r) && e.hosts[r.id].classes&bit != 0 {
				kept = append(kept, r)
			}
		}
		e.hostClassLists[c] = kept
	}
}

// sealHosts handles the hosts of pane tp-1, which sealed at T: each is
// registered for the tiling rows that hold the pane, and put on the list
// of every class one of whose signals may cross its threshold at the
// class's next hop, judging by the panes sealed so far. A later seal
// repeats the check with the panes sealed by then.
func (e *Engine) sealHosts(T, tp int64, refs []hostRef) {
	// Each spec's window at its class's next hop, as the oldest pane
	// index; groups of equal bounds share a sum.
	type group struct {
		lo  int64
		agg hostAgg
	}
	var groups [maxHostSpecs]group
	var specGroup [maxHostSpecs]int
	ng := 0
	for i := range e.hostSpecs {
		sp := &e.hostSpecs[i]
		next := -floorDiv(-T, sp.hop) * sp.hop
		lo := e.hostIdx(next - sp.size)
		g := 0
		for g < ng && groups[g].lo != lo {
			g++
		}
		if g == ng {
			groups[g].lo = lo
			ng++
		}
		specGroup[i] = g
	}
	// Widest window first.
	order := e.scratchGroups[:0]
	for g := range ng {
		order = append(order, g)
	}
	slices.SortFunc(order, func(a, b int) int { return int(groups[a].lo - groups[b].lo) })
	e.scratchGroups = order
	var rowLo [maxShapes]int64
	for k := range e.hostShapes {
		sh := &e.hostShapes[k]
		rowLo[k] = e.hostIdx(floorDiv(T-e.g.hostPane, sh.size) * sh.size)
	}
	allClasses := uint8(1)<<uint(len(e.hostClasses)) - 1

	for _, r := range refs {
		if !e.hostRefOK(r) {
			continue
		}
		h := &e.hosts[r.id]
		// The sealed pane and the next older one.
		p := h.panes
		for p >= 0 && int64(e.hpanes.at(p).idx) >= tp {
			p = e.hpanes.at(p).next
		}
		if p < 0 || int64(e.hpanes.at(p).idx) != tp-1 {
			continue // unreachable: a listed host has its pane
		}
		older := e.hpanes.at(p).next
		olderIdx := int64(math.MinInt64)
		if older >= 0 {
			olderIdx = int64(e.hpanes.at(older).idx)
		}
		// The first pane of a tiling window to seal registers the row.
		for k := range e.hostShapes {
			if olderIdx < rowLo[k] {
				e.hostRowLists[k] = append(e.hostRowLists[k], r)
			}
		}
		missing := allClasses &^ h.classes
		if missing == 0 {
			continue
		}
		if e.exhaustive {
			e.joinHostClasses(r, missing)
			continue
		}
		// Classes that may join: some gate passes on the sums of all the
		// host's panes. Only their groups need the walk.
		bound := h.sumsBound()
		var need uint8
		stop := int64(math.MaxInt64)
		for i := range e.hostSpecs {
			bit := uint8(1) << uint(e.hostSpecs[i].class)
			if missing&bit != 0 && e.hostBoundGate(i, &bound) {
				need |= bit
			}
		}
		if need == 0 {
			continue
		}
		for i := range e.hostSpecs {
			if need&(1<<uint(e.hostSpecs[i].class)) != 0 {
				stop = min(stop, groups[specGroup[i]].lo)
			}
		}
		// Sums of the sealed panes over each group's window, widening,
		// down to the widest group needed (the others are not read).
		var cur hostAgg
		j := ng - 1 // groups sorted by lo ascending: the narrowest is last
		for q := p; q >= 0 && j >= 0; q = e.hpanes.at(q).next {
			hp := e.hpanes.at(q)
			for j >= 0 && int64(hp.idx) < groups[order[j]].lo {
				groups[order[j]].agg = cur
				j--
			}
			if j < 0 || int64(hp.idx) < stop {
				break
			}
			cur.addPane(hp, e.hostStart(hp.idx))
		}
		for ; j >= 0; j-- {
			groups[order[j]].agg = cur
		}
		var join uint8
		for c := range e.hostClasses {
			bit := uint8(1) << uint(c)
			if need&bit == 0 {
				continue
			}
			for i := range e.hostSpecs {
				if e.hostClasses[c].specs&(1<<uint(i)) != 0 && e.hostGate(i, &groups[specGroup[i]].agg) {
					join |= bit
					break
				}
			}
		}
		if join != 0 {
			e.joinHostClasses(r, join)
		}
	}
}

func (e *Engine) joinHostClasses(r hostRef, classes uint8) {
	h := &e.hosts[r.id]
	for c := range e.hostClasses {
		bit := uint8(1) << uint(c)
		if classes&bit != 0 && h.classes&bit == 0 {
			h.classes |= bit
			e.hostClassLists[c] = append(e.hostClassLists[c], r)
		}
	}
}

// hostGate reports whether spec i may fire on a window of the host whose
// panes sum to a: a necessary condition of the signal, from sums only.
// Adding panes never turns a gate from true to false, which is what lets
// a failed gate stand until the host's next pane seals. Spike signals
// with per-host baselines depend on the window's time as well: their
// gate is a non-empty window (a visit scores them exactly, spikeFires).
func (e *Engine) hostGate(i int, a *hostAgg) bool {
	if a.conns == 0 {
		return false
	}
	if e.exhaustive {
		return true
	}
	c := &e.cfg.Signals
	switch e.hostSpecs[i].typ {
	case PortScan:
		return a.bound(tagPort) > uint32(c.PortScan.DistinctPortsOver)
	case ConnectionSpike:
		if e.baselines != nil {
			return true
		}
		cs := &c.ConnectionSpike
		return (float64(a.conns)-cs.PriorMean)/cs.PriorSD > cs.ZOver
	case PrivilegedAccess:
		pa := &c.PrivilegedAccess
		return popcount(a.privMask) >= pa.MinPorts || a.bound(tagPriv) >= uint32(pa.MinHosts)
	case HostSweep:
		// The busiest port's hosts are (port, host) combinations.
		hs := &c.HostSweep
		return a.distinct[gateCombo] >= uint32(hs.MinHostsOnePort) ||
			(hs.MinInternalHosts > 0 && a.bound(tagIHost) >= uint32(hs.MinInternalHosts))
	case FailedConnections:
		fc := &c.FailedConnections
		return a.known >= uint32(fc.MinAttempts) && float64(a.failed)/float64(a.known) >= fc.MinRatio
	case DataStaging:
		return a.stagingBytes > c.DataStaging.TotalBytesOver
	case OutboundSpike:
		if e.baselines != nil {
			return true
		}
		os := &c.OutboundSpike
		v := float64(a.bytesOutExt)
		return v > float64(os.BytesOver) || (v-os.PriorMeanBytes)/os.PriorSDBytes > os.ZOver
	case DestinationDiversity:
		dd := &c.DestinationDiversity
		return a.bound(tagLarge) >= uint32(dd.MinDestinations) && a.largeBytes > dd.TotalBytesOver
	}
	return true
}

// spikeFires is the spike signal's own condition on its score.
func (e *Engine) spikeFires(i int, a *hostAgg, sk *spikeEval) bool {
	c := &e.cfg.Signals
	if e.hostSpecs[i].typ == OutboundSpike {
		return float64(a.bytesOutExt) > float64(c.OutboundSpike.BytesOver) || sk.z > c.OutboundSpike.ZOver
	}
	return sk.z > c.ConnectionSpike.ZOver
}

// maxShapes bounds distinct window sizes per kind; maxHostSpecs the host
// signals (eight).
const (
	maxShapes    = 8
	maxHostSpecs = 8
)

type distinct struct {
	ports, ihosts, xhosts, privHosts, large uint32
	privPorts                               uint64 // bit i: the i-th privileged port
	maxHosts                                uint32
	maxPort                                 uint16
}

// visitHost evaluates host hid at tick T: the signals of the due classes
// it is on whose gates pass, and the tiling rows of rowShapes. It walks
// the host's panes once, and its distinct sets at most once.
func (e *Engine) visitHost(hid int32, T, tp int64, classDue, rowShapes uint8) {
	h := &e.hosts[hid]
	member := h.classes & classDue
	var due uint16 // specs evaluated for the classes
	for c := range e.hostClasses {
		if member&(1<<uint(c)) != 0 {
			due |= e.hostClasses[c].specs
		}
	}
	rowSpecs := uint16(0)
	shapes := rowShapes
	var largest int64
	for i := range e.hostSpecs {
		sp := &e.hostSpecs[i]
		if rowShapes&(1<<uint(sp.shape)) != 0 {
			rowSpecs |= 1 << uint(i)
		}
		if due&(1<<uint(i)) != 0 {
			shapes |= 1 << uint(sp.shape)
		}
	}
	for k := range e.hostShapes {
		if shapes&(1<<uint(k)) != 0 {
			largest = max(largest, e.hostShapes[k].panes)
		}
	}

	// One walk, newest first, summing each needed shape; a walk that
	// reaches past every retained window frees what it passes.
	aggs := e.scratchAggs[:len(e.hostShapes)]
	clear(aggs)
	prev := int32(-1)
	for p := h.panes; p >= 0; p = e.hpanes.at(p).next {
		hp := e.hpanes.at(p)
		idx := int64(hp.idx)
		if idx < tp-largest {
			if idx < tp-e.hostKeepPanes {
				e.freeHostPanes(h, p)
				if prev < 0 {
					h.panes = -1
				} else {
					e.hpanes.at(prev).next = -1
				}
			}
			break
		}
		prev = p
		if idx >= tp {
			continue
		}
		start := e.hostStart(hp.idx)
		for k := range e.hostShapes {
			if shapes&(1<<uint(k)) != 0 && idx >= tp-e.hostShapes[k].panes {
				aggs[k].addPane(hp, start)
			}
		}
	}

	key := e.addrs.keys[h.addr]
	var pass uint16
	for i := range e.hostSpecs {
		bit := uint16(1) << uint(i)
		sp := &e.hostSpecs[i]
		a := &aggs[sp.shape]
		if (due|rowSpecs)&bit == 0 || a.conns == 0 {
			continue
		}
		switch sp.typ {
		case ConnectionSpike, OutboundSpike:
			// Scored once here, with the baseline when there is one:
			// the gate is then the signal's own condition.
			sk := e.spike(i, a, key, T)
			e.spikes[i] = sk
			if e.exhaustive || e.spikeFires(i, a, &sk) {
				pass |= bit
			}
		default:
			if e.hostGate(i, a) {
				pass |= bit
			}
		}
	}
	for c := range e.hostClasses {
		if bit := uint8(1) << uint(c); member&bit != 0 && pass&e.hostClasses[c].specs == 0 {
			h.classes &^= bit
		}
	}

	// Shapes with a row or a signal to evaluate; the distinct sets are
	// read for rows and for the signals that need them.
	var rows, eval, scan uint8
	for k := range e.hostShapes {
		if rowShapes&(1<<uint(k)) != 0 && aggs[k].conns > 0 {
			rows |= 1 << uint(k)
		}
	}
	eval = rows
	for i := range e.hostSpecs {
		if pass&(1<<uint(i)) != 0 {
			eval |= 1 << uint(e.hostSpecs[i].shape)
			if e.hostSpecs[i].typ.needsDistinct() {
				scan |= 1 << uint(e.hostSpecs[i].shape)
			}
		}
	}
	if eval == 0 {
		return
	}
	scan |= rows
	var d [maxShapes]distinct
	if scan != 0 {
		e.scanHost(h, tp, scan, &d)
	}
	for k := range e.hostShapes {
		if eval&(1<<uint(k)) == 0 {
			continue
		}
		a := &aggs[k]
		sh := &e.hostShapes[k]
		dd := &d[k]
		r := hostRow{
			start: T - sh.size, end: T, shape: k, host: key, hostIdx: hid,
			conns: a.conns, failed: a.failed, known: a.known,
			ports:     dd.ports + a.refused[tagPort],
			ihosts:    dd.ihosts + a.refused[tagIHost],
			xhosts:    dd.xhosts + a.refused[tagXHost],
			privPorts: uint32(popcount(dd.privPorts)), privHosts: dd.privHosts + a.refused[tagPriv],
			privServices: uint32(e.services(dd.privPorts)),
			maxHosts:     dd.maxHosts, maxPort: dd.maxPort,
			bytesOut: a.bytesOut, bytesIn: a.bytesIn, bytesOutExt: a.bytesOutExt,
			staging: a.staging, stagingBytes: a.stagingBytes,
			large: dd.large + a.refused[tagLarge], largeBytes: a.largeBytes,
			first: a.first, last: a.last,
		}
		for t, c := range a.refused {
			if c > 0 && t != tagXHost { // no column counts external hosts
				r.saturated = true
			}
		}
		row := rows&(1<<uint(k)) != 0
		specs := pass
		if row {
			// A row carries the spike z of its window whether or not
			// the signal fires.
			specs |= rowSpecs
		}
		if fired := e.hostSignals(&r, T, specs); fired != 0 {
			// A signal fired, so its gate holds: its class goes on
			// (a no-op unless a gate is wrong, see hostGate).
			var cls uint8
			for i := range e.hostSpecs {
				if fired&(1<<uint(i)) != 0 {
					cls |= 1 << uint(e.hostSpecs[i].class)
				}
			}
			e.joinHostClasses(hostRef{hid, h.gen}, cls)
		}
		if row {
			e.hostRows = append(e.hostRows, r)
		}
	}
}

// scanHost reads the host's distinct sets once for the shapes in mask,
// after clearing the bits of panes before every retained window (and
// deleting elements left without any).
func (e *Engine) scanHost(h *host, tp int64, mask uint8, d *[maxShapes]distinct) {
	keep := e.scratchMask[:e.geo.words]
	e.keepMask(keep, h, tp-e.hostKeepPanes)
	var shapes [maxShapes]int
	n := 0
	for k := range e.hostShapes {
		if mask&(1<<uint(k)) != 0 {
			ringMask(e.shapeMasks[n], tp-e.hostShapes[k].panes, tp, e.geo.ring)
			shapes[n] = k
			n++
		}
	}
	st := e.geo.stride
	s := h.set.slots
	for j := 0; j < len(s); j += st {
		el := s[j]
		if el == emptyElem || el == tombElem {
			continue
		}
		m := s[j+1 : j+st]
		if !e.keepBits(m, keep) {
			if elemHasAddr(el) {
				e.addrs.unref(elemAddr(el))
			}
			h.set.del(&e.geo, j/st)
			continue
		}
		for x := 0; x < n; x++ {
			if !anyBit(m, e.shapeMasks[x]) {
				continue
			}
			dd := &d[shapes[x]]
			switch elemTag(el) {
			case tagPort:
				dd.ports++
			case tagIHost:
				dd.ihosts++
			case tagXHost:
				dd.xhosts++
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
	}
	h.set.shrink(&e.geo)
	for x := 0; x < n; x++ {
		for _, p := range e.portTouched[x] {
			e.portHosts[x][p] = 0
		}
		e.portTouched[x] = e.portTouched[x][:0]
	}
}

// hostDetail lists, for a signal's evidence, the elements of tag (and
// port, when port >= 0) inside the window [tp-panes, tp), sorted by
// address then element, at most limit. The slice is scratch, valid until
// the next call. The host's set was scanned (and cleaned) at this tick.
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
