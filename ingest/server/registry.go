package server

import (
	"container/list"
	"sync"

	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// registry remembers, per (sensor, stream), which batches are stored or in
// flight, so that a batch resent after a reconnect is acknowledged instead
// of stored twice. It is memory only: across a server restart, exactly-once
// rests on the store's insert deduplication.
type registry struct {
	mu      sync.Mutex
	max     int
	streams map[streamKey]*list.Element // value: *streamState
	lru     *list.List                  // front: most recently used
}

type streamKey struct{ sensor, stream string }

type waiter func(*ndrv1.BatchAck, error)

type streamState struct {
	key     streamKey
	low     uint64                     // every seq <= low is stored (or predates this server)
	stored  map[uint64]*ndrv1.BatchAck // stored seqs above low
	recent  [recentAcks]recentAck      // results of seqs at or below low, by seq % recentAcks
	pending map[uint64][]waiter        // in flight; waiters are resends of the same seq
}

type recentAck struct {
	seq uint64
	ack *ndrv1.BatchAck
}

const (
	recentAcks = 1024
	// maxAbove bounds stored seqs kept above a gap in the sequence; a sender
	// that skips numbers cannot grow the map without limit.
	maxAbove = 1 << 16
)

func newRegistry(max int) *registry {
	return &registry{max: max, streams: make(map[streamKey]*list.Element), lru: list.New()}
}

// claim decides what to do with batch seq of stream k. first: the caller
// must store it and then call complete. Otherwise prior is the earlier
// outcome if the batch is already stored, or nil if it is in flight, in
// which case w is called when it completes.
func (r *registry) claim(k streamKey, seq uint64, w waiter) (first bool, prior *ndrv1.BatchAck) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.get(k, seq)
	if seq <= st.low {
		if ra := st.recent[seq%recentAcks]; ra.seq == seq && ra.ack != nil {
			return false, ra.ack
		}
		return false, &ndrv1.BatchAck{Seq: seq}
	}
	if a, ok := st.stored[seq]; ok {
		return false, a
	}
	if ws, ok := st.pending[seq]; ok {
		st.pending[seq] = append(ws, w)
		return false, nil
	}
	st.pending[seq] = nil
	return true, nil
}

// complete records the outcome of a batch claimed first and wakes resends
// of it. On error the batch is forgotten, so its next resend is stored.
func (r *registry) complete(k streamKey, seq uint64, ack *ndrv1.BatchAck, err error) {
	r.mu.Lock()
	var ws []waiter
	if el, ok := r.streams[k]; ok {
		st := el.Value.(*streamState)
		ws = st.pending[seq]
		delete(st.pending, seq)
		switch {
		case err != nil:
		case seq <= st.low: // the gap below it was given up on
			st.recent[seq%recentAcks] = recentAck{seq: seq, ack: ack}
		default:
			st.stored[seq] = ack
			st.compact()
		}
	}
	r.mu.Unlock()
	for _, w := range ws {
		w(ack, err)
	}
}

func (st *streamState) compact() {
	for {
		a, ok := st.stored[st.low+1]
		if !ok {
			break
		}
		delete(st.stored, st.low+1)
		st.low++
		st.recent[st.low%recentAcks] = recentAck{seq: st.low, ack: a}
	}
	if len(st.stored) > maxAbove { // a gap that never fills: give up on it
		next := uint64(0)
		for seq := range st.stored {
			if next == 0 || seq < next {
				next = seq
			}
		}
		st.low = next - 1
		st.compact()
	}
}

// get returns k's state, creating it with the first seen seq as its base:
// a sender resends its lowest unacknowledged batch first, so anything below
// that was acknowledged before this server knew the stream.
func (r *registry) get(k streamKey, seq uint64) *streamState {
	if el, ok := r.streams[k]; ok {
		r.lru.MoveToFront(el)
		return el.Value.(*streamState)
	}
	st := &streamState{key: k, low: seq - 1, stored: make(map[uint64]*ndrv1.BatchAck), pending: make(map[uint64][]waiter)}
	r.streams[k] = r.lru.PushFront(st)
	for r.lru.Len() > r.max {
		el := r.lru.Back()
		for el != nil && len(el.Value.(*streamState).pending) > 0 {
			el = el.Prev()
		}
		if el == nil || el.Value.(*streamState) == st {
			break
		}
		delete(r.streams, el.Value.(*streamState).key)
		r.lru.Remove(el)
	}
	return st
}
