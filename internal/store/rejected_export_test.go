package store

import (
	"context"
	"time"
)

// NewRejectWriterWithHooks makes a RejectWriter whose FlushInterval ticks
// come from ticks and whose INSERT attempts first call beforeInsert.
func (s *Store) NewRejectWriterWithHooks(cfg WriterConfig, ticks <-chan time.Time, beforeInsert func(context.Context) error) (*RejectWriter, error) {
	return s.newRejectWriter(cfg, rejectHooks{ticks: ticks, beforeInsert: beforeInsert})
}
