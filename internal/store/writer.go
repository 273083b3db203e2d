package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ndr-go/ndr/ingest"
)

// connColumns is the INSERT column list, in the order connBuffer.columns
// returns them. ingest_time is left to its DEFAULT (the server clock).
const connColumns = "ts, uid, orig_h, orig_p, resp_h, resp_p, proto, service, duration, " +
	"orig_bytes, resp_bytes, conn_state, local_orig, local_resp, missed_bytes, history, " +
	"orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, sensor"

// numBuffers is double buffering: one INSERT in flight while the next
// buffer fills. A third full buffer would only add memory and latency.
const numBuffers = 2

// ConnWriter batches connection records into columnar INSERTs of ndr.conn.
//
// Write encodes a batch into the buffer being filled; the buffer is
// inserted when it holds FlushRows rows, when FlushInterval ticks, on Flush
// and on Shutdown. One INSERT is in flight while the other buffer fills;
// when both are taken Write blocks, so callers feel back-pressure.
//
// Each INSERT carries an insert_deduplication_token derived from the
// (sensor, stream, seq) of its batches, and the table keeps a
// deduplication window, so retrying an INSERT whose reply was lost does not
// store its rows twice.
//
// Methods are safe for concurrent use.
type ConnWriter struct {
	conn      driver.Conn
	insertSQL string
	cfg       WriterConfig
	logger    *slog.Logger
	hooks     writerHooks

	mu       sync.Mutex
	started  bool
	closed   bool
	cur      *connBuffer      // being filled; nil until a free one is taken
	free     chan *connBuffer // empty buffers
	flushq   chan *connBuffer // full buffers, in order, for the flusher
	closing  chan struct{}    // closed by Shutdown: wakes blocked writers
	finished chan struct{}    // closed when the flusher has drained flushq
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	rows, batches, inserts, retries, failures, failedRows atomic.Uint64
}

// writerHooks let tests drive time and inject faults.
type writerHooks struct {
	// ticks replaces the FlushInterval ticker.
	ticks <-chan time.Time
	// beforeInsert runs before each INSERT attempt (1-based); an error
	// becomes the attempt's result.
	beforeInsert func(ctx context.Context, attempt int) error
	// afterInsert runs after an INSERT committed; an error becomes the
	// attempt's result, as when the server's reply is lost.
	afterInsert func(attempt int) error
}

// WriterStats are a ConnWriter's counters since it was made.
type WriterStats struct {
	Rows       uint64 // rows committed
	Batches    uint64 // batches committed
	Inserts    uint64 // INSERTs committed
	Retries    uint64 // INSERT attempts repeated after a transient error
	Failures   uint64 // INSERTs given up (their batches' done got the error)
	FailedRows uint64 // rows in those INSERTs
}

// NewConnWriter makes a writer for the store's conn table. Call Start
// before Write.
func (s *Store) NewConnWriter(cfg WriterConfig) (*ConnWriter, error) {
	return s.newConnWriter(cfg, writerHooks{})
}

func (s *Store) newConnWriter(cfg WriterConfig, hooks writerHooks) (*ConnWriter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("conn writer config: %w", err)
	}
	w := &ConnWriter{
		conn:      s.conn,
		insertSQL: "INSERT INTO " + quoteIdent(s.db) + ".conn (" + connColumns + ")",
		cfg:       cfg,
		logger:    s.logger.With("component", "conn_writer"),
		hooks:     hooks,
		free:      make(chan *connBuffer, numBuffers),
		flushq:    make(chan *connBuffer, numBuffers),
		closing:   make(chan struct{}),
		finished:  make(chan struct{}),
	}
	for range numBuffers {
		w.free <- newConnBuffer()
	}
	return w, nil
}

// Start runs the flusher. ctx supplies values for the writer's INSERTs;
// its cancellation does not stop the writer: Shutdown does.
func (w *ConnWriter) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrWriterClosed
	}
	if w.started {
		return nil
	}
	w.started = true
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	ticks, stopTicker := w.hooks.ticks, func() {}
	if ticks == nil {
		t := time.NewTicker(w.cfg.FlushInterval)
		ticks, stopTicker = t.C, t.Stop
	}
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		defer close(w.finished)
		for b := range w.flushq {
			w.flush(runCtx, b)
		}
	}()
	go func() {
		defer w.wg.Done()
		defer stopTicker()
		for {
			select {
			case <-ticks:
				w.mu.Lock()
				if !w.closed {
					w.handOffLocked()
				}
				w.mu.Unlock()
			case <-w.closing:
				return
			}
		}
	}()
	return nil
}

// Write copies b's records into the current buffer; the caller may reuse b
// as soon as Write returns. done (may be nil) is called exactly once, from
// the writer's goroutine, after the INSERT holding the batch committed (nil)
// or failed for good (the error; Retryable tells whether trying later may
// help). done is called only if Write returns nil. It must not block or
// call Write: INSERTs wait for it.
//
// Write blocks while both buffers are taken (one INSERT in flight, one
// full and waiting); it returns ctx's error if ctx ends first.
func (w *ConnWriter) Write(ctx context.Context, b *ingest.Batch, done func(error)) error {
	w.mu.Lock()
	if err := w.acquireLocked(ctx); err != nil {
		return err
	}
	w.cur.add(b, done, w.cfg.FlushRows)
	if w.cur.rows() >= w.cfg.FlushRows {
		w.handOffLocked()
	}
	w.mu.Unlock()
	return nil
}

// WriteChunk inserts batches as one INSERT of their own, never merged with
// other writes, carrying token as its insert_deduplication_token. A caller
// that can repeat the same chunk after a crash (the spool) gets exactly-once
// storage: ClickHouse drops the repeat. done is called once, as for Write;
// the caller must not modify the batches until then.
func (w *ConnWriter) WriteChunk(ctx context.Context, token string, batches []*ingest.Batch, done func(error)) error {
	if token == "" {
		return errors.New("store: WriteChunk needs a token")
	}
	w.mu.Lock()
	if err := w.acquireLocked(ctx); err != nil {
		return err
	}
	if !w.cur.empty() { // close the open buffer: chunks are never merged
		w.handOffLocked()
		if err := w.acquireLocked(ctx); err != nil {
			return err
		}
	}
	for i, b := range batches {
		var d func(error)
		if i == len(batches)-1 {
			d = done
		}
		w.cur.add(b, d, w.cfg.FlushRows)
	}
	if len(batches) == 0 {
		w.mu.Unlock()
		done(nil)
		return nil
	}
	w.cur.fixed = token
	w.handOffLocked()
	w.mu.Unlock()
	return nil
}

// Flush inserts what is buffered and waits until everything written before
// it committed or failed. It returns ctx's error if ctx ends first (the
// INSERTs go on).
func (w *ConnWriter) Flush(ctx context.Context) error {
	w.mu.Lock()
	if err := w.acquireLocked(ctx); err != nil {
		return err
	}
	// Buffers are inserted in order, so when this one is through, so are
	// all before it. It goes even if empty.
	ch := make(chan struct{})
	w.cur.waiters = append(w.cur.waiters, ch)
	w.flushq <- w.cur
	w.cur = nil
	w.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acquireLocked makes w.cur a buffer to fill, waiting for one if both are
// taken. It is called and returns with w.mu held, except that on error it
// returns with w.mu released.
func (w *ConnWriter) acquireLocked(ctx context.Context) error {
	for {
		switch {
		case w.closed:
			w.mu.Unlock()
			return ErrWriterClosed
		case !w.started:
			w.mu.Unlock()
			return ErrWriterNotStarted
		case w.cur != nil:
			return nil
		}
		select {
		case b := <-w.free:
			w.cur = b
			continue
		default:
		}
		w.mu.Unlock()
		var b *connBuffer
		select {
		case b = <-w.free:
		case <-ctx.Done():
			return ctx.Err()
		case <-w.closing:
			return ErrWriterClosed
		}
		w.mu.Lock()
		if w.cur == nil && !w.closed {
			w.cur = b
		} else {
			w.free <- b // never blocks: it has room for every buffer
		}
	}
}

// handOffLocked queues the current buffer for the flusher if it has
// anything. flushq has room for every buffer, so this never blocks.
func (w *ConnWriter) handOffLocked() {
	if w.cur != nil && !w.cur.empty() {
		w.flushq <- w.cur
		w.cur = nil
	}
}

// Shutdown stops accepting writes, inserts what is buffered and waits for
// all INSERTs. If ctx ends first it cancels them: their batches' done get
// the error, and Shutdown returns ctx's error. It is safe to call more than
// once; later calls wait like the first.
func (w *ConnWriter) Shutdown(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.closing)
		if w.started {
			if w.cur != nil {
				if w.cur.empty() {
					w.free <- w.cur
				} else {
					w.flushq <- w.cur
				}
				w.cur = nil
			}
			close(w.flushq)
		} else {
			close(w.finished)
		}
	}
	w.mu.Unlock()
	select {
	case <-w.finished:
	default:
		select {
		case <-w.finished:
		case <-ctx.Done():
			w.cancel() // set: finished is closed at once when never started
			<-w.finished
			w.wg.Wait()
			return ctx.Err()
		}
	}
	w.wg.Wait()
	if w.cancel != nil {
		w.cancel()
	}
	return nil
}

// Stats returns the counters.
func (w *ConnWriter) Stats() WriterStats {
	return WriterStats{
		Rows:       w.rows.Load(),
		Batches:    w.batches.Load(),
		Inserts:    w.inserts.Load(),
		Retries:    w.retries.Load(),
		Failures:   w.failures.Load(),
		FailedRows: w.failedRows.Load(),
	}
}

// flush inserts b with retries, reports to its batches and recycles it.
func (w *ConnWriter) flush(ctx context.Context, b *connBuffer) {
	var err error
	if n := b.rows(); n > 0 {
		err = w.insertWithRetry(ctx, b)
		if err == nil {
			w.rows.Add(uint64(n))
			w.batches.Add(uint64(len(b.refs)))
			w.inserts.Add(1)
		} else {
			w.failures.Add(1)
			w.failedRows.Add(uint64(n))
			w.logger.Error("conn insert failed", "rows", n, "batches", len(b.refs), "err", err)
		}
	}
	for _, r := range b.refs {
		if r.done != nil {
			r.done(err)
		}
	}
	for _, ch := range b.waiters {
		close(ch)
	}
	b.reset()
	w.free <- b
}

func (w *ConnWriter) insertWithRetry(ctx context.Context, b *connBuffer) error {
	token := b.token()
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplication_token": token,
		// A backfill or a hostile sender can put more than 100 days of ts
		// in one INSERT. Refusing it would fail the same INSERT on every
		// resend; many small parts are the lesser harm, and merges fix them.
		"throw_on_max_partitions_per_insert_block": 0,
	}))
	for attempt := 1; ; attempt++ {
		err := w.insertOnce(ctx, b, attempt)
		if err == nil {
			return nil
		}
		if !Retryable(err) || attempt >= w.cfg.MaxAttempts {
			return fmt.Errorf("insert %d conn rows (attempt %d): %w", b.rows(), attempt, err)
		}
		wait := backoff(attempt, w.cfg.RetryBackoff, w.cfg.MaxRetryBackoff)
		w.retries.Add(1)
		w.logger.Warn("conn insert failed, retrying", "attempt", attempt, "in", wait, "token", token, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("insert %d conn rows (attempt %d): %w (after %w)", b.rows(), attempt, ctx.Err(), err)
		}
	}
}

func (w *ConnWriter) insertOnce(ctx context.Context, b *connBuffer, attempt int) error {
	if h := w.hooks.beforeInsert; h != nil {
		if err := h(ctx, attempt); err != nil {
			return err
		}
	}
	batch, err := w.conn.PrepareBatch(ctx, w.insertSQL)
	if err != nil {
		return err
	}
	for i, col := range b.columns() {
		if err := batch.Column(i).Append(col); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("append column %d: %w", i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return err
	}
	if h := w.hooks.afterInsert; h != nil {
		return h(attempt)
	}
	return nil
}

// batchRef is what a buffer keeps of each batch in it.
type batchRef struct {
	sensor, stream string
	seq            uint64
	done           func(error)
}

// connBuffer holds rows column by column, ready for Column(i).Append. Its
// slices are reused from one INSERT to the next.
type connBuffer struct {
	ts                                           []time.Time
	uid                                          []string
	origH, respH                                 [][16]byte
	origP, respP                                 []uint16
	proto, service, connState, history, sensor   []any // LowCardinality: see boxes
	duration                                     []float64
	origBytes, respBytes, missedBytes            []uint64
	origPkts, origIPBytes, respPkts, respIPBytes []uint64
	localOrig, localResp                         []*bool
	yes, no                                      bool // what localOrig/localResp point at

	// boxes holds each LowCardinality value boxed once. clickhouse-go
	// appends a LowCardinality column row by row as an any, so a []string
	// costs an allocation per row and column; a []any of shared boxes none.
	boxes map[string]any

	refs    []batchRef
	waiters []chan struct{} // Flush calls waiting for this buffer
	nonce   string          // see token
	fixed   string          // a token given by WriteChunk, used as is
}

func newConnBuffer() *connBuffer { return &connBuffer{yes: true, boxes: make(map[string]any)} }

// maxBoxes bounds connBuffer.boxes: values past it are boxed per row.
const maxBoxes = 1 << 16

// Boxes of the names of every Transport and ConnState.
var protoBoxes, stateBoxes = func() (p [4]any, s [14]any) {
	for i := range p {
		p[i] = ingest.Transport(i).String()
	}
	for i := range s {
		s[i] = ingest.ConnState(i).String()
	}
	return p, s
}()

func (b *connBuffer) box(s string) any {
	if v, ok := b.boxes[s]; ok {
		return v
	}
	var v any = s
	if len(b.boxes) < maxBoxes {
		b.boxes[s] = v
	}
	return v
}

func (b *connBuffer) rows() int { return len(b.ts) }

// empty: nothing to insert and nobody to tell.
func (b *connBuffer) empty() bool { return len(b.refs) == 0 && len(b.waiters) == 0 }

func (b *connBuffer) add(batch *ingest.Batch, done func(error), flushRows int) {
	b.refs = append(b.refs, batchRef{sensor: batch.Sensor, stream: batch.Stream, seq: batch.Seq, done: done})
	if need := len(b.ts) + len(batch.Conns); need > cap(b.ts) {
		// Size for a whole INSERT at once instead of growing by doubling.
		b.grow(max(need, flushRows+len(batch.Conns)))
	}
	for i := range batch.Conns {
		c := &batch.Conns[i]
		b.ts = append(b.ts, time.UnixMicro(c.TS).UTC())
		b.uid = append(b.uid, c.UID)
		b.origH = append(b.origH, c.OrigH.As16()) // IPv4 becomes ::ffff:a.b.c.d
		b.origP = append(b.origP, c.OrigP)
		b.respH = append(b.respH, c.RespH.As16())
		b.respP = append(b.respP, c.RespP)
		if int(c.Proto) < len(protoBoxes) {
			b.proto = append(b.proto, protoBoxes[c.Proto])
		} else {
			b.proto = append(b.proto, c.Proto.String())
		}
		b.service = append(b.service, b.box(c.Service))
		b.duration = append(b.duration, c.Duration.Seconds())
		b.origBytes = append(b.origBytes, c.OrigBytes)
		b.respBytes = append(b.respBytes, c.RespBytes)
		if int(c.ConnState) < len(stateBoxes) {
			b.connState = append(b.connState, stateBoxes[c.ConnState])
		} else {
			b.connState = append(b.connState, c.ConnState.String())
		}
		b.localOrig = append(b.localOrig, b.tristate(c.LocalOrig))
		b.localResp = append(b.localResp, b.tristate(c.LocalResp))
		b.missedBytes = append(b.missedBytes, c.MissedBytes)
		b.history = append(b.history, b.box(c.History))
		b.origPkts = append(b.origPkts, c.OrigPkts)
		b.origIPBytes = append(b.origIPBytes, c.OrigIPBytes)
		b.respPkts = append(b.respPkts, c.RespPkts)
		b.respIPBytes = append(b.respIPBytes, c.RespIPBytes)
		b.sensor = append(b.sensor, b.box(c.Sensor))
	}
}

// grow makes room for n rows in every column.
func (b *connBuffer) grow(n int) {
	n -= len(b.ts)
	b.ts = slices.Grow(b.ts, n)
	b.uid = slices.Grow(b.uid, n)
	b.origH, b.respH = slices.Grow(b.origH, n), slices.Grow(b.respH, n)
	b.origP, b.respP = slices.Grow(b.origP, n), slices.Grow(b.respP, n)
	b.proto, b.service = slices.Grow(b.proto, n), slices.Grow(b.service, n)
	b.connState, b.history, b.sensor = slices.Grow(b.connState, n), slices.Grow(b.history, n), slices.Grow(b.sensor, n)
	b.duration = slices.Grow(b.duration, n)
	b.origBytes, b.respBytes, b.missedBytes = slices.Grow(b.origBytes, n), slices.Grow(b.respBytes, n), slices.Grow(b.missedBytes, n)
	b.origPkts, b.origIPBytes = slices.Grow(b.origPkts, n), slices.Grow(b.origIPBytes, n)
	b.respPkts, b.respIPBytes = slices.Grow(b.respPkts, n), slices.Grow(b.respIPBytes, n)
	b.localOrig, b.localResp = slices.Grow(b.localOrig, n), slices.Grow(b.localResp, n)
}

func (b *connBuffer) tristate(t ingest.Tristate) *bool {
	switch t {
	case ingest.True:
		return &b.yes
	case ingest.False:
		return &b.no
	}
	return nil
}

// columns returns the column slices in connColumns order.
func (b *connBuffer) columns() []any {
	return []any{
		b.ts, b.uid, b.origH, b.origP, b.respH, b.respP, b.proto, b.service, b.duration,
		b.origBytes, b.respBytes, b.connState, b.localOrig, b.localResp, b.missedBytes, b.history,
		b.origPkts, b.origIPBytes, b.respPkts, b.respIPBytes, b.sensor,
	}
}

// reset empties b, keeping capacity. Strings and done funcs are dropped
// so the buffer does not pin them.
func (b *connBuffer) reset() {
	clear(b.uid)
	clear(b.proto)
	clear(b.service)
	clear(b.connState)
	clear(b.history)
	clear(b.sensor)
	clear(b.refs)
	b.ts, b.uid, b.origH, b.respH = b.ts[:0], b.uid[:0], b.origH[:0], b.respH[:0]
	b.origP, b.respP = b.origP[:0], b.respP[:0]
	b.proto, b.service, b.connState, b.history, b.sensor = b.proto[:0], b.service[:0], b.connState[:0], b.history[:0], b.sensor[:0]
	b.duration = b.duration[:0]
	b.origBytes, b.respBytes, b.missedBytes = b.origBytes[:0], b.respBytes[:0], b.missedBytes[:0]
	b.origPkts, b.origIPBytes, b.respPkts, b.respIPBytes = b.origPkts[:0], b.origIPBytes[:0], b.respPkts[:0], b.respIPBytes[:0]
	b.localOrig, b.localResp = b.localOrig[:0], b.localResp[:0]
	b.refs, b.waiters, b.nonce, b.fixed = b.refs[:0], nil, "", ""
}

// token is the INSERT's insert_deduplication_token: a hash of the
// (sensor, stream, seq) of its batches in order, so the same batches
// inserted again (a retry after a lost reply) are recognised. A batch
// without an identity (no stream or seq 0) cannot be recognised across
// buffers; the token then also hashes a random nonce kept with the buffer,
// which still covers retries of this INSERT and never makes two different
// buffers collide.
func (b *connBuffer) token() string {
	if b.fixed != "" {
		return b.fixed
	}
	h := sha256.New()
	h.Write([]byte("ndr.conn.v1"))
	anonymous := false
	for _, r := range b.refs {
		writeString(h, r.sensor)
		writeString(h, r.stream)
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], r.seq)
		h.Write(n[:])
		if r.stream == "" || r.seq == 0 {
			anonymous = true
		}
	}
	if anonymous {
		if b.nonce == "" {
			b.nonce = rand.Text()
		}
		writeString(h, b.nonce)
	}
	return "ndr-conn-" + hex.EncodeToString(h.Sum(nil)[:16])
}

func writeString(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}
