package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/store"
)

// testConns makes n varied records: IPv4 and IPv6, every tristate, every
// transport, counters at their limits.
func testConns(n int, sensor string) []ingest.Conn {
	cs := make([]ingest.Conn, n)
	base := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC).UnixMicro()
	for i := range cs {
		orig := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		resp := netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i+1))
		if i%3 == 1 {
			orig, resp = resp, orig
		}
		cs[i] = ingest.Conn{
			TS:          base + int64(i)*1_000_003 + 7, // odd microseconds
			UID:         fmt.Sprintf("C%s%06d", sensor, i),
			OrigH:       orig,
			RespH:       resp,
			OrigP:       uint16(1024 + i),
			RespP:       uint16([]int{53, 443, 65535}[i%3]),
			Proto:       ingest.Transport(i % 4),
			Service:     []string{"", "dns", "ssl"}[i%3],
			Duration:    time.Duration(i) * 1234567 * time.Microsecond,
			OrigBytes:   uint64(i) * 1000,
			RespBytes:   1<<63 + uint64(i),
			ConnState:   ingest.ConnState(i % 14),
			LocalOrig:   ingest.Tristate(i % 3),
			LocalResp:   ingest.Tristate((i + 1) % 3),
			MissedBytes: uint64(i % 2),
			History:     []string{"ShADadFf", "D", ""}[i%3],
			OrigPkts:    uint64(i),
			OrigIPBytes: uint64(i) * 40,
			RespPkts:    uint64(i) * 2,
			RespIPBytes: uint64(i) * 80,
			Sensor:      sensor,
		}
	}
	return cs
}

func batch(sensor, stream string, seq uint64, conns []ingest.Conn) *ingest.Batch {
	return &ingest.Batch{Sensor: sensor, Stream: stream, Seq: seq, Conns: conns}
}

// writerConfig never flushes by itself: no size reached, no tick.
func writerConfig() store.WriterConfig {
	cfg := store.DefaultWriterConfig()
	cfg.RetryBackoff, cfg.MaxRetryBackoff = time.Millisecond, 5*time.Millisecond
	return cfg
}

// startWriter starts a writer with hooks and shuts it down when t ends.
func startWriter(t *testing.T, s *store.Store, cfg store.WriterConfig, h store.WriterHooks) *store.ConnWriter {
	t.Helper()
	if h.Ticks == nil {
		h.Ticks = make(chan time.Time) // never ticks
	}
	w, err := s.NewConnWriterWithHooks(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Shutdown(context.WithoutCancel(t.Context())) })
	return w
}

// doneRecorder hands out done funcs and records how often each was called
// and with what.
type doneRecorder struct {
	mu    sync.Mutex
	calls map[string][]error
	all   chan string
}

func newDoneRecorder() *doneRecorder {
	return &doneRecorder{calls: map[string][]error{}, all: make(chan string, 1000)}
}

func (r *doneRecorder) done(name string) func(error) {
	return func(err error) {
		r.mu.Lock()
		r.calls[name] = append(r.calls[name], err)
		r.mu.Unlock()
		r.all <- name
	}
}

// wait blocks until names have been reported (in any order).
func (r *doneRecorder) wait(t *testing.T, names ...string) {
	t.Helper()
	want := map[string]int{}
	for _, n := range names {
		want[n]++
	}
	for range names {
		select {
		case n := <-r.all:
			if want[n] == 0 {
				t.Errorf("unexpected done for %s", n)
			}
			want[n]--
		case <-t.Context().Done():
			t.Fatalf("done not called for all of %q", names)
		}
	}
}

// result is the one error done got for name; it fails t unless done ran
// exactly once.
func (r *doneRecorder) result(t *testing.T, name string) error {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.calls[name]); n != 1 {
		t.Fatalf("done for %s called %d times, want once", name, n)
	}
	return r.calls[name][0]
}

func (r *doneRecorder) called(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls[name])
}

func count(t *testing.T, s *store.Store) uint64 {
	t.Helper()
	var n uint64
	if err := s.QueryRow(t.Context(), "SELECT count() FROM conn").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWriterRoundTrip(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	w := startWriter(t, s, writerConfig(), store.WriterHooks{})
	want := testConns(300, "s1")
	b := batch("s1", "st", 1, append([]ingest.Conn(nil), want[:150]...))
	if err := w.Write(t.Context(), b, nil); err != nil {
		t.Fatal(err)
	}
	// The caller may reuse the batch after Write: scribble over it.
	for i := range b.Conns {
		b.Conns[i] = ingest.Conn{UID: "scribbled"}
	}
	if err := w.Write(t.Context(), batch("s1", "st", 2, want[150:]), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}

	rows, err := s.Query(t.Context(), `SELECT ts, uid, orig_h, orig_p, resp_h, resp_p, proto, service, duration,
		orig_bytes, resp_bytes, conn_state, local_orig, local_resp, missed_bytes, history,
		orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, sensor, orig_ip, resp_ip,
		ingest_time, toUnixTimestamp64Micro(ts)
		FROM conn ORDER BY uid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	tristate := func(p *bool) ingest.Tristate {
		if p == nil {
			return ingest.Unknown
		}
		return ingest.TristateOf(*p)
	}
	i := 0
	for ; rows.Next(); i++ {
		var (
			got                          ingest.Conn
			ts, ingested                 time.Time
			origH, respH                 netip.Addr
			proto, state, origIP, respIP string
			duration                     float64
			localOrig, localResp         *bool
			micros                       int64
		)
		err := rows.Scan(&ts, &got.UID, &origH, &got.OrigP, &respH, &got.RespP, &proto, &got.Service, &duration,
			&got.OrigBytes, &got.RespBytes, &state, &localOrig, &localResp, &got.MissedBytes, &got.History,
			&got.OrigPkts, &got.OrigIPBytes, &got.RespPkts, &got.RespIPBytes, &got.Sensor, &origIP, &respIP,
			&ingested, &micros)
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(want) {
			t.Fatalf("more rows than written (%d)", len(want))
		}
		w := want[i]
		got.TS = ts.UnixMicro()
		got.OrigH, got.RespH = origH.Unmap(), respH.Unmap()
		got.Duration = time.Duration(duration*1e6+0.5) * time.Microsecond
		got.LocalOrig, got.LocalResp = tristate(localOrig), tristate(localResp)
		var ok1, ok2 bool
		got.Proto, ok1 = ingest.ParseTransport(proto)
		got.ConnState, ok2 = ingest.ParseConnState(state)
		if !ok1 || !ok2 {
			t.Errorf("row %d: proto %q / conn_state %q do not parse", i, proto, state)
		}
		if got != w {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, got, w)
		}
		if micros != w.TS || ts.Location() != time.UTC {
			t.Errorf("row %d: ts %v (%d µs), want exactly %d µs UTC", i, ts, micros, w.TS)
		}
		if origIP != w.OrigH.String() || respIP != w.RespH.String() {
			t.Errorf("row %d: orig_ip, resp_ip = %q, %q; want %q, %q", i, origIP, respIP, w.OrigH, w.RespH)
		}
		if d := time.Since(ingested); d < -time.Minute || d > time.Hour {
			t.Errorf("row %d: ingest_time %v is not the server's now", i, ingested)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(want) {
		t.Errorf("read %d rows, wrote %d", i, len(want))
	}
	// IPv4 is stored IPv4-mapped: an IPv4 literal matches.
	var n uint64
	if err := s.QueryRow(t.Context(), "SELECT count() FROM conn WHERE orig_h = toIPv6('10.0.0.0')").Scan(&n); err != nil || n != 1 {
		t.Errorf("toIPv6('10.0.0.0') matched %d rows (err %v), want 1", n, err)
	}
	if st := w.Stats(); st.Rows != 300 || st.Batches != 2 || st.Inserts != 1 || st.Retries != 0 || st.Failures != 0 {
		t.Errorf("stats %+v, want 300 rows, 2 batches, 1 insert", st)
	}
}

func TestWriterFlushBySize(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	cfg := writerConfig()
	cfg.FlushRows = 10
	w := startWriter(t, s, cfg, store.WriterHooks{})
	rec := newDoneRecorder()
	conns := testConns(16, "s")
	if err := w.Write(t.Context(), batch("s", "a", 1, conns[:4]), rec.done("b1")); err != nil {
		t.Fatal(err)
	}
	// 4 rows < 10: nothing is inserted (no tick in this test, no Flush).
	if st := w.Stats(); st.Inserts != 0 || rec.called("b1") != 0 {
		t.Fatalf("flushed below FlushRows: %+v", st)
	}
	if err := w.Write(t.Context(), batch("s", "a", 2, conns[4:10]), rec.done("b2")); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "b1", "b2") // 10 rows: inserted without Flush or tick
	if err := errors.Join(rec.result(t, "b1"), rec.result(t, "b2")); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s); n != 10 {
		t.Errorf("%d rows stored, want 10", n)
	}
	// A batch is never split: 6 rows then 6 rows make one 12-row INSERT.
	if err := w.Write(t.Context(), batch("s", "a", 3, conns[10:16]), rec.done("b3")); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), batch("s", "a", 4, conns[:6]), rec.done("b4")); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "b3", "b4")
	if st := w.Stats(); st.Inserts != 2 || st.Rows != 22 {
		t.Errorf("stats %+v, want 2 inserts of 22 rows", st)
	}
}

func TestWriterFlushByTick(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	ticks := make(chan time.Time)
	w := startWriter(t, s, writerConfig(), store.WriterHooks{Ticks: ticks})
	rec := newDoneRecorder()
	ticks <- time.Now() // an empty buffer: nothing to insert
	if err := w.Write(t.Context(), batch("s", "a", 1, testConns(5, "s")), rec.done("b1")); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Inserts != 0 || rec.called("b1") != 0 {
		t.Fatalf("flushed before the tick: %+v", st)
	}
	ticks <- time.Now()
	rec.wait(t, "b1")
	if err := rec.result(t, "b1"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s); n != 5 {
		t.Errorf("%d rows stored after the tick, want 5", n)
	}
	if st := w.Stats(); st.Inserts != 1 {
		t.Errorf("%d inserts, want 1 (the empty tick inserts nothing)", st.Inserts)
	}
}

func TestWriterFlushIntervalDefault(t *testing.T) {
	t.Parallel()
	// The real ticker, at a short interval: records get in without Flush.
	s := chtest.OpenStore(t)
	cfg := writerConfig()
	cfg.FlushInterval = 20 * time.Millisecond
	w, err := s.NewConnWriter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown(t.Context())
	rec := newDoneRecorder()
	if err := w.Write(t.Context(), batch("s", "a", 1, testConns(3, "s")), rec.done("b1")); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "b1")
	if err := rec.result(t, "b1"); err != nil {
		t.Fatal(err)
	}
}

// errLostReply simulates a connection reset after the server committed.
var errLostReply = fmt.Errorf("read reply: %w", syscall.ECONNRESET)

func TestWriterRetryDoesNotDuplicate(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	w := startWriter(t, s, writerConfig(), store.WriterHooks{
		// The first INSERT commits, then its reply is "lost".
		AfterInsert: func(attempt int) error {
			if attempt == 1 {
				return errLostReply
			}
			return nil
		},
	})
	rec := newDoneRecorder()
	conns := testConns(1000, "s")
	for i := range 4 {
		name := fmt.Sprint("b", i)
		if err := w.Write(t.Context(), batch("s", "stream", uint64(i+1), conns[i*250:(i+1)*250]), rec.done(name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := rec.result(t, fmt.Sprint("b", i)); err != nil {
			t.Errorf("b%d: %v", i, err)
		}
	}
	if n := count(t, s); n != 1000 {
		t.Errorf("%d rows after a retried INSERT, want 1000 (deduplicated)", n)
	}
	if st := w.Stats(); st.Retries != 1 || st.Inserts != 1 || st.Rows != 1000 {
		t.Errorf("stats %+v, want 1 retry, 1 insert, 1000 rows", st)
	}
}

func TestWriterDedupToken(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	w := startWriter(t, s, writerConfig(), store.WriterHooks{})
	conns := testConns(100, "s")
	write := func(b *ingest.Batch) {
		t.Helper()
		if err := w.Write(t.Context(), b, nil); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	write(batch("s", "x", 1, conns))
	write(batch("s", "x", 1, conns)) // the same batch again: dropped
	if n := count(t, s); n != 100 {
		t.Errorf("%d rows after re-sending batch (s, x, 1), want 100", n)
	}
	write(batch("s", "x", 2, conns)) // same rows, another batch: kept
	write(batch("s", "y", 1, conns)) // another stream: kept
	write(batch("t", "x", 1, conns)) // another sensor: kept
	if n := count(t, s); n != 400 {
		t.Errorf("%d rows, want 400: identical rows of distinct batches are not duplicates", n)
	}
	// Batches without identity are never taken for one another.
	write(batch("s", "", 0, conns))
	write(batch("s", "", 0, conns))
	if n := count(t, s); n != 600 {
		t.Errorf("%d rows, want 600: batches without stream/seq must not dedup each other", n)
	}
}

func TestWriterPermanentError(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	w := startWriter(t, s, writerConfig(), store.WriterHooks{})
	if err := s.Exec(t.Context(), "DROP TABLE conn SYNC"); err != nil {
		t.Fatal(err)
	}
	rec := newDoneRecorder()
	if err := w.Write(t.Context(), batch("s", "a", 1, testConns(3, "s")), rec.done("b1")); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	err := rec.result(t, "b1")
	if err == nil || store.Retryable(err) {
		t.Errorf("insert into a missing table: done(%v), want a permanent error", err)
	}
	if st := w.Stats(); st.Retries != 0 || st.Failures != 1 || st.FailedRows != 3 {
		t.Errorf("stats %+v, want no retry, 1 failure of 3 rows", st)
	}
}

func TestWriterTransientErrorsExhausted(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	cfg := writerConfig()
	cfg.MaxAttempts = 3
	var attempts atomic.Int32
	w := startWriter(t, s, cfg, store.WriterHooks{
		BeforeInsert: func(context.Context, int) error {
			attempts.Add(1)
			return fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
		},
	})
	rec := newDoneRecorder()
	if err := w.Write(t.Context(), batch("s", "a", 1, testConns(3, "s")), rec.done("b1")); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	err := rec.result(t, "b1")
	if !errors.Is(err, syscall.ECONNREFUSED) || !store.Retryable(err) {
		t.Errorf("done(%v), want the transient cause", err)
	}
	if a := attempts.Load(); a != 3 {
		t.Errorf("%d attempts, want MaxAttempts = 3", a)
	}
	if st := w.Stats(); st.Retries != 2 || st.Failures != 1 {
		t.Errorf("stats %+v, want 2 retries, 1 failure", st)
	}
}

func TestWriterBackPressure(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	cfg := writerConfig()
	cfg.FlushRows = 1 // every batch fills a buffer
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w := startWriter(t, s, cfg, store.WriterHooks{
		BeforeInsert: func(ctx context.Context, _ int) error {
			once.Do(func() { // hold the first INSERT
				close(entered)
				<-release
			})
			return nil
		},
	})
	rec := newDoneRecorder()
	conns := testConns(4, "s")
	if err := w.Write(t.Context(), batch("s", "a", 1, conns[0:1]), rec.done("b1")); err != nil {
		t.Fatal(err)
	}
	<-entered // b1's INSERT is in flight
	if err := w.Write(t.Context(), batch("s", "a", 2, conns[1:2]), rec.done("b2")); err != nil {
		t.Fatal(err) // fills the second buffer, which waits
	}
	// Both buffers taken: Write blocks until ctx ends.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := w.Write(ctx, batch("s", "a", 3, conns[2:3]), rec.done("never")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write with both buffers taken: err = %v, want it to block until ctx ends", err)
	}
	// A blocked writer proceeds once the INSERT completes.
	written := make(chan error)
	go func() { written <- w.Write(t.Context(), batch("s", "a", 4, conns[3:4]), rec.done("b4")) }()
	close(release)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "b1", "b2", "b4")
	if rec.called("never") != 0 {
		t.Error("done called for a batch whose Write failed")
	}
	if n := count(t, s); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
}

func TestWriterShutdown(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	w := startWriter(t, s, writerConfig(), store.WriterHooks{})
	rec := newDoneRecorder()
	for i := range 5 {
		if err := w.Write(t.Context(), batch("s", "a", uint64(i+1), testConns(10, fmt.Sprint(i))), rec.done(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Shutdown flushed: every done ran once, before Shutdown returned.
	for i := range 5 {
		if err := rec.result(t, fmt.Sprint(i)); err != nil {
			t.Errorf("batch %d: %v", i, err)
		}
	}
	if n := count(t, s); n != 50 {
		t.Errorf("%d rows after Shutdown, want 50", n)
	}
	if err := w.Shutdown(t.Context()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := w.Write(t.Context(), batch("s", "a", 9, testConns(1, "s")), nil); !errors.Is(err, store.ErrWriterClosed) {
		t.Errorf("Write after Shutdown: %v, want ErrWriterClosed", err)
	}
	if err := w.Flush(t.Context()); !errors.Is(err, store.ErrWriterClosed) {
		t.Errorf("Flush after Shutdown: %v, want ErrWriterClosed", err)
	}
}

func TestWriterShutdownDeadline(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	entered := make(chan struct{})
	var once sync.Once
	w := startWriter(t, s, writerConfig(), store.WriterHooks{
		// An INSERT that hangs until cancelled.
		BeforeInsert: func(ctx context.Context, _ int) error {
			once.Do(func() { close(entered) })
			<-ctx.Done()
			return ctx.Err()
		},
	})
	rec := newDoneRecorder()
	if err := w.Write(t.Context(), batch("s", "a", 1, testConns(2, "s")), rec.done("b1")); err != nil {
		t.Fatal(err)
	}
	go w.Flush(t.Context())
	<-entered
	if err := w.Write(t.Context(), batch("s", "a", 2, testConns(2, "s")), rec.done("b2")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := w.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown past its deadline: %v, want context.Canceled", err)
	}
	// Both batches were told, once, that they failed.
	for _, name := range []string{"b1", "b2"} {
		if err := rec.result(t, name); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: done(%v), want context.Canceled", name, err)
		}
	}
	if n := count(t, s); n != 0 {
		t.Errorf("%d rows, want 0", n)
	}
}

func TestWriterNotStarted(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	w, err := s.NewConnWriter(writerConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), batch("s", "a", 1, nil), nil); !errors.Is(err, store.ErrWriterNotStarted) {
		t.Errorf("Write before Start: %v", err)
	}
	if err := w.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown of an unstarted writer: %v", err)
	}
	if err := w.Start(t.Context()); !errors.Is(err, store.ErrWriterClosed) {
		t.Errorf("Start after Shutdown: %v", err)
	}
	if _, err := s.NewConnWriter(store.WriterConfig{}); err == nil {
		t.Error("zero WriterConfig accepted")
	}
}

func TestWriterConcurrentWriters(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	cfg := writerConfig()
	cfg.FlushRows = 500
	w := startWriter(t, s, cfg, store.WriterHooks{})
	var ok atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			conns := testConns(50, fmt.Sprint("g", g))
			for i := range 20 {
				err := w.Write(t.Context(), batch(fmt.Sprint("g", g), "a", uint64(i+1), conns), func(err error) {
					if err == nil {
						ok.Add(1)
					}
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := w.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 160 {
		t.Errorf("%d batches committed, want 160", ok.Load())
	}
	if n := count(t, s); n != 8000 {
		t.Errorf("%d rows, want 8000", n)
	}
}

func TestRetryable(t *testing.T) {
	t.Parallel()
	f := func(err error, want bool) {
		t.Helper()
		if got := store.Retryable(err); got != want {
			t.Errorf("Retryable(%v) = %v, want %v", err, got, want)
		}
	}
	f(nil, false)
	f(fmt.Errorf("x: %w", syscall.ECONNREFUSED), true)
	f(fmt.Errorf("x: %w", syscall.ECONNRESET), true)
	f(context.Canceled, false)
	f(context.DeadlineExceeded, false)
	f(errors.New("code: 60, message: table does not exist"), false)
	f(fmt.Errorf("insert: %w", &clickhouse.Exception{Code: 252, Name: "TOO_MANY_PARTS"}), true)
	f(fmt.Errorf("insert: %w", &clickhouse.Exception{Code: 60, Name: "UNKNOWN_TABLE"}), false)
	f(&clickhouse.Exception{Code: 252, Message: "Too many partitions for single INSERT block (more than 100)."}, false)
}

// An INSERT spanning more days than max_partitions_per_insert_block (100),
// as a backfill of an old capture can, is stored rather than refused: a
// refusal would repeat on every resend of the same batches.
func TestWriterManyPartitionsStored(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	w := startWriter(t, s, writerConfig(), store.WriterHooks{})
	conns := testConns(150, "s")
	for i := range conns {
		conns[i].TS = time.Date(2011, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i).UnixMicro()
	}
	rec := newDoneRecorder()
	if err := w.Write(t.Context(), batch("s", "replay", 1, conns), rec.done("b1")); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := rec.result(t, "b1"); err != nil {
		t.Fatalf("done(%v), want the 150 days stored", err)
	}
	var n, days uint64
	if err := s.QueryRow(t.Context(), "SELECT count(), uniqExact(toDate(ts)) FROM conn").Scan(&n, &days); err != nil {
		t.Fatal(err)
	}
	if n != 150 || days != 150 {
		t.Fatalf("stored %d rows over %d days, want 150 over 150", n, days)
	}
}

// A chunk repeated with its token, as the spool does after a crash, is
// stored once; a chunk is never merged with rows written around it.
func TestWriteChunkExactlyOnce(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	w := startWriter(t, s, writerConfig(), store.WriterHooks{})
	rec := newDoneRecorder()
	b1 := batch("s", "st", 1, testConns(30, "a"))
	b2 := batch("s", "st", 2, testConns(20, "b"))
	if err := w.Write(t.Context(), batch("s", "other", 1, testConns(5, "c")), rec.done("loose")); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"first", "repeat"} {
		if err := w.WriteChunk(t.Context(), "spool:test:7", []*ingest.Batch{b1, b2}, rec.done(name)); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := rec.result(t, name); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if err := rec.result(t, "loose"); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := s.QueryRow(t.Context(), "SELECT count() FROM conn").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 55 {
		t.Fatalf("stored %d rows, want 55 (50 in the chunk once, 5 loose)", n)
	}
	if st := w.Stats(); st.Inserts != 3 {
		t.Fatalf("%d inserts, want 3 (loose rows, the chunk, its repeat)", st.Inserts)
	}
}
