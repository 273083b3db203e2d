package features

import (
	"math/bits"
	"unsafe"
)

// Memory is an estimate of the engine's state, in bytes, from the
// capacities of its slabs and the sizes of its maps. It counts what the
// engine allocated, not what the Go runtime keeps around it; the
// benchmarks measure the latter with runtime.ReadMemStats.
type Memory struct {
	HostBytes    int64 // host entries, host panes, distinct sets
	PairBytes    int64 // pair entries, pair panes, pair map, pane log, hot list
	AddressBytes int64 // the address table
	ScratchBytes int64 // reusable buffers (rows, masks, per-port counters)
	Hosts, Pairs int
}

// Memory estimates the engine's state size.
func (e *Engine) Memory() Memory {
	m := Memory{Hosts: e.nHosts, Pairs: e.nPairs}
	ref := int64(unsafe.Sizeof(hotRef{}))
	m.HostBytes = int64(cap(e.hosts))*int64(unsafe.Sizeof(host{})) +
		int64(e.hpanes.capacity())*int64(unsafe.Sizeof(hostPane{})) +
		int64(cap(e.hostFree))*4 + int64(cap(e.hostVisits))*4
	for i := range e.hosts {
		m.HostBytes += int64(cap(e.hosts[i].set.slots)) * 8
	}
	for i := range e.paneHosts {
		m.HostBytes += int64(cap(e.paneHosts[i].refs)) * ref
	}
	for _, ls := range [][][]hostRef{e.hostClassLists, e.hostRowLists} {
		for _, l := range ls {
			m.HostBytes += int64(cap(l)) * ref
		}
	}
	m.PairBytes = int64(e.pairs.capacity())*int64(unsafe.Sizeof(pair{})) +
		int64(e.ppanes.capacity())*int64(unsafe.Sizeof(pairPane{})) +
		mapBytes(len(e.pairIDs), 16) +
		int64(cap(e.pairFree))*4 + int64(cap(e.pairVisits))*4
	for i := range e.plog {
		s := &e.plog[i]
		m.PairBytes += int64(cap(s.entries))*int64(unsafe.Sizeof(pairLogEntry{})) +
			int64(cap(s.hot))*4 + int64(cap(s.pairs))*ref
	}
	for i := range e.sessionChecks {
		m.PairBytes += int64(cap(e.sessionChecks[i].refs)) * ref
	}
	for _, ls := range [][][]hotRef{e.pairClassLists, e.pairRowLists} {
		for _, l := range ls {
			m.PairBytes += int64(cap(l)) * ref
		}
	}
	m.AddressBytes = mapBytes(len(e.addrs.ids), 20) +
		int64(cap(e.addrs.keys))*16 +
		int64(cap(e.addrs.meta))*int64(unsafe.Sizeof(addrMeta{})) +
		int64(cap(e.addrs.free))*4
	for i := range e.portHosts {
		m.ScratchBytes += int64(cap(e.portHosts[i])) * 4
	}
	m.ScratchBytes += int64(cap(e.hostRows))*int64(unsafe.Sizeof(hostRow{})) +
		int64(cap(e.pairRows))*int64(unsafe.Sizeof(pairRow{}))
	return m
}

// BytesPerPair is the pair state plus the address table per tracked pair:
// with many pairs, nearly every address is some pair's destination.
func (m Memory) BytesPerPair() float64 {
	if m.Pairs == 0 {
		return 0
	}
	return float64(m.PairBytes+m.AddressBytes) / float64(m.Pairs)
}

// BytesPerHost is the host state per tracked host.
func (m Memory) BytesPerHost() float64 {
	if m.Hosts == 0 {
		return 0
	}
	return float64(m.HostBytes) / float64(m.Hosts)
}

// mapBytes estimates a Go (Swiss table) map of n entries with slot bytes
// per key and value: groups of 8 slots and an 8-byte control word, at most
// 7/8 full, sized in powers of two.
func mapBytes(n int, slot int64) int64 {
	if n == 0 {
		return 0
	}
	slots := uint64(n)*8/7 + 1
	slots = 1 << bits.Len64(slots-1)
	slots = max(slots, 8)
	return int64(slots/8) * (8 + 8*slot)
}
