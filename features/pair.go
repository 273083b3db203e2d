package features

import (
	"math"
	"slices"
)

// Host-pair state: one entry per (internal source, destination, port), its
// non-empty panes newest first (the newest inside the entry, older ones in
// a list). Most pairs carry one or two connections, so a pair costs one
// entry and its map slot; only
// pairs with enough retained connections to matter are "hot" and evaluated
// at each pair tick.

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
	flags            uint8
}

const (
	pairLive uint8 = 1 << iota
	pairHot
	pairDstInternal
)

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
	dirty       uint32 // a connection arrived inside (first, last): recompute at seal
	sumSq       uint64
	out, in     uint64
}

// pairLogEntry remembers one connection of an open pair pane, so that a
// pane whose connections arrived out of order can be recomputed exactly
// when it seals (pane.dirty). In-order arrival, or arrival before the
// first or after the last, keeps the running sums exact without it.
type pairLogEntry struct {
	pair int32
	off  uint32
}

type pairLogSlot struct {
	idx     int64 // pane index the slot holds
	dirty   bool
	entries []pairLogEntry
}

type hotRef struct {
	id  int32
	gen uint32
}

// pairShape is one hopping window size of the pair kind.
type pairShape struct {
	size  int64
	panes int64
	hops  []int64
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
	switch {
	case pp.conns == 0:
		pp.first, pp.last = off, off
		// A pair active in a new pane moves to the front of its
		// destination's list, so that prevalence walks (dstSources)
		// meet active pairs first and stop early.
		e.dstFront(id, p)
	case off >= pp.last:
		g := uint64(off - pp.last)
		pp.sumSq += g * g
		pp.last = off
	case off <= pp.first:
		g := uint64(pp.first - off)
		pp.sumSq += g * g
		pp.first = off
	default:
		pp.dirty = 1
	}
	pp.conns++
	pp.out += c.out
	pp.in += c.in
	if c.t > p.lastTS {
		p.lastTS = c.t
	}
	p.retained++

	slot := &e.plog[uint64(int64(pidx))&uint64(len(e.plog)-1)]
	if slot.idx != int64(pidx) {
		slot.idx = int64(pidx)
		slot.dirty = false
		slot.entries = slot.entries[:0]
	}
	slot.entries = append(slot.entries, pairLogEntry{id, off})
	if pp.dirty != 0 {
		slot.dirty = true
	}

	if p.flags&pairHot == 0 && p.retained >= uint32(e.hotMin) {
		p.flags |= pairHot
		e.hot = append(e.hot, hotRef{id, p.gen})
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

// dstFront moves pair id to the front of its destination's list.
func (e *Engine) dstFront(id int32, p *pair) {
	m := &e.addrs.meta[keyDst(p.key)]
	if m.pairHead == id {
		return
	}
	e.dstUnlink(p)
	p.dstNext = m.pairHead
	if m.pairHead >= 0 {
		e.pairs.at(m.pairHead).dstPrev = id
	}
	m.pairHead = id
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
	// Keep gen: a stale hot-list reference must not match a reused id.
	*p = pair{top: pairPane{next: -1}, dstPrev: -1, dstNext: -1, gen: p.gen}
	e.pairFree = append(e.pairFree, id)
	e.nPairs--
}

// evictOldestPairs frees about a sixteenth of the pair cap, least recently
// active first, never a pair with a connection in an open pane (its log
// entries must stay valid until the pane seals).
func (e *Engine) evictOldestPairs() {
	sealed := e.wm - floorMod(e.wm, e.g.pairPane)
	cand := e.scratchTS[:0]
	for i := range int32(e.pairs.len()) {
		if p := e.pairs.at(i); p.flags&pairLive != 0 && p.lastTS < sealed {
			cand = append(cand, p.lastTS)
		}
	}
	e.scratchTS = cand
	if len(cand) == 0 {
		return
	}
	n := min(max(1, e.cfg.Limits.MaxPairs/16), len(cand))
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
func (e *Engine) sealPairPane(idx int64) {
	slot := &e.plog[uint64(idx)&uint64(len(e.plog)-1)]
	if slot.idx != idx {
		return
	}
	if slot.dirty {
		ent := e.scratchLog[:0]
		for _, x := range slot.entries {
			if pp := e.pairPaneAt(x.pair, int32(idx)); pp != nil && pp.dirty != 0 {
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
			pp.first, pp.last, pp.sumSq, pp.dirty = ent[i].off, ent[j].off, sum, 0
			i = j + 1
		}
		e.scratchLog = ent[:0]
	}
	slot.idx = math.MinInt64
	slot.dirty = false
	slot.entries = slot.entries[:0]
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

// pairTick seals the pane that ends at T, evaluates hot pairs and sweeps a
// quarter of all pairs for idle ones.
func (e *Engine) pairTick(T int64) {
	tp := int64(e.pairIdx(T)) // panes before tp are complete
	e.sealPairPane(tp - 1)
	low := tp + 1 - e.pairKeepPanes

	due := e.dueShapes[:0]
	for k := range e.pairShapes {
		for _, hop := range e.pairShapes[k].hops {
			if floorMod(T, hop) == 0 {
				due = append(due, k)
				break
			}
		}
	}
	e.dueShapes = due
	for _, k := range due {
		e.closed = append(e.closed, WindowBounds{"pair", e.pairShapes[k].name, T - e.pairShapes[k].size, T})
	}
	if e.cfg.Signals.CommandExchange.Enabled {
		e.closed = append(e.closed, WindowBounds{"pair", SessionWindowName, T - e.g.pairPane, T})
	}

	// Panes before low are freed every fourth pair tick.
	deep := floorMod(T, 4*e.g.pairPane) == 0
	// A pair whose newest connection is older than every due window, and
	// too old for a session to end now (a session ending in (T - pane, T]
	// has its last connection after T - pane - gap), has nothing to emit:
	// its panes need not be walked, except to free them.
	quiet := T
	for _, k := range due {
		quiet = min(quiet, T-e.pairShapes[k].size)
	}
	if ce := &e.cfg.Signals.CommandExchange; ce.Enabled {
		quiet = min(quiet, T-e.g.pairPane-ce.Session.Gap.micros())
	}
	kept := e.hot[:0]
	for _, r := range e.hot {
		p := e.pairs.at(r.id)
		if p.gen != r.gen || p.flags&pairLive == 0 {
			continue
		}
		if !deep && p.lastTS < quiet {
			kept = append(kept, r)
			continue
		}
		if e.evalPair(r.id, tp, T, low, due, deep) {
			kept = append(kept, r)
		} else {
			p.flags &^= pairHot
		}
	}
	clear(e.hot[len(kept):])
	e.hot = kept

	// Idle sweep: every pair is visited at least every four pair ticks.
	// A pair whose newest connection is before low has no pane left; the
	// check reads only the pair entry, in memory order.
	n := e.pairs.len()/4 + 1
	for ; n > 0 && e.pairs.len() > 0; n-- {
		if e.sweep >= e.pairs.len() {
			e.sweep = 0
		}
		id := int32(e.sweep)
		e.sweep++
		p := e.pairs.at(id)
		if p.flags&pairLive != 0 && int64(e.pairIdx(p.lastTS)) < low {
			e.stats.PairsEvictedIdle++
			e.evictPair(id)
		}
	}
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

// evalPair emits the rows of hot pair id at tick T; it reports whether the
// pair is still hot. It walks the pair's panes newest first only as far
// as this tick needs: the largest due window, and the whole of any session
// that closes now. Every few ticks (deep) it walks on to free the panes
// before low.
func (e *Engine) evalPair(id int32, tp, T, low int64, due []int, deep bool) bool {
	p := e.pairs.at(id)
	var largest int64
	for _, k := range due {
		largest = max(largest, e.pairShapes[k].panes)
	}
	ce := &e.cfg.Signals.CommandExchange
	gap, cut := ce.Session.Gap.micros(), ce.Session.MaxLength.micros()
	stop := tp - largest
	if ce.Enabled {
		// A session that ends by its gap at this tick has its last
		// connection within gap + pane before T.
		stop = min(stop, tp-(gap+e.g.pairPane-1)/e.g.pairPane-1)
	}

	ps := e.scratchPanes[:0] // newest first
	var prev *pairPane       // the pane visited before, newer in time
	closing := false
	for pp := firstPane(p); pp != nil; pp = e.nextPane(pp) {
		idx := int64(pp.idx)
		if deep && idx < low {
			// Free pp and everything older.
			if prev == nil {
				e.freePairPanes(p, p.top.next)
				p.retained -= p.top.conns
				p.top = pairPane{next: -1}
			} else {
				e.freePairPanes(p, prev.next)
				prev.next = -1
			}
			break
		}
		if idx < tp && ce.Enabled {
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
		if !need && idx < stop && !deep {
			break
		}
		if need {
			ps = append(ps, pp)
		}
		prev = pp
	}
	e.scratchPanes = ps
	if p.retained < uint32(e.hotMin) {
		return false
	}
	slices.Reverse(ps) // oldest first
	// Rows are built from hotMin connections (the least any enabled pair
	// signal or the row output needs); pairRow keeps those that make the
	// row minimum or fire a signal.
	evalMin := uint32(e.hotMin)

	for _, k := range due {
		sh := &e.pairShapes[k]
		var w winStats
		for _, pp := range ps {
			if int64(pp.idx) >= tp-sh.panes {
				w.add(pp, e.pairStart(pp.idx))
			}
		}
		if w.conns >= evalMin {
			e.pairRow(id, k, T-sh.size, T, &w)
		}
	}

	// Sessions: runs of panes without a gap of Gap or more, cut at
	// multiples of MaxLength; a session closes at the first tick at or
	// after min(last+Gap, end of its cut). Only closing runs were
	// collected whole.
	if ce.Enabled {
		var w winStats
		var cell int64
		emit := func() {
			end := min(w.last+gap, (cell+1)*cut)
			if w.conns >= evalMin && end > T-e.g.pairPane && end <= T {
				e.pairRow(id, len(e.pairShapes), w.first, end, &w)
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
	return true
}

func (e *Engine) pairRow(id int32, shape int, start, end int64, w *winStats) {
	p := e.pairs.at(id)
	r := pairRow{
		start: start, end: end, shape: shape, pairIdx: id,
		src: e.addrs.keys[keySrc(p.key)], dst: e.addrs.keys[keyDst(p.key)], port: keyPort(p.key),
		dstInternal: p.flags&pairDstInternal != 0,
		conns:       w.conns, out: w.out, in: w.in, first: w.first, last: w.last,
	}
	r.srcHi, r.srcLo = r.src.halves()
	r.dstHi, r.dstLo = r.dst.halves()
	r.gapMean, r.gapSD, r.gapCV, r.hasGaps = w.gaps()
	// Prevalence over the row's own window: sessions use their span.
	lo, hi := start, end
	r.sources, r.sourcesCapped = e.dstSources(keyDst(p.key), lo, hi)
	fired := e.pairSignals(&r, end)
	if fired || r.conns >= uint32(e.cfg.Output.PairRowMinConnections) {
		e.pairRows = append(e.pairRows, r)
	}
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
