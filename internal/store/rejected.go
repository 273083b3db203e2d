package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Sources of rejected rows (the source column of ndr.rejected).
const (
	RejectedGRPC = "grpc"
	RejectedFile = "file"
)

// Rejected is one row of ndr.rejected: an event or input line ndr refused,
// with why and the input as it arrived (see migration 0005).
type Rejected struct {
	ReceivedAt time.Time
	Source     string // RejectedGRPC or RejectedFile
	Sensor     string
	Stream     string // grpc
	Seq        uint64 // grpc
	Index      uint32 // grpc: position in the batch
	File       string // file
	Line       uint64 // file
	Elem       uint32 // file: position in a JSON array, 0 otherwise
	Field      string
	Reason     string
	Raw        []byte // bounded by the producer; see RawSize
	RawSize    uint64 // size of the whole input
	Peer       string // grpc
}

const rejectedColumns = "received_at, source, sensor, stream, seq, event_index, file, line, elem, field, reason, raw, raw_size, peer"

// rejectedMaxBytes bounds the raw bytes buffered in a RejectWriter; beyond
// it (or FlushRows rows) Write blocks until an INSERT makes room.
const rejectedMaxBytes = 32 << 20

// RejectWriter buffers rows of ndr.rejected and inserts them when FlushRows
// are buffered, every FlushInterval, on Flush and on Shutdown. Memory is
// bounded: while FlushRows rows or 32 MiB are waiting, Write blocks, so a
// flood of bad input slows its sender instead of growing the heap.
//
// Methods are safe for concurrent use.
type RejectWriter struct {
	conn      driver.Conn
	insertSQL string
	cfg       WriterConfig
	logger    *slog.Logger
	hooks     rejectHooks

	mu       sync.Mutex
	buf      []Rejected
	bytes    int
	dones    []func(error)
	waiters  []chan struct{} // Flush calls waiting for the buffer
	room     chan struct{}   // closed and replaced when the buffer is taken
	started  bool
	closed   bool
	kick     chan struct{}
	stop     chan struct{}
	finished chan struct{}

	rows, inserts, failures atomic.Uint64
}

// RejectStats count rows stored and INSERTs given up.
type RejectStats struct {
	Rows, Inserts, Failures uint64
}

// NewRejectWriter returns a writer of the store's rejected table; Start it
// before Write.
func (s *Store) NewRejectWriter(cfg WriterConfig) (*RejectWriter, error) {
	return s.newRejectWriter(cfg, rejectHooks{})
}

// rejectHooks let tests drive time and hold INSERTs.
type rejectHooks struct {
	ticks        <-chan time.Time // replaces the FlushInterval ticker
	beforeInsert func(ctx context.Context) error
}

func (s *Store) newRejectWriter(cfg WriterConfig, hooks rejectHooks) (*RejectWriter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("reject writer config: %w", err)
	}
	return &RejectWriter{
		conn:      s.conn,
		insertSQL: "INSERT INTO " + quoteIdent(s.db) + ".rejected (" + rejectedColumns + ")",
		cfg:       cfg,
		logger:    s.logger.With("component", "reject_writer"),
		hooks:     hooks,
		room:      make(chan struct{}),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		finished:  make(chan struct{}),
	}, nil
}

// Start runs the flusher until Shutdown. ctx supplies values only.
func (w *RejectWriter) Start(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed {
		return
	}
	w.started = true
	go w.run(context.WithoutCancel(ctx))
}

func (w *RejectWriter) run(ctx context.Context) {
	defer close(w.finished)
	ticks := w.hooks.ticks
	if ticks == nil {
		t := time.NewTicker(w.cfg.FlushInterval)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ticks:
		case <-w.kick:
		case <-w.stop:
			w.flush(ctx)
			return
		}
		w.flush(ctx)
	}
}

// Write copies rs into the buffer; the caller may reuse rs when it
// returns. done (may be nil) is called exactly once, from the writer's
// goroutine, when the INSERT holding the rows committed (nil) or failed
// for good; only if Write returns nil. It must not block.
//
// Write blocks while the buffer is full, and returns ctx's error if ctx
// ends first.
func (w *RejectWriter) Write(ctx context.Context, rs []Rejected, done func(error)) error {
	size := 0
	for i := range rs {
		size += len(rs[i].Raw)
	}
	w.mu.Lock()
	for {
		switch {
		case w.closed:
			w.mu.Unlock()
			return ErrWriterClosed
		case !w.started:
			w.mu.Unlock()
			return ErrWriterNotStarted
		}
		// An empty buffer takes anything, so one large Write cannot wait
		// forever.
		if len(w.buf) == 0 || (len(w.buf)+len(rs) <= w.cfg.FlushRows && w.bytes+size <= rejectedMaxBytes) {
			break
		}
		room := w.room
		w.kickLocked()
		w.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		case <-w.stop:
		}
		w.mu.Lock()
	}
	for _, r := range rs {
		r.Raw = append([]byte(nil), r.Raw...)
		w.buf = append(w.buf, r)
	}
	w.bytes += size
	if done != nil {
		w.dones = append(w.dones, done)
	}
	if len(w.buf) >= w.cfg.FlushRows || w.bytes >= rejectedMaxBytes {
		w.kickLocked()
	}
	w.mu.Unlock()
	return nil
}

func (w *RejectWriter) kickLocked() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Flush inserts what is buffered and waits until it committed or failed,
// or until ctx ends.
func (w *RejectWriter) Flush(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrWriterClosed
	}
	if !w.started {
		w.mu.Unlock()
		return ErrWriterNotStarted
	}
	ch := make(chan struct{})
	w.waiters = append(w.waiters, ch)
	w.kickLocked()
	w.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown stops accepting rows, inserts what is buffered and waits for it,
// or for ctx. It is safe to call more than once.
func (w *RejectWriter) Shutdown(ctx context.Context) error {
	w.mu.Lock()
	already := w.closed
	w.closed = true
	started := w.started
	w.mu.Unlock()
	if !already {
		close(w.stop)
		if !started {
			close(w.finished)
		}
	}
	select {
	case <-w.finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the counters so far.
func (w *RejectWriter) Stats() RejectStats {
	return RejectStats{Rows: w.rows.Load(), Inserts: w.inserts.Load(), Failures: w.failures.Load()}
}

// flush takes the buffer, inserts it with retries and reports to its
// writers. Only the flusher goroutine calls it, so INSERTs are in order.
func (w *RejectWriter) flush(ctx context.Context) {
	w.mu.Lock()
	rows, dones, waiters := w.buf, w.dones, w.waiters
	w.buf, w.dones, w.waiters, w.bytes = nil, nil, nil, 0
	close(w.room)
	w.room = make(chan struct{})
	w.mu.Unlock()
	var err error
	if len(rows) > 0 {
		err = w.insertWithRetry(ctx, rows)
		if err == nil {
			w.rows.Add(uint64(len(rows)))
			w.inserts.Add(1)
		} else {
			w.failures.Add(1)
			w.logger.Error("rejected rows not stored", "rows", len(rows), "err", err)
		}
	}
	for _, d := range dones {
		d(err)
	}
	for _, ch := range waiters {
		close(ch)
	}
}

func (w *RejectWriter) insertWithRetry(ctx context.Context, rows []Rejected) error {
	// The same token on every attempt: a retry after a lost reply is
	// dropped by the table's deduplication window.
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplication_token": "ndr-rejected-" + rand.Text(),
	}))
	for attempt := 1; ; attempt++ {
		err := w.insertOnce(ctx, rows)
		if err == nil {
			return nil
		}
		if !Retryable(err) || attempt >= w.cfg.MaxAttempts {
			return fmt.Errorf("insert %d rejected rows (attempt %d): %w", len(rows), attempt, err)
		}
		t := time.NewTimer(backoff(attempt, w.cfg.RetryBackoff, w.cfg.MaxRetryBackoff))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("insert %d rejected rows (attempt %d): %w (after %w)", len(rows), attempt, ctx.Err(), err)
		}
	}
}

func (w *RejectWriter) insertOnce(ctx context.Context, rows []Rejected) error {
	if h := w.hooks.beforeInsert; h != nil {
		if err := h(ctx); err != nil {
			return err
		}
	}
	batch, err := w.conn.PrepareBatch(ctx, w.insertSQL)
	if err != nil {
		return err
	}
	for i := range rows {
		r := &rows[i]
		if err := batch.Append(r.ReceivedAt.UTC(), r.Source, r.Sensor, r.Stream, r.Seq, r.Index,
			r.File, r.Line, r.Elem, r.Field, r.Reason, string(r.Raw), r.RawSize, r.Peer); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("append rejected row: %w", err)
		}
	}
	return batch.Send()
}
