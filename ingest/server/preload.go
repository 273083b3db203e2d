package server

import (
	"cmp"
	"slices"

	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// StoredBatch is a batch known to be durable: its sequence number and how
// many of its events were stored.
type StoredBatch struct {
	Seq      uint64
	Accepted int
}

// MarkStored tells the server that these batches of (sensor, stream) are
// already durable, so that a sender resending them after a restart gets a
// duplicate ack, with the stored count, instead of a second copy. A
// restarted `ndr serve` calls it with what its spool holds before it starts
// listening.
func (s *Server) MarkStored(sensor, stream string, batches []StoredBatch) {
	if len(batches) == 0 {
		return
	}
	batches = slices.Clone(batches)
	slices.SortFunc(batches, func(a, b StoredBatch) int { return cmp.Compare(a.Seq, b.Seq) })
	k := streamKey{sensor: sensor, stream: stream}
	r := s.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.get(k, batches[0].Seq)
	for _, b := range batches {
		if b.Seq > st.low {
			st.stored[b.Seq] = &ndrv1.BatchAck{Seq: b.Seq, Accepted: uint32(b.Accepted)}
		}
	}
	st.compact()
}
