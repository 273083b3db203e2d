// Package spool is ingest's durable buffer between the gRPC edge and
// ClickHouse: a bounded, append-only log of accepted batches on local disk.
//
// A batch is acknowledged once its record is fsynced here, so an ack means
// stored even while ClickHouse is down. A drainer moves the log into
// ClickHouse in chunks; before a chunk's INSERT starts, a cut record that
// names the chunk's batches is made durable, and the INSERT carries a
// deduplication token derived from the spool id and the chunk number. After
// a crash, recovery finds the chunks that were cut but not confirmed and
// inserts them again with the same boundaries and tokens, so ClickHouse
// drops what it already has: every accepted event is stored exactly once.
//
// The log also remembers which (sensor, stream, seq) it holds, so a server
// restarted after kill -9 recognises the batches a sender resends, and it
// keeps recently drained batches so analysis state (windows, pending
// correlations) can be rebuilt by replaying them (Replay).
//
// Ownership: the spool keeps a reference to each batch passed to Write
// until the batch is drained; callers must not modify a batch after Write.
package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

// Errors.
var (
	// ErrClosed: the spool is shutting down or shut down.
	ErrClosed = errors.New("spool: closed")
	// ErrBroken: a write or fsync failed; nothing more is accepted.
	ErrBroken = errors.New("spool: disk write failed")
	// ErrTooLarge: one batch is larger than the whole spool.
	ErrTooLarge = errors.New("spool: batch larger than the spool")
)

// Options configure a spool. Zero values take the defaults of Defaults().
type Options struct {
	Dir string
	// MaxBytes bounds the log on disk. When it is full, Write blocks until
	// the drainer frees room: senders feel back-pressure.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment file starts.
	SegmentBytes int64
	// ChunkRows and ChunkAge cut a chunk (one INSERT) at this many rows or
	// when its oldest batch is this old, whichever comes first.
	ChunkRows int
	ChunkAge  time.Duration
	// RetainBytes of drained batches are kept for Replay after a restart
	// and for recognising batches a sender resends because their ack was
	// lost: a batch is remembered for as long as its segment is kept.
	RetainBytes int64
	// CacheBytes of not yet drained batches are kept decoded in memory;
	// beyond it (a ClickHouse outage) the drainer reads them back from disk.
	CacheBytes int64
	// RetryMin and RetryMax bound the wait before an INSERT is tried again.
	RetryMin, RetryMax time.Duration
}

// Defaults returns the production defaults: 4 GiB on disk, 64 MiB
// segments, 100,000-row or one-second chunks, 256 MiB kept for replay.
func Defaults() Options {
	return Options{
		MaxBytes: 4 << 30, SegmentBytes: 64 << 20, ChunkRows: 100_000, ChunkAge: time.Second,
		RetainBytes: 256 << 20, CacheBytes: 256 << 20, RetryMin: 200 * time.Millisecond, RetryMax: 10 * time.Second,
	}
}

func (o Options) withDefaults() Options {
	d := Defaults()
	if o.MaxBytes <= 0 {
		o.MaxBytes = d.MaxBytes
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = d.SegmentBytes
	}
	if o.ChunkRows <= 0 {
		o.ChunkRows = d.ChunkRows
	}
	if o.ChunkAge <= 0 {
		o.ChunkAge = d.ChunkAge
	}
	if o.RetainBytes < 0 {
		o.RetainBytes = 0
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = d.CacheBytes
	}
	if o.RetryMin <= 0 {
		o.RetryMin = d.RetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(d.RetryMax, o.RetryMin)
	}
	return o
}

// Inserter stores one chunk as one INSERT carrying token as its
// deduplication token, calling done once; store.ConnWriter.WriteChunk.
type Inserter interface {
	WriteChunk(ctx context.Context, token string, batches []*ingest.Batch, done func(error)) error
}

// AnalyzeFunc receives every durable batch, in log order, after it is
// acknowledged. It may block: the spool then stops acknowledging, and
// senders slow down.
type AnalyzeFunc func(ctx context.Context, lsn uint64, b *ingest.Batch) error

// Stats are counters and gauges.
type Stats struct {
	Batches, Rows        uint64 // accepted since Open
	Chunks, ChunkRetries uint64 // INSERTs committed, and retried
	Recovered            uint64 // batches found undrained at Open
	DiskBytes            int64  // log size now
	UndrainedBatches     int    // durable, not yet in ClickHouse
	Segments             int
}

type pendingRec struct {
	typ   byte
	lsn   uint64
	size  int // framed
	batch *ingest.Batch
	pos   batchPos
	done  func(error)
}

type chunk struct {
	seq         uint64
	first, last uint64
	lsns        []uint64
	rows        int
	attempts    int
	retryAt     time.Time
}

// Spool is the durable log. Write is safe for concurrent use.
type Spool struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	id   string

	mu        sync.Mutex
	space     chan struct{} // closed and replaced when room frees
	work      chan struct{} // pokes the flusher
	poke      chan struct{} // pokes the drainer
	segs      []*segment
	file      *os.File // the last segment, for appending
	readers   map[uint64]*os.File
	nextLSN   uint64
	durable   uint64
	buf       []byte
	recs      []pendingRec
	diskBytes int64 // segment files plus buf
	closed    bool
	broken    error

	nextChunk    uint64
	ready        []batchPos // durable batches not yet in a chunk, in order
	readySince   time.Time  // when the oldest of them became durable
	open         map[uint64]*chunk
	cache        map[uint64]*ingest.Batch
	cacheSizes   map[uint64]int
	cacheBytes   int64
	analysed     uint64
	delivered    uint64        // highest LSN handed to analysis (or written, without analysis)
	progress     chan struct{} // closed and replaced when delivered grows
	streams      map[[2]string][]Held
	replayFrom   uint64
	flushDone    chan struct{}
	drainDone    chan struct{}
	stopDrain    context.CancelFunc
	startOnce    sync.Once
	shutdownOnce sync.Once

	batches, rows, chunks, retries, recovered atomic.Uint64
}

// Open opens or creates the spool in opts.Dir and recovers its state:
// a torn tail is cut off, chunks cut but not confirmed are queued again
// with their tokens, and the streams it holds are indexed.
func Open(opts Options, log *slog.Logger, now func() time.Time) (*Spool, error) {
	opts = opts.withDefaults()
	if opts.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{
		opts: opts, log: log, now: now,
		space: make(chan struct{}), work: make(chan struct{}, 1), poke: make(chan struct{}, 1), progress: make(chan struct{}),
		readers: map[uint64]*os.File{}, open: map[uint64]*chunk{},
		cache: map[uint64]*ingest.Batch{}, cacheSizes: map[uint64]int{}, streams: map[[2]string][]Held{},
		nextLSN: 1, nextChunk: 1,
		flushDone: make(chan struct{}), drainDone: make(chan struct{}),
	}
	id, err := loadID(opts.Dir)
	if err != nil {
		return nil, err
	}
	s.id = id
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

func loadID(dir string) (string, error) {
	p := filepath.Join(dir, "spool.id")
	b, err := os.ReadFile(p)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) == 32 {
			return id, nil
		}
		return "", fmt.Errorf("spool: %s is not a spool id", p)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("spool: %w", err)
	}
	var r [16]byte
	_, _ = rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o640); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	return id, syncDir(dir)
}

func (s *Spool) recover() error {
	segs, err := listSegments(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	cuts := map[uint64][2]uint64{}
	drained := map[uint64]bool{}
	var lastCut uint64
	var batches []batchPos
	for i, seg := range segs {
		seg.lastLSN = seg.base - 1
		valid, err := seg.scan(func(r record) error {
			if r.lsn < s.nextLSN {
				return fmt.Errorf("spool: %s: record LSN %d goes backwards", seg.path, r.lsn)
			}
			s.nextLSN = r.lsn + 1
			seg.lastLSN = r.lsn
			switch r.typ {
			case recBatch:
				sensor, stream, seq, rows, err := batchHeader(r.payload)
				if err != nil {
					return fmt.Errorf("spool: %s: batch at %d: %w", seg.path, r.off, err)
				}
				p := batchPos{lsn: r.lsn, off: r.off, rows: rows, size: headerSize + len(r.payload), sensor: sensor, stream: stream, seq: seq}
				seg.batches = append(seg.batches, p)
				batches = append(batches, p)
			case recCut:
				v, ok := readU64s(r.payload, 3)
				if !ok {
					return fmt.Errorf("spool: %s: bad cut record at %d", seg.path, r.off)
				}
				cuts[v[0]] = [2]uint64{v[1], v[2]}
				lastCut = max(lastCut, v[2])
				s.nextChunk = max(s.nextChunk, v[0]+1)
			case recDrained:
				v, ok := readU64s(r.payload, 1)
				if !ok {
					return fmt.Errorf("spool: %s: bad drained record at %d", seg.path, r.off)
				}
				drained[v[0]] = true
			case recAnalysed:
				if v, ok := readU64s(r.payload, 1); ok {
					s.analysed = max(s.analysed, v[0])
				}
			}
			return nil
		})
		if errors.Is(err, errTorn) {
			if i != len(segs)-1 {
				return fmt.Errorf("spool: %s is damaged at byte %d and later segments exist; move the spool directory aside to start empty", seg.path, valid)
			}
			s.log.Warn("spool: cutting off a torn tail (never acknowledged)", "file", seg.path, "at", valid)
			if err := os.Truncate(seg.path, valid); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
		} else if err != nil {
			return err
		}
		seg.size = valid
		s.diskBytes += valid
	}
	s.segs = segs
	s.durable = s.nextLSN - 1
	s.delivered = s.durable
	// Undrained chunks go again with their own boundaries; batches past the
	// last cut wait for a new one.
	for seq, r := range cuts {
		if drained[seq] {
			continue
		}
		c := &chunk{seq: seq, first: r[0], last: r[1]}
		for _, b := range batches {
			if b.lsn >= c.first && b.lsn <= c.last {
				c.lsns = append(c.lsns, b.lsn)
				c.rows += b.rows
			}
		}
		if len(c.lsns) > 0 {
			s.open[seq] = c
			s.recovered.Add(uint64(len(c.lsns)))
		}
	}
	for _, b := range batches {
		if b.lsn > lastCut {
			s.ready = append(s.ready, b)
			s.recovered.Add(1)
		}
		k := [2]string{b.sensor, b.stream}
		s.streams[k] = append(s.streams[k], Held{Seq: b.seq, Rows: b.rows})
	}
	if len(s.ready) > 0 {
		s.readySince = s.now()
	}
	if len(batches) > 0 {
		s.replayFrom = batches[0].lsn
	}
	if n := s.recovered.Load(); n > 0 {
		s.log.Info("spool: recovered undrained batches", "batches", n, "open_chunks", len(s.open), "dir", s.opts.Dir)
	}
	return s.openForAppend()
}

// openForAppend opens the last segment, or creates the first.
func (s *Spool) openForAppend() error {
	if len(s.segs) == 0 {
		return s.roll(s.nextLSN)
	}
	last := s.segs[len(s.segs)-1]
	f, err := os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.file = f
	return nil
}

// roll starts a new segment whose first record is base. Called with s.mu
// held (or before the spool is shared).
func (s *Spool) roll(base uint64) error {
	if s.file != nil {
		if err := s.file.Close(); err != nil {
			return err
		}
	}
	seg := &segment{base: base, path: filepath.Join(s.opts.Dir, segmentName(base)), lastLSN: base - 1}
	f, err := os.OpenFile(seg.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(s.opts.Dir); err != nil {
		f.Close()
		return fmt.Errorf("spool: %w", err)
	}
	s.file = f
	s.segs = append(s.segs, seg)
	return nil
}

// Held is a batch the log holds: its sequence number in its stream and
// how many events of it were stored.
type Held struct {
	Seq  uint64
	Rows int
}

// Streams returns, per (sensor, stream), the batches the log holds: a
// restarted server preloads them so resent batches are recognised and
// acknowledged with their stored counts.
func (s *Spool) Streams() map[[2]string][]Held {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[[2]string][]Held, len(s.streams))
	for k, v := range s.streams {
		out[k] = append([]Held(nil), v...)
	}
	return out
}

// Replay calls fn for every batch the log still holds, oldest first, as
// Open found them. muted is true for batches whose analysis outputs were
// already stored before the restart (see MarkAnalysed): replaying them
// rebuilds state without emitting twice. Call it before Start.
func (s *Spool) Replay(ctx context.Context, fn func(ctx context.Context, lsn uint64, b *ingest.Batch, muted bool) error) error {
	s.mu.Lock()
	var all []batchPos
	for _, seg := range s.segs {
		all = append(all, seg.batches...)
	}
	analysed := s.analysed
	s.mu.Unlock()
	for _, p := range all {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := s.load(p.lsn)
		if err != nil {
			return err
		}
		if err := fn(ctx, p.lsn, b, p.lsn <= analysed); err != nil {
			return err
		}
	}
	return nil
}

// Sync waits until every record appended before the call is on disk and
// every batch among them has been handed to analysis, and returns the last
// LSN. A graceful shutdown calls it after the listener stopped, then
// flushes analysis and marks it (MarkAnalysed).
func (s *Spool) Sync(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	target := s.nextLSN - 1
	s.mu.Unlock()
	for {
		s.mu.Lock()
		done, ch, broken := s.delivered >= target, s.progress, s.broken
		s.mu.Unlock()
		if done {
			return target, nil
		}
		if broken != nil {
			return 0, broken
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// MarkAnalysed records that the analysis outputs of every batch up to lsn
// are stored. It returns at once; the record is durable with the next write.
func (s *Spool) MarkAnalysed(lsn uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lsn <= s.analysed || s.closed {
		return
	}
	s.analysed = lsn
	s.appendLocked(recAnalysed, u64s(lsn), nil, batchPos{}, nil)
}

// Write appends b and calls done(nil) once it is on disk (or done(err) if
// the disk write fails). It blocks while the spool is full; it returns an
// error, without calling done, if ctx ends first or the spool is closed.
func (s *Spool) Write(ctx context.Context, b *ingest.Batch, done func(error)) error {
	scratch := encodeBuffers.Get().(*[]byte)
	defer encodeBuffers.Put(scratch)
	payload := encodeBatch(slices.Grow((*scratch)[:0], 64+100*len(b.Conns)), b)
	*scratch = payload // keep what it grew to
	size := int64(headerSize + len(payload))
	if size > s.opts.MaxBytes/2 {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if s.broken != nil {
			err := s.broken
			s.mu.Unlock()
			return err
		}
		if s.diskBytes+size <= s.opts.MaxBytes {
			break
		}
		wait := s.space
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	pos := batchPos{rows: len(b.Conns), size: int(size), sensor: b.Sensor, stream: b.Stream, seq: b.Seq}
	s.appendLocked(recBatch, payload, b, pos, done)
	s.mu.Unlock()
	return nil
}

// encodeBuffers are Write's scratch space for a batch's encoding, which
// appendLocked copies into the write buffer: the encoding of a 5,000-event
// batch is about 500 KB that would otherwise be garbage at once.
var encodeBuffers = sync.Pool{New: func() any { return new([]byte) }}

// appendLocked frames a record into the write buffer and pokes the flusher.
func (s *Spool) appendLocked(typ byte, payload []byte, b *ingest.Batch, pos batchPos, done func(error)) uint64 {
	lsn := s.nextLSN
	s.nextLSN++
	before := len(s.buf)
	s.buf = appendRecord(s.buf, typ, lsn, payload)
	n := len(s.buf) - before
	s.diskBytes += int64(n)
	pos.lsn = lsn
	s.recs = append(s.recs, pendingRec{typ: typ, lsn: lsn, size: n, batch: b, pos: pos, done: done})
	if b != nil && s.cacheBytes+int64(n) <= s.opts.CacheBytes {
		s.cache[lsn] = b
		s.cacheSizes[lsn] = n
		s.cacheBytes += int64(n)
	}
	select {
	case s.work <- struct{}{}:
	default:
	}
	return lsn
}

// appendDurable appends a marker and waits until it is on disk.
func (s *Spool) appendDurable(ctx context.Context, typ byte, payload []byte) error {
	ch := make(chan error, 1)
	s.mu.Lock()
	if s.broken != nil {
		err := s.broken
		s.mu.Unlock()
		return err
	}
	s.appendLocked(typ, payload, nil, batchPos{}, func(err error) { ch <- err })
	s.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start runs the flusher (fsync, acks, analysis) and the drainer
// (INSERTs) until Shutdown. analyze may be nil.
func (s *Spool) Start(ctx context.Context, ins Inserter, analyze AnalyzeFunc) {
	s.startOnce.Do(func() {
		ctx = context.WithoutCancel(ctx)
		dctx, cancel := context.WithCancel(ctx)
		s.stopDrain = cancel
		go s.flusher(ctx, analyze)
		go s.drainer(dctx, ins)
	})
}

func (s *Spool) flusher(ctx context.Context, analyze AnalyzeFunc) {
	defer close(s.flushDone)
	var spare []byte
	drainerDone := false
	for {
		s.mu.Lock()
		for len(s.recs) == 0 {
			// The drainer appends cut and drained records until it ends, so
			// the flusher outlives it.
			if s.closed && drainerDone {
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			select {
			case <-s.work:
			case <-s.drainDone:
				drainerDone = true
			}
			s.mu.Lock()
		}
		buf, recs := s.buf, s.recs
		s.buf, s.recs = spare[:0], nil
		s.mu.Unlock()

		err := s.writeSync(buf, recs)
		spare = buf
		if err != nil {
			err = fmt.Errorf("%w: %v", ErrBroken, err)
			s.log.Error("spool: disk write failed; refusing writes", "err", err)
			s.mu.Lock()
			s.broken = err
			s.mu.Unlock()
			for _, r := range recs {
				if r.done != nil {
					r.done(err)
				}
			}
			continue
		}
		for _, r := range recs {
			if r.done != nil {
				r.done(nil)
			}
		}
		if analyze != nil {
			for _, r := range recs {
				if r.batch != nil {
					if err := analyze(ctx, r.lsn, r.batch); err != nil {
						s.log.Error("spool: analysis", "lsn", r.lsn, "err", err)
					}
				}
			}
		}
		s.mu.Lock()
		s.delivered = recs[len(recs)-1].lsn
		close(s.progress)
		s.progress = make(chan struct{})
		s.mu.Unlock()
		select {
		case s.poke <- struct{}{}:
		default:
		}
	}
}

// writeSync writes framed records, rolling segments between records, and
// fsyncs. Only the flusher writes, so it works on the file without the
// lock; segment metadata, which readers use, changes under the lock.
func (s *Spool) writeSync(buf []byte, recs []pendingRec) error {
	s.mu.Lock()
	file := s.file
	size := s.segs[len(s.segs)-1].size
	s.mu.Unlock()
	off := 0
	for i := range recs {
		r := &recs[i]
		if size > 0 && size+int64(r.size) > s.opts.SegmentBytes {
			if err := file.Sync(); err != nil {
				return err
			}
			s.mu.Lock()
			err := s.roll(r.lsn)
			file, size = s.file, 0
			s.mu.Unlock()
			if err != nil {
				return err
			}
		}
		if _, err := file.Write(buf[off : off+r.size]); err != nil {
			return err
		}
		s.mu.Lock()
		seg := s.segs[len(s.segs)-1]
		if r.typ == recBatch {
			r.pos.off = seg.size
			seg.batches = append(seg.batches, r.pos)
		}
		seg.size += int64(r.size)
		seg.lastLSN = r.lsn
		size = seg.size
		s.mu.Unlock()
		off += r.size
	}
	if err := file.Sync(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range recs {
		r := &recs[i]
		s.durable = r.lsn
		if r.typ == recBatch {
			if len(s.ready) == 0 {
				s.readySince = s.now()
			}
			s.ready = append(s.ready, r.pos)
			k := [2]string{r.pos.sensor, r.pos.stream}
			s.streams[k] = append(s.streams[k], Held{Seq: r.pos.seq, Rows: r.pos.rows})
			s.batches.Add(1)
			s.rows.Add(uint64(r.pos.rows))
		}
	}
	return nil
}

// token names a chunk for ClickHouse's deduplication: the spool, the chunk
// number and its LSN range. The range makes it impossible for two chunks
// with different contents to share a token, even if a chunk number were
// ever reused after a crash.
func (s *Spool) token(c *chunk) string {
	return fmt.Sprintf("ndr-spool:%s:%d:%d-%d", s.id, c.seq, c.first, c.last)
}

type chunkResult struct {
	c   *chunk
	err error
}

func (s *Spool) drainer(ctx context.Context, ins Inserter) {
	defer close(s.drainDone)
	results := make(chan chunkResult, 4)
	tick := time.NewTicker(max(s.opts.ChunkAge/4, 10*time.Millisecond))
	defer tick.Stop()
	inflight := map[uint64]bool{}
	const maxInflight = 2 // one INSERT running, one being encoded
	for {
		for len(inflight) < maxInflight {
			c, err := s.nextChunkToSend(ctx, inflight)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("spool: cut chunk", "err", err)
				}
				break
			}
			if c == nil {
				break
			}
			batches := make([]*ingest.Batch, 0, len(c.lsns))
			var loadErr error
			for _, lsn := range c.lsns {
				b, err := s.load(lsn)
				if err != nil {
					loadErr = err
					break
				}
				batches = append(batches, b)
			}
			if loadErr != nil {
				s.log.Error("spool: read chunk back; it stays on disk", "chunk", c.seq, "err", loadErr)
				c.retryAt = s.now().Add(s.opts.RetryMax)
				break
			}
			inflight[c.seq] = true
			c.attempts++
			cc := c
			if err := ins.WriteChunk(ctx, s.token(c), batches, func(err error) { results <- chunkResult{cc, err} }); err != nil {
				results <- chunkResult{cc, err}
			}
		}
		s.mu.Lock()
		finished := s.closed && len(s.recs) == 0 && len(s.ready) == 0 && len(s.open) == 0
		s.mu.Unlock()
		if finished && len(inflight) == 0 {
			return
		}
		select {
		case r := <-results:
			delete(inflight, r.c.seq)
			if r.err != nil {
				s.retries.Add(1)
				wait := min(s.opts.RetryMin<<min(r.c.attempts, 10), s.opts.RetryMax)
				s.mu.Lock()
				r.c.retryAt = s.now().Add(wait)
				s.mu.Unlock()
				s.log.Warn("spool: insert failed; the chunk stays in the spool and will be retried", "chunk", r.c.seq, "rows", r.c.rows, "attempt", r.c.attempts, "in", wait, "err", r.err)
				continue
			}
			s.chunks.Add(1)
			s.drained(r.c)
		case <-s.poke:
		case <-tick.C:
		case <-ctx.Done():
			// Shutdown gave up waiting: what is undrained stays on disk.
			for len(inflight) > 0 {
				r := <-results
				delete(inflight, r.c.seq)
				if r.err == nil {
					s.drained(r.c)
				}
			}
			return
		}
	}
}

// nextChunkToSend returns an open chunk due for a retry, or cuts a new one
// when the ready batches are big or old enough (or the spool is closing),
// making its cut record durable first.
func (s *Spool) nextChunkToSend(ctx context.Context, inflight map[uint64]bool) (*chunk, error) {
	now := s.now()
	s.mu.Lock()
	var due *chunk
	for _, c := range s.open {
		if !inflight[c.seq] && !now.Before(c.retryAt) && (due == nil || c.seq < due.seq) {
			due = c
		}
	}
	if due != nil {
		s.mu.Unlock()
		return due, nil
	}
	rows := 0
	for _, p := range s.ready {
		rows += p.rows
	}
	if s.broken != nil || len(s.ready) == 0 || (rows < s.opts.ChunkRows && now.Sub(s.readySince) < s.opts.ChunkAge && !s.closed) {
		s.mu.Unlock()
		return nil, nil
	}
	c := &chunk{seq: s.nextChunk}
	s.nextChunk++
	n := 0
	for n < len(s.ready) && (n == 0 || c.rows+s.ready[n].rows <= s.opts.ChunkRows) {
		c.lsns = append(c.lsns, s.ready[n].lsn)
		c.rows += s.ready[n].rows
		n++
	}
	c.first, c.last = c.lsns[0], c.lsns[len(c.lsns)-1]
	s.ready = s.ready[n:]
	if len(s.ready) > 0 {
		s.readySince = now
	}
	s.open[c.seq] = c
	s.mu.Unlock()
	// The cut must be on disk before the INSERT, so that a crash between
	// the two repeats this exact chunk and token. If it cannot be written,
	// the chunk is undone: its batches wait for a cut that is durable.
	if err := s.appendDurable(ctx, recCut, u64s(c.seq, c.first, c.last)); err != nil {
		s.mu.Lock()
		delete(s.open, c.seq)
		back := make([]batchPos, 0, len(c.lsns)+len(s.ready))
		for _, seg := range s.segs {
			for _, p := range seg.batches {
				if p.lsn >= c.first && p.lsn <= c.last {
					back = append(back, p)
				}
			}
		}
		s.ready = append(back, s.ready...)
		s.mu.Unlock()
		return nil, err
	}
	return c, nil
}

// drained records a committed chunk, forgets its cached batches and
// deletes segments nothing needs any more.
func (s *Spool) drained(c *chunk) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, c.seq)
	for _, lsn := range c.lsns {
		if n, ok := s.cacheSizes[lsn]; ok {
			s.cacheBytes -= int64(n)
			delete(s.cache, lsn)
			delete(s.cacheSizes, lsn)
		}
	}
	if s.broken == nil {
		s.appendLocked(recDrained, u64s(c.seq), nil, batchPos{}, nil)
	}
	s.collectLocked()
}

// collectLocked deletes the oldest segments whose every record is behind
// the first live LSN (the oldest batch not yet in ClickHouse), keeping up
// to RetainBytes of them for Replay unless the spool needs the room.
func (s *Spool) collectLocked() {
	live := s.nextLSN
	for _, c := range s.open {
		live = min(live, c.first)
	}
	if len(s.ready) > 0 {
		live = min(live, s.ready[0].lsn)
	}
	var dead int64
	n := 0
	for n < len(s.segs)-1 && s.segs[n].lastLSN < live {
		dead += s.segs[n].size
		n++
	}
	freed := false
	for i := 0; i < n && (dead > s.opts.RetainBytes || s.diskBytes > s.opts.MaxBytes*3/4); i++ {
		seg := s.segs[0]
		if f, ok := s.readers[seg.base]; ok {
			f.Close()
			delete(s.readers, seg.base)
		}
		if err := os.Remove(seg.path); err != nil {
			s.log.Warn("spool: remove drained segment", "file", seg.path, "err", err)
			break
		}
		for _, b := range seg.batches {
			k := [2]string{b.sensor, b.stream}
			if seqs := s.streams[k]; len(seqs) > 0 && seqs[0].Seq == b.seq {
				s.streams[k] = seqs[1:]
			}
			if len(s.streams[k]) == 0 {
				delete(s.streams, k)
			}
		}
		dead -= seg.size
		s.diskBytes -= seg.size
		s.segs = s.segs[1:]
		freed = true
	}
	if freed {
		_ = syncDir(s.opts.Dir)
		close(s.space)
		s.space = make(chan struct{})
	}
}

// load returns batch lsn from memory or from disk.
func (s *Spool) load(lsn uint64) (*ingest.Batch, error) {
	s.mu.Lock()
	if b, ok := s.cache[lsn]; ok {
		s.mu.Unlock()
		return b, nil
	}
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].lastLSN >= lsn })
	if i == len(s.segs) {
		s.mu.Unlock()
		return nil, fmt.Errorf("spool: batch %d is not in the log", lsn)
	}
	seg := s.segs[i]
	j := sort.Search(len(seg.batches), func(j int) bool { return seg.batches[j].lsn >= lsn })
	if j == len(seg.batches) || seg.batches[j].lsn != lsn {
		s.mu.Unlock()
		return nil, fmt.Errorf("spool: batch %d is not in %s", lsn, seg.path)
	}
	off := seg.batches[j].off
	f, ok := s.readers[seg.base]
	if !ok {
		var err error
		if f, err = os.Open(seg.path); err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("spool: %w", err)
		}
		s.readers[seg.base] = f
	}
	s.mu.Unlock()
	r, err := readAt(f, off)
	if err != nil {
		return nil, err
	}
	if r.typ != recBatch || r.lsn != lsn {
		return nil, fmt.Errorf("%w: record at %d of %s is not batch %d", errCorrupt, off, seg.path, lsn)
	}
	return decodeBatch(r.payload)
}

// Shutdown stops accepting, writes what is pending, and drains to
// ClickHouse until ctx ends; what is left stays on disk for the next Open.
// Safe to call more than once.
func (s *Spool) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.space)
		s.space = make(chan struct{})
		s.mu.Unlock()
		select {
		case s.work <- struct{}{}:
		default:
		}
		select {
		case s.poke <- struct{}{}:
		default:
		}
	})
	started := s.stopDrain != nil
	if started {
		select {
		case <-s.drainDone:
		case <-ctx.Done():
			s.stopDrain()
			<-s.drainDone
		}
		<-s.flushDone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for base, f := range s.readers {
		f.Close()
		delete(s.readers, base)
	}
	if s.file != nil {
		err := s.file.Close()
		s.file = nil
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	return ctx.Err()
}

// Stats returns counters and gauges.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	undrained := len(s.ready)
	for _, c := range s.open {
		undrained += len(c.lsns)
	}
	return Stats{
		Batches: s.batches.Load(), Rows: s.rows.Load(), Chunks: s.chunks.Load(), ChunkRetries: s.retries.Load(),
		Recovered: s.recovered.Load(), DiskBytes: s.diskBytes, UndrainedBatches: undrained, Segments: len(s.segs),
	}
}
