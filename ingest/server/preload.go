package server

import (
	"slices"

	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// MarkStored tells the server that batches seqs of (sensor, stream) are
// already durable, so that a sender resending them after a restart gets a
// duplicate ack instead of a second copy. A restarted `ndr serve` calls it
// with what its spool holds before it starts listening.
func (s *Server) MarkStored(sensor, stream string, seqs []uint64) {
	if len(seqs) == 0 {
		return
	}
	seqs = slices.Clone(seqs)
	slices.Sort(seqs)
	k := streamKey{sensor: sensor, stream: stream}
	r := s.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.get(k, seqs[0])
	for _, seq := range seqs {
		if seq > st.low {
			st.stored[seq] = &ndrv1.BatchAck{Seq: seq}
		}
	}
	st.compact()
}
