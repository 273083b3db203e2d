package store

import (
	"context"
	"io/fs"
	"time"
)

// WriterHooks exposes writerHooks to the external tests.
type WriterHooks struct {
	Ticks        <-chan time.Time
	BeforeInsert func(ctx context.Context, attempt int) error
	AfterInsert  func(attempt int) error
}

func (s *Store) NewConnWriterWithHooks(cfg WriterConfig, h WriterHooks) (*ConnWriter, error) {
	return s.newConnWriter(cfg, writerHooks{ticks: h.Ticks, beforeInsert: h.BeforeInsert, afterInsert: h.AfterInsert})
}

func MigrateFS(ctx context.Context, s *Store, fsys fs.FS) error {
	return migrate(ctx, s.conn, s.db, fsys, s.logger)
}

var (
	SplitStatements = splitStatements
	TableTTL        = tableTTL
)
