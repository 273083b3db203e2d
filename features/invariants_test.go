package features

import "fmt"

// checkInvariants verifies the engine's internal bookkeeping: address
// reference counts equal the references that exist, every live pair is
// in the map and on its destination's list, pane counts match the lists,
// host pane lists are sorted. Tests call it after every Process.
func (e *Engine) checkInvariants() error {
	refs := make(map[uint32]uint32)
	hostPanes, pairPanes := 0, 0
	hosts := 0
	for i := range e.hosts {
		h := &e.hosts[i]
		if !h.live {
			continue
		}
		hosts++
		refs[h.addr]++
		if e.addrs.meta[h.addr].host != int32(i) {
			return fmt.Errorf("host %d: address %d points to host %d", i, h.addr, e.addrs.meta[h.addr].host)
		}
		last := int32(1<<31 - 1)
		var sums hostAgg
		var sat [numGateTags]uint16
		for p := h.panes; p >= 0; p = e.hpanes.at(p).next {
			hp := e.hpanes.at(p)
			if hp.idx >= last {
				return fmt.Errorf("host %d: panes not strictly newest first (%d after %d)", i, hp.idx, last)
			}
			last = hp.idx
			hostPanes++
			sums.conns += hp.conns
			sums.known += hp.known
			sums.failed += hp.failed
			sums.bytesOutExt += hp.bytesOutExt
			sums.stagingBytes += hp.stagingBytes
			sums.largeBytes += hp.largeBytes
			sums.privMask |= hp.privMask
			for t, r := range hp.refused {
				sums.refused[t] += uint32(r)
			}
			for g, d := range hp.distinct {
				sums.distinct[g] += uint32(d)
				if d == 1<<16-1 {
					sat[g]++
				}
			}
		}
		// h.sums is the exact sum of the listed panes, but for privMask,
		// which may keep bits of freed panes.
		got := h.sums
		if got.privMask&sums.privMask != sums.privMask {
			return fmt.Errorf("host %d: sums' privMask %b misses bits of %b", i, got.privMask, sums.privMask)
		}
		got.privMask = sums.privMask
		if got != sums || h.sumsSat != sat {
			return fmt.Errorf("host %d: sums %+v (saturated %v), panes sum to %+v (%v)", i, got, h.sumsSat, sums, sat)
		}
		var perTag [numTags]uint32
		live := uint32(0)
		for j := 0; j < len(h.set.slots); j += e.geo.stride {
			k := h.set.slots[j]
			if k == emptyElem || k == tombElem {
				continue
			}
			live++
			perTag[elemTag(k)]++
			if elemHasAddr(k) {
				refs[elemAddr(k)]++
			}
		}
		if live != h.set.live || perTag != h.set.perTag {
			return fmt.Errorf("host %d: set counts %d %v, table holds %d %v", i, h.set.live, h.set.perTag, live, perTag)
		}
		for t, n := range perTag {
			if n > e.geo.cap {
				return fmt.Errorf("host %d: tag %d holds %d elements over the cap %d", i, t, n, e.geo.cap)
			}
		}
	}
	if hosts != e.nHosts {
		return fmt.Errorf("%d live hosts, nHosts %d", hosts, e.nHosts)
	}
	if hostPanes != e.nHostPanes {
		return fmt.Errorf("%d host panes in lists, nHostPanes %d", hostPanes, e.nHostPanes)
	}
	pairs := 0
	for i := range int32(e.pairs.len()) {
		p := e.pairs.at(i)
		if p.flags&pairLive == 0 {
			continue
		}
		pairs++
		refs[keySrc(p.key)]++
		refs[keyDst(p.key)]++
		if id, ok := e.pairIDs[p.key]; !ok || id != i {
			return fmt.Errorf("pair %d: map has %d, %v", i, id, ok)
		}
		var conns uint32
		last := int32(1<<31 - 1)
		nodes := 0
		for pp := firstPane(p); pp != nil; pp = e.nextPane(pp) {
			if pp != &p.top {
				nodes++
			}
			if pp.conns == 0 {
				return fmt.Errorf("pair %d: an empty pane", i)
			}
			if pp.idx >= last {
				return fmt.Errorf("pair %d: panes not strictly newest first", i)
			}
			last = pp.idx
			conns += pp.conns
		}
		pairPanes += nodes
		if p.top.conns == 0 && p.top.next >= 0 {
			return fmt.Errorf("pair %d: older panes without a newest", i)
		}
		if conns != p.retained {
			return fmt.Errorf("pair %d: retained %d, panes hold %d", i, p.retained, conns)
		}
		found := false
		for q := e.addrs.meta[keyDst(p.key)].pairHead; q >= 0; q = e.pairs.at(q).dstNext {
			if q == i {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("pair %d is not on its destination's list", i)
		}
	}
	if pairs != e.nPairs || pairs != len(e.pairIDs) {
		return fmt.Errorf("%d live pairs, nPairs %d, map %d", pairs, e.nPairs, len(e.pairIDs))
	}
	if pairPanes != e.nPairPanes {
		return fmt.Errorf("%d pair panes in lists, nPairPanes %d", pairPanes, e.nPairPanes)
	}
	for k, id := range e.addrs.ids {
		if e.addrs.keys[id] != k {
			return fmt.Errorf("address %d: key mismatch", id)
		}
		if e.addrs.meta[id].refs != refs[id] {
			return fmt.Errorf("address %v (id %d): refs %d, referenced %d times", k.addr(), id, e.addrs.meta[id].refs, refs[id])
		}
		delete(refs, id)
	}
	for id, n := range refs {
		return fmt.Errorf("address id %d referenced %d times but not in the table", id, n)
	}
	return nil
}
