package features

import (
	"math"
	"slices"
)

// Host-pair state: one entry per (internal source, destination, port), its
// non-empty panes newest first (the newest inside the entry, older ones in
// a list). Most pairs carry one or two connections, so a pair costs one
// entry and its map slot. No window of a pair can hold more connections
// than its retained panes, so only pairs with at least hotMin retained
// connections (the least any pair signal or row needs) are ever
// evaluated; as for hosts (host.go), per-pane lists name the pairs that
// sealed or expired, classes keep the pairs whose gates pass, and per-tick
// lists the pairs owing a tiling row or a session check.

type pair struct {
	key    uint64 // src id<<40 | dst id<<16 | port
	lastTS int64
	// top is the newest pane, kept in the entry itself: most pairs have
	// one pane, and the newest is the one events and evaluations touch,
	// so this saves a pane node and a cache miss. top.next heads the list
	// of older panes (newest first); top.conns == 0 means no pane at all.
	top              pairPane
	dstPrev, dstNext int32 // list of pairs with the same destination
	gen              uint32
	retained         uint32 // connections in the pair's panes
	visit            int32  // tick (pair pane index) of the last visit scheduled
	flags            uint8
}

const (
	pairLive uint8 = 1 << iota
	pairDstInternal
	pairSession // a session check is due at this tick's visit
	pairClass0  // bit pairClass0<<c: on the list of pair class c
)

// maxPairSpecs bounds the pair signals (three).
const maxPairSpecs = 4

func pairKey(src, dst uint32, port uint16) uint64 {
	return uint64(src)<<40 | uint64(dst)<<16 | uint64(port)
}

func keySrc(k uint64) uint32  { return uint32(k >> 40) }
func keyDst(k uint64) uint32  { return uint32(k>>16) & maxAddrs }
func keyPort(k uint64) uint16 { return uint16(k) }

// pairPane aggregates one pair's connections in one pane. first and last
// are µs offsets from the pane start; sumSq is the sum of squared gaps
// (µs², exact: it cannot exceed the pane length squared) between
// consecutive connections inside the pane, so the gap
// statistics of any run of panes follow exactly: the gaps across pane
// boundaries are next.first - prev.last, and the gap sum telescopes to
// last - first.
type pairPane struct {
	idx         int32
	next        int32
	conns       uint32
	first, last uint32
	flags       uint32 // paneDirty, paneQueued
	sumSq       uint64
	out, in     uint64
}

const (
	// paneDirty: a connection arrived inside (first, last); the gap sums
	// are recomputed at seal.
	paneDirty uint32 = 1 << iota
	// paneQueued: the pair is on the pane's list of pairs to consider
	// when it seals.
	paneQueued
)

// pairLogEntry remembers one connection of an open pair pane, so that a
// pane whose connections arrived out of order can be recomputed exactly
// when it seals (pane.dirty). In-order arrival, or arrival before the
// first or after the last, keeps the running sums exact without it.
type pairLogEntry struct {
	pair int32
	off  uint32
}

// pairLogSlot is one pane of the pair log ring. entries and hot serve
// until the pane seals; pairs until it leaves every window.
type pairLogSlot struct {
	idx     int64 // pane index the slot holds
	dirty   bool
	entries []pairLogEntry
	// hot lists the pairs with at least hotMin retained connections and a
	// connection in this pane (paneQueued marks them): the pairs to
	// consider when it seals.
	hot []int32
	// pairs lists every pair with a connection in this pane: the pairs
	// to evict when it leaves every window, if it is still their newest.
	pairs []hotRef
}

type hotRef struct {
	id  int32
	gen uint32
}

// pairShape is one hopping window size of the pair kind.
type pairShape struct {
	size  int64
	panes int64
	name  string
	nameB []byte
}

func (e *Engine) newPairPane(idx int32) int32 {
	var i int32
	if e.ppFree >= 0 {
		i = e.ppFree
		e.ppFree = e.ppanes.at(i).next
	} else {
		i = e.ppanes.grow()
	}
	*e.ppanes.at(i) = pairPane{idx: idx, next: -1}
	e.nPairPanes++
	return i
}

func (e *Engine) freePairPane(i int32) {
	*e.ppanes.at(i) = pairPane{idx: math.MinInt32, next: e.ppFree}
	e.ppFree = i
	e.nPairPanes--
}

func (e *Engine) pairPaneFor(p *pair, idx int32) *pairPane {
	switch {
	case p.top.conns == 0:
		p.top = pairPane{idx: idx, next: -1}
		return &p.top
	case p.top.idx == idx:
		return &p.top
	case idx > p.top.idx:
		// A newer pane: the old top moves to a node at the list head.
		n := e.newPairPane(0)
		*e.ppanes.at(n) = p.top
		p.top = pairPane{idx: idx, next: n}
		return &p.top
	}
	prev := &p.top
	cur := p.top.next
	for cur >= 0 && e.ppanes.at(cur).idx > idx {
		prev, cur = e.ppanes.at(cur), e.ppanes.at(cur).next
	}
	if cur >= 0 && e.ppanes.at(cur).idx == idx {
		return e.ppanes.at(cur)
	}
	n := e.newPairPane(idx)
	e.ppanes.at(n).next = cur
	prev.next = n
	return e.ppanes.at(n)
}

// nextPane returns the pane after pp (older), or nil.
func (e *Engine) nextPane(pp *pairPane) *pairPane {
	if pp.next < 0 {
		return nil
	}
	return e.ppanes.at(pp.next)
}

// firstPane returns p's newest pane, or nil.
func firstPane(p *pair) *pairPane {
	if p.top.conns == 0 {
		return nil
	}
	return &p.top
}

// logSlot returns the pair log slot of pane idx, emptied if it held
// another pane (one that left every window).
func (e *Engine) logSlot(idx int64) *pairLogSlot {
	slot := &e.plog[uint64(idx)&uint64(len(e.plog)-1)]
	if slot.idx != idx {
		slot.idx = idx
		slot.dirty = false
		slot.entries = slot.entries[:0]
		slot.hot = slot.hot[:0]
		slot.pairs = slot.pairs[:0]
	}
	return slot
}

// addPair records one connection of an internal source to c.dst.
func (e *Engine) addPair(src uint32, c *connView) {
	key := pairKey(src, c.dst, c.port)
	id, ok := e.pairIDs[key]
	if !ok {
		id = e.newPair(key, c)
		if id < 0 {
			return
		}
	}
	p := e.pairs.at(id)
	pidx := e.pairIdx(c.t)
	pp := e.pairPaneFor(p, pidx)
	off := uint32(c.t - e.pairStart(pidx))
	slot := e.logSlot(int64(pidx))
	switch {
	case pp.conns == 0:
		pp.first, pp.last = off, off
		slot.pairs = append(slot.pairs, hotRef{id, p.gen})
	case off >= pp.last:
		g := uint64(off - pp.last)
		pp.sumSq += g * g
		pp.last = off
	case off <= pp.first:
		g := uint64(pp.first - off)
		pp.sumSq += g * g
		pp.first = off
	default:
		pp.flags |= paneDirty
	}
	pp.conns++
	pp.out += c.out
	pp.in += c.in
	if c.t > p.lastTS {
		p.lastTS = c.t
	}
	p.retained++

	slot.entries = append(slot.entries, pairLogEntry{id, off})
	if pp.flags&paneDirty != 0 {
		slot.dirty = true
	}
	if p.retained >= e.queueMin {
		if pp.flags&paneQueued == 0 {
			pp.flags |= paneQueued
			slot.hot = append(slot.hot, id)
		}
		if p.retained == e.queueMin {
			// Just crossed: its other open panes must be considered too.
			open := e.pairIdx(e.wm)
			for q := firstPane(p); q != nil && q.idx >= open; q = e.nextPane(q) {
				if q.flags&paneQueued == 0 {
					q.flags |= paneQueued
					s := e.logSlot(int64(q.idx))
					s.hot = append(s.hot, id)
				}
			}
		}
	}
}

func (e *Engine) newPair(key uint64, c *connView) int32 {
	if e.nPairs >= e.cfg.Limits.MaxPairs {
		if e.cfg.Limits.Overflow == EvictOldest {
			e.evictOldestPairs()
		}
		if e.nPairs >= e.cfg.Limits.MaxPairs {
			e.stats.PairsRefused++
			if n, ok := e.overflowLog.allow(e.maxTS); ok {
				e.overflow(n, "pair cap reached: new pair refused")
			}
			return -1
		}
	}
	var id int32
	if n := len(e.pairFree); n > 0 {
		id = e.pairFree[n-1]
		e.pairFree = e.pairFree[:n-1]
	} else {
		id = e.pairs.grow()
	}
	p := e.pairs.at(id)
	gen := p.gen + 1
	*p = pair{key: key, top: pairPane{next: -1}, dstPrev: -1, dstNext: -1, gen: gen, flags: pairLive, lastTS: c.t}
	if c.dstInternal {
		p.flags |= pairDstInternal
	}
	src, dst := keySrc(key), keyDst(key)
	e.addrs.ref(src)
	e.addrs.ref(dst)
	m := &e.addrs.meta[dst]
	if m.pairHead >= 0 {
		p.dstNext = m.pairHead
		e.pairs.at(m.pairHead).dstPrev = id
	}
	m.pairHead = id
	e.pairIDs[key] = id
	e.nPairs++
	return id
}

// dstUnlink takes pair id out of its destination's list.
func (e *Engine) dstUnlink(p *pair) {
	if p.dstPrev >= 0 {
		e.pairs.at(p.dstPrev).dstNext = p.dstNext
	} else {
		e.addrs.meta[keyDst(p.key)].pairHead = p.dstNext
	}
	if p.dstNext >= 0 {
		e.pairs.at(p.dstNext).dstPrev = p.dstPrev
	}
	p.dstPrev, p.dstNext = -1, -1
}

func (e *Engine) evictPair(id int32) {
	p := e.pairs.at(id)
	e.freePairPanes(p, p.top.next)
	p.retained -= p.top.conns
	p.top = pairPane{next: -1}
	dst := keyDst(p.key)
	e.dstUnlink(p)
	delete(e.pairIDs, p.key)
	e.addrs.unref(keySrc(p.key))
	e.addrs.unref(dst)
	// Keep gen: a stale list reference must not match a reused id.
	*p = pair{top: pairPane{next: -1}, dstPrev: -1, dstNext: -1, gen: p.gen}
	e.pairFree = append(e.pairFree, id)
	e.nPairs--
}

// evictOldestPairs frees about a sixteenth of the pair cap, least recently
// active first, never a pair with a connection in an open pane (its log
// entries must stay valid until the pane seals).
func (e *Engine) evictOldestPairs() {
	sealed := e.wm - floorMod(e.wm, e.g.pairPane)
	if e.evictDryOK && e.evictDry == sealed {
		return
	}
	cand := e.scratchTS[:0]
	for i := range int32(e.pairs.len()) {
		if p := e.pairs.at(i); p.flags&pairLive != 0 && p.lastTS < sealed {
			cand = append(cand, p.lastTS)
		}
	}
	e.scratchTS = cand
	n := min(max(1, e.cfg.Limits.MaxPairs/16), len(cand))
	// Evicting every candidate leaves none until another pane seals.
	e.evictDry, e.evictDryOK = sealed, n == len(cand)
	if len(cand) == 0 {
		return
	}
	cut := nthSmallest(cand, n-1)
	evicted := 0
	for i := range int32(e.pairs.len()) {
		if evicted >= n {
			break
		}
		if p := e.pairs.at(i); p.flags&pairLive != 0 && p.lastTS <= cut && p.lastTS < sealed {
			e.evictPair(int32(i))
			evicted++
		}
	}
	e.stats.PairsEvictedCap += uint64(evicted)
	if n, ok := e.overflowLog.allow(e.maxTS); ok {
		e.overflow(n, "pair cap reached: least recently active pairs evicted", "evicted", evicted)
	}
}

// sealPairPane makes the gap statistics of pane idx exact for every pair
// that received a connection inside its (first, last) span, from the log
// of the pane's connections sorted by time.
func (e *Engine) sealPairPane(idx int64) *pairLogSlot {
	slot := &e.plog[uint64(idx)&uint64(len(e.plog)-1)]
	if slot.idx != idx {
		return nil
	}
	if slot.dirty {
		ent := e.scratchLog[:0]
		for _, x := range slot.entries {
			if pp := e.pairPaneAt(x.pair, int32(idx)); pp != nil && pp.flags&paneDirty != 0 {
				ent = append(ent, x)
			}
		}
		slices.SortFunc(ent, func(a, b pairLogEntry) int {
			if a.pair != b.pair {
				return int(a.pair - b.pair)
			}
			return cmpU64(uint64(a.off), uint64(b.off))
		})
		for i := 0; i < len(ent); {
			j := i
			pp := e.pairPaneAt(ent[i].pair, int32(idx))
			var sum uint64
			for j+1 < len(ent) && ent[j+1].pair == ent[i].pair {
				g := uint64(ent[j+1].off - ent[j].off)
				sum += g * g
				j++
			}
			pp.first, pp.last, pp.sumSq = ent[i].off, ent[j].off, sum
			pp.flags &^= paneDirty
			i = j + 1
		}
		e.scratchLog = ent[:0]
	}
	slot.dirty = false
	slot.entries = slot.entries[:0]
	return slot
}

func (e *Engine) pairPaneAt(id int32, idx int32) *pairPane {
	for pp := firstPane(e.pairs.at(id)); pp != nil; pp = e.nextPane(pp) {
		if pp.idx <= idx {
			if pp.idx == idx {
				return pp
			}
			return nil
		}
	}
	return nil
}

// dropPanesFrom frees the panes of p after prev, the newest of them
// included when prev is nil: the panes no window needs any more.
func (e *Engine) dropPanesFrom(p *pair, prev *pairPane) {
	if prev == nil {
		e.freePairPanes(p, p.top.next)
		p.retained -= p.top.conns
		p.top = pairPane{next: -1}
		return
	}
	e.freePairPanes(p, prev.next)
	prev.next = -1
}

// freePairPanes frees the list of panes from q on, which must be p's.
func (e *Engine) freePairPanes(p *pair, q int32) {
	for q >= 0 {
		pp := e.ppanes.at(q)
		n := pp.next
		p.retained -= pp.conns
		e.freePairPane(q)
		q = n
	}
}

// pairRefOK reports whether r still names the live pair it was taken
// from.
func (e *Engine) pairRefOK(r hotRef) bool {
	p := e.pairs.at(r.id)
	return p.flags&pairLive != 0 && p.gen == r.gen
}

// pairTick closes the pair panes and windows that end at T: it evicts
// pairs left with nothing in any window, seals pane tp-1, then visits the
// pairs that may fire a signal, owe a tiling row or close a session.
func (e *Engine) pairTick(T int64) {
	tp := int64(e.pairIdx(T)) // panes before tp are complete
	low := tp + 1 - e.pairKeepPanes

	// Pairs whose newest pane is the one that just left every window.
	if slot := &e.plog[uint64(low-1)&uint64(len(e.plog)-1)]; slot.idx == low-1 {
		for _, r := range slot.pairs {
			if e.pairRefOK(r) && int64(e.pairs.at(r.id).top.idx) < low {
				e.stats.PairsEvictedIdle++
				e.evictPair(r.id)
			}
		}
		slot.idx = math.MinInt64
		slot.pairs = slot.pairs[:0]
	}

	var rowShapes uint8
	for k := range e.pairShapes {
		if sh := &e.pairShapes[k]; floorMod(T, sh.size) == 0 {
			rowShapes |= 1 << uint(k)
			e.closed = append(e.closed, WindowBounds{"pair", sh.name, T - sh.size, T})
		}
	}
	ce := &e.cfg.Signals.CommandExchange
	if ce.Enabled {
		e.closed = append(e.closed, WindowBounds{"pair", SessionWindowName, T - e.g.pairPane, T})
	}
	var classDue uint8
	for c := range e.pairClasses {
		if floorMod(T, e.pairClasses[c].hop) == 0 {
			classDue |= 1 << uint(c)
		}
	}

	if slot := e.sealPairPane(tp - 1); slot != nil {
		e.sealPairs(T, tp, low, slot.hot)
		slot.hot = slot.hot[:0]
	}

	vs := e.pairVisits[:0]
	stamp := int32(tp)
	visit := func(r hotRef) {
		if !e.pairRefOK(r) {
			return
		}
		if p := e.pairs.at(r.id); p.visit != stamp {
			p.visit = stamp
			vs = append(vs, r.id)
		}
	}
	for c := range e.pairClasses {
		if classDue&(1<<uint(c)) == 0 {
			continue
		}
		for _, r := range e.pairClassLists[c] {
			if e.pairRefOK(r) && e.pairs.at(r.id).flags&(pairClass0<<uint(c)) != 0 {
				visit(r)
			}
		}
	}
	for k := range e.pairShapes {
		if rowShapes&(1<<uint(k)) != 0 {
			for _, r := range e.pairRowLists[k] {
				visit(r)
			}
			e.pairRowLists[k] = e.pairRowLists[k][:0]
		}
	}
	if s := slotAt(e.sessionChecks, tp); s != nil {
		for _, r := range s.refs {
			if e.pairRefOK(r) {
				e.pairs.at(r.id).flags |= pairSession
				visit(r)
			}
		}
		s.refs = s.refs[:0]
		s.idx = math.MinInt64
	}
	e.pairVisits = vs
	for _, id := range vs {
		e.visitPair(id, T, tp, low, classDue, rowShapes)
	}

	for c := range e.pairClasses {
		if classDue&(1<<uint(c)) == 0 {
			continue
		}
		bit := pairClass0 << uint(c)
		l := e.pairClassLists[c]
		kept := l[:0]
		for _, r := range l {
			if e.pairRefOK(r) && e.pairs.at(r.id).flags&bit != 0 {
				kept = append(kept, r)
			}
		}
		e.pairClassLists[c] = kept
	}
}

// sealPairs handles the queued pairs of pane tp-1, which sealed at T:
// each frees its panes before low, is registered for the tiling rows that
// hold the pane and for a check when its session would end, and goes on
// the list of every class one of whose signals may cross its threshold at
// the class's next hop, judging by the panes sealed so far.
func (e *Engine) sealPairs(T, tp, low int64, ids []int32) {
	var specLo [maxPairSpecs]int64
	for i := range e.pairSpecs {
		if sp := &e.pairSpecs[i]; sp.class >= 0 {
			next := -floorDiv(-T, sp.hop) * sp.hop
			specLo[i] = int64(e.pairIdx(next - sp.size))
		}
	}
	ce := &e.cfg.Signals.CommandExchange
	gap, cut := ce.Session.Gap.micros(), ce.Session.MaxLength.micros()
	allClasses := uint8(1)<<uint(len(e.pairClasses)) - 1
	for _, id := range ids {
		p := e.pairs.at(id)
		if p.flags&pairLive == 0 {
			continue // unreachable: pairs with open panes are never evicted
		}
		r := hotRef{id, p.gen}
		// Free the panes no window needs; sum the sealed panes of each
		// spec's next window; find the sealed pane.
		var sums [maxPairSpecs]uint32
		var sealed *pairPane
		var prev *pairPane
		for pp := firstPane(p); pp != nil; pp = e.nextPane(pp) {
			idx := int64(pp.idx)
			if idx < low {
				e.dropPanesFrom(p, prev)
				break
			}
			prev = pp
			if idx == tp-1 {
				sealed = pp
				pp.flags &^= paneQueued
			}
			if idx >= tp {
				continue
			}
			for i := range e.pairSpecs {
				if e.pairSpecs[i].class >= 0 && idx >= specLo[i] {
					sums[i] += pp.conns
				}
			}
		}
		if sealed == nil || p.retained < e.queueMin {
			continue
		}
		for k := range e.pairShapes {
			e.pairRowLists[k] = append(e.pairRowLists[k], r)
		}
		if ce.Enabled {
			// The session holding the sealed pane ends at the latest at
			// last + gap, or at its cut: check then. A later connection
			// that extends it is in a pane that seals later and
			// schedules its own check.
			start := e.pairStart(sealed.idx)
			end := min(start+int64(sealed.last)+gap, (floorDiv(start, cut)+1)*cut)
			s := slotFor(e.sessionChecks, int64(e.pairIdxCeil(end)))
			s.refs = append(s.refs, r)
		}
		missing := allClasses &^ (p.flags / pairClass0)
		if missing == 0 {
			continue
		}
		for c := range e.pairClasses {
			bit := uint8(1) << uint(c)
			if missing&bit == 0 {
				continue
			}
			for i := range e.pairSpecs {
				if e.pairClasses[c].specs&(1<<uint(i)) != 0 && (e.exhaustive || e.pairGate(i, sums[i], p)) {
					e.joinPairClass(r, c)
					break
				}
			}
		}
	}
}

func (e *Engine) joinPairClass(r hotRef, c int) {
	p := e.pairs.at(r.id)
	if bit := pairClass0 << uint(c); p.flags&bit == 0 {
		p.flags |= bit
		e.pairClassLists[c] = append(e.pairClassLists[c], r)
	}
}

// pairGate reports whether hopping spec i may fire on a window of pair p
// with conns connections: a necessary condition, growing with conns.
func (e *Engine) pairGate(i int, conns uint32, p *pair) bool {
	c := &e.cfg.Signals
	switch e.pairSpecs[i].typ {
	case PeriodicBeacon:
		return conns >= uint32(c.PeriodicBeacon.MinConnections) && !slices.Contains(c.PeriodicBeacon.ExcludedPorts, keyPort(p.key))
	case PersistentDestination:
		return conns >= uint32(c.PersistentDestination.MinConnections) &&
			!slices.Contains(c.PersistentDestination.ExcludedPorts, keyPort(p.key))
	}
	return conns > 0
}

// winStats are a pair's connections over a run of panes, always added in
// time order so that the floating-point sum is the same for any arrival
// order of the connections.
type winStats struct {
	conns       uint32
	first, last int64
	sumSq       float64 // seconds²
	out, in     uint64
}

func (w *winStats) add(pp *pairPane, start int64) {
	f, l := start+int64(pp.first), start+int64(pp.last)
	if w.conns > 0 {
		g := float64(f-w.last) / 1e6
		w.sumSq += g * g
	} else {
		w.first = f
	}
	w.conns += pp.conns
	w.last = l
	w.sumSq += float64(pp.sumSq) / 1e12
	w.out += pp.out
	w.in += pp.in
}

// gaps returns the mean, standard deviation and coefficient of variation
// of the n-1 inter-arrival gaps, in seconds. The mean telescopes to
// (last-first)/(n-1); the variance is E[g²] - mean² over the gaps (the
// population variance, as RITA and the Elastic beaconing package use).
func (w *winStats) gaps() (mean, sd, cv float64, ok bool) {
	if w.conns < 2 {
		return 0, 0, 0, false
	}
	k := float64(w.conns - 1)
	mean = float64(w.last-w.first) / 1e6 / k
	v := w.sumSq/k - mean*mean
	if v < 0 {
		v = 0 // rounding
	}
	sd = math.Sqrt(v)
	if mean > 0 {
		cv = sd / mean
	} else {
		cv = math.NaN()
	}
	return mean, sd, cv, true
}

// visitPair evaluates pair id at tick T: the signals of the due classes
// it is on whose gates pass, its tiling rows, and the sessions that end
// now when a check is due. It walks the pair's panes newest first only as
// far as this tick needs (the largest window, and the whole of any
// session that closes now), freeing the panes before low it reaches.
func (e *Engine) visitPair(id int32, T, tp, low int64, classDue, rowShapes uint8) {
	p := e.pairs.at(id)
	member := (p.flags / pairClass0) & classDue
	session := p.flags&pairSession != 0
	p.flags &^= pairSession
	var due, rowSpecs uint16
	shapes := rowShapes
	for i := range e.pairSpecs {
		sp := &e.pairSpecs[i]
		if sp.class < 0 {
			continue
		}
		if member&(1<<uint(sp.class)) != 0 {
			due |= 1 << uint(i)
			shapes |= 1 << uint(sp.shape)
		}
		if rowShapes&(1<<uint(sp.shape)) != 0 {
			rowSpecs |= 1 << uint(i)
		}
	}
	var largest int64
	for k := range e.pairShapes {
		if shapes&(1<<uint(k)) != 0 {
			largest = max(largest, e.pairShapes[k].panes)
		}
	}
	ce := &e.cfg.Signals.CommandExchange
	session = session && ce.Enabled
	gap, cut := ce.Session.Gap.micros(), ce.Session.MaxLength.micros()
	stop := tp - largest
	if session {
		// A session that ends by its gap at this tick has its last
		// connection within gap + pane before T.
		stop = min(stop, tp-(gap+e.g.pairPane-1)/e.g.pairPane-1)
	}

	ps := e.scratchPanes[:0] // newest first
	var prev *pairPane       // the pane visited before, newer in time
	closing := false
	for pp := firstPane(p); pp != nil; pp = e.nextPane(pp) {
		idx := int64(pp.idx)
		if idx < low {
			e.dropPanesFrom(p, prev) // pp and everything older
			break
		}
		if idx < tp && session {
			// Sessions are runs of panes; is pp the newest pane of a run
			// that closes at this tick?
			start := e.pairStart(pp.idx)
			cont := prev != nil && floorDiv(e.pairStart(prev.idx), cut) == floorDiv(start, cut) &&
				e.pairStart(prev.idx)+int64(prev.first)-(start+int64(pp.last)) < gap
			if !cont {
				end := min(start+int64(pp.last)+gap, (floorDiv(start, cut)+1)*cut)
				closing = end > T-e.g.pairPane && end <= T
			}
		}
		need := idx < tp && (idx >= stop || closing)
		if !need && idx < stop {
			break
		}
		if need {
			ps = append(ps, pp)
		}
		prev = pp
	}
	e.scratchPanes = ps
	slices.Reverse(ps) // oldest first
	// Rows are built from evalMin connections (the least any enabled pair
	// signal or the row output needs); pairEval keeps those that make the
	// row minimum or fire a signal.
	evalMin := uint32(e.evalMin)

	var pass uint16
	for k := range e.pairShapes {
		if shapes&(1<<uint(k)) == 0 {
			continue
		}
		sh := &e.pairShapes[k]
		var w winStats
		for _, pp := range ps {
			if int64(pp.idx) >= tp-sh.panes {
				w.add(pp, e.pairStart(pp.idx))
			}
		}
		var specs uint16
		for i := range e.pairSpecs {
			bit := uint16(1) << uint(i)
			if e.pairSpecs[i].shape == k && (due|rowSpecs)&bit != 0 && w.conns > 0 &&
				(e.exhaustive || e.pairGate(i, w.conns, p)) {
				specs |= bit
			}
		}
		pass |= specs
		row := rowShapes&(1<<uint(k)) != 0 && w.conns >= evalMin
		if row || specs != 0 {
			if e.pairEval(id, k, T-sh.size, T, &w, specs, row) {
				for i := range e.pairSpecs {
					if specs&(1<<uint(i)) != 0 {
						e.joinPairClass(hotRef{id, p.gen}, e.pairSpecs[i].class)
					}
				}
			}
		}
	}
	for c := range e.pairClasses {
		if bit := pairClass0 << uint(c); member&(1<<uint(c)) != 0 && pass&e.pairClasses[c].specs == 0 {
			p.flags &^= bit
		}
	}

	// Sessions: runs of panes without a gap of Gap or more, cut at
	// multiples of MaxLength; a session closes at the first tick at or
	// after min(last+Gap, end of its cut). Only closing runs were
	// collected whole.
	if session {
		var w winStats
		var cell int64
		emit := func() {
			end := min(w.last+gap, (cell+1)*cut)
			if w.conns >= evalMin && end > T-e.g.pairPane && end <= T {
				e.pairEval(id, len(e.pairShapes), w.first, end, &w, e.sessionSpecs, true)
			}
		}
		for _, pp := range ps {
			start := e.pairStart(pp.idx)
			c := floorDiv(start, cut)
			if w.conns > 0 && (c != cell || start+int64(pp.first)-w.last >= gap) {
				emit()
				w = winStats{}
			}
			cell = c
			w.add(pp, start)
		}
		if w.conns > 0 {
			emit()
		}
	}
}

// pairEval evaluates the signals in specs on one window of pair id and,
// when row is set, emits its row if it has the row minimum of connections
// or fired a signal. It reports whether a signal fired.
func (e *Engine) pairEval(id int32, shape int, start, end int64, w *winStats, specs uint16, row bool) bool {
	p := e.pairs.at(id)
	r := pairRow{
		start: start, end: end, shape: shape, pairIdx: id,
		src: e.addrs.keys[keySrc(p.key)], dst: e.addrs.keys[keyDst(p.key)], port: keyPort(p.key),
		dstInternal: p.flags&pairDstInternal != 0,
		conns:       w.conns, out: w.out, in: w.in, first: w.first, last: w.last,
	}
	r.gapMean, r.gapSD, r.gapCV, r.hasGaps = w.gaps()
	fired := specs != 0 && e.pairSignals(&r, specs)
	if row && (fired || r.conns >= uint32(e.cfg.Output.PairRowMinConnections)) {
		e.pairSources(&r)
		r.srcHi, r.srcLo = r.src.halves()
		r.dstHi, r.dstLo = r.dst.halves()
		e.pairRows = append(e.pairRows, r)
	}
	return fired
}

// pairSources fills r's prevalence (once): over the row's own window;
// sessions use their span.
func (e *Engine) pairSources(r *pairRow) {
	if r.sourcesDone {
		return
	}
	r.sourcesDone = true
	r.sources, r.sourcesCapped = e.dstSources(keyDst(e.pairs.at(r.pairIdx).key), r.start, r.end)
}

// maxPrevalenceWalk bounds the walk over a destination's pairs: past it
// the destination counts as popular.
const maxPrevalenceWalk = 4096

// dstSources counts the distinct internal sources with a connection to
// dst in [lo, hi), up to the persistent-destination threshold: the answer
// saturates there (capped), which is all the signal needs.
func (e *Engine) dstSources(dst uint32, lo, hi int64) (uint32, bool) {
	limit := e.cfg.Signals.PersistentDestination.InternalHostsBelow
	seen := e.scratchSrc[:0]
	defer func() { e.scratchSrc = seen[:0] }()
	steps := 0
	loIdx, hiIdx := e.pairIdx(lo), e.pairIdxCeil(hi)
	for q := e.addrs.meta[dst].pairHead; q >= 0; q = e.pairs.at(q).dstNext {
		steps++
		if steps > maxPrevalenceWalk {
			return uint32(limit), true
		}
		src := keySrc(e.pairs.at(q).key)
		if slices.Contains(seen, src) || !e.pairActive(q, loIdx, hiIdx) {
			continue
		}
		seen = append(seen, src)
		if len(seen) >= limit {
			return uint32(limit), true
		}
	}
	return uint32(len(seen)), false
}

// pairActive reports whether pair q has a pane in [lo, hi).
func (e *Engine) pairActive(q int32, lo, hi int32) bool {
	p := e.pairs.at(q)
	if e.pairIdx(p.lastTS) < lo {
		return false // its newest connection is older
	}
	for pp := firstPane(p); pp != nil; pp = e.nextPane(pp) {
		idx := pp.idx
		if idx < hi {
			return idx >= lo
		}
	}
	return false
}
