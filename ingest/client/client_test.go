package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/server"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// countingSink stores in memory, keyed by UID so duplicates show. failAt
// makes the nth write fail once; onWrite runs before each write.
type countingSink struct {
	mu      sync.Mutex
	byUID   map[string]int
	writes  int
	failAt  int
	onWrite func(n int)
}

func (s *countingSink) Write(_ context.Context, b *ingest.Batch, done func(error)) error {
	s.mu.Lock()
	s.writes++
	n := s.writes
	hook := s.onWrite
	if n == s.failAt {
		s.mu.Unlock()
		go done(errors.New("storage unavailable"))
		return nil
	}
	for _, c := range b.Conns {
		s.byUID[c.UID]++
	}
	s.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	go done(nil)
	return nil
}

func (s *countingSink) check(t *testing.T, want int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byUID) != want {
		t.Errorf("stored %d distinct events, want %d", len(s.byUID), want)
	}
	for uid, n := range s.byUID {
		if n != 1 {
			t.Errorf("event %s stored %d times", uid, n)
		}
	}
}

type sliceSource struct {
	conns []ingest.Conn
	pos   int
	reads int
}

func (s *sliceSource) Next(b *ingest.Batch, max int) (string, error) {
	s.reads++
	n := min(max, len(s.conns)-s.pos)
	b.Conns = append(b.Conns, s.conns[s.pos:s.pos+n]...)
	s.pos += n
	if s.pos == len(s.conns) {
		return "mem", io.EOF
	}
	return "mem", nil
}

func events(n int) []ingest.Conn {
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).UnixMicro()
	out := make([]ingest.Conn, n)
	for i := range out {
		out[i] = ingest.Conn{
			TS: base + int64(i), UID: "C" + itoa(i), OrigH: netip.MustParseAddr("10.1.2.3"),
			RespH: netip.MustParseAddr("198.51.100.7"), OrigP: 50000, RespP: 443, Proto: ingest.TCP,
		}
	}
	return out
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// harness runs a real server over bufconn and lets a test cut every open
// transport connection, as a network failure would.
type harness struct {
	lis   *bufconn.Listener
	mu    sync.Mutex
	conns []net.Conn
	cc    *grpc.ClientConn
	srv   *server.Server
}

func newHarness(t testing.TB, cfg server.Config, sink server.Sink) *harness {
	t.Helper()
	srv, err := server.New(cfg, sink, slog.New(slog.DiscardHandler), func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) })
	if err != nil {
		t.Fatal(err)
	}
	g, _ := server.NewGRPCServer(server.DefaultGRPCConfig(), srv)
	h := &harness{lis: bufconn.Listen(1 << 20), srv: srv}
	go func() { _ = g.Serve(h.lis) }()
	t.Cleanup(g.Stop)
	h.cc, err = grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			c, err := h.lis.DialContext(ctx)
			if err == nil {
				h.mu.Lock()
				h.conns = append(h.conns, c)
				h.mu.Unlock()
			}
			return c, err
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.cc.Close() })
	return h
}

func (h *harness) cut() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.BatchSize = 100
	cfg.MaxInFlight = 8
	cfg.ReconnectMin = time.Millisecond
	cfg.ReconnectMax = 10 * time.Millisecond
	return cfg
}

func TestSendAll(t *testing.T) {
	sink := &countingSink{byUID: map[string]int{}}
	h := newHarness(t, server.DefaultConfig(), sink)
	snd, err := New(h.cc, testConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := snd.Run(t.Context(), &sliceSource{conns: events(10_050)}); err != nil {
		t.Fatal(err)
	}
	sink.check(t, 10_050)
	st := snd.Stats()
	if st.Events != 10_050 || st.Acked != 10_050 || st.Accepted != 10_050 || st.Batches != 101 || st.Reconnects != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestResendsAfterStorageFailure(t *testing.T) {
	sink := &countingSink{byUID: map[string]int{}, failAt: 5}
	h := newHarness(t, server.DefaultConfig(), sink)
	snd, _ := New(h.cc, testConfig(), slog.New(slog.DiscardHandler))
	if err := snd.Run(t.Context(), &sliceSource{conns: events(3000)}); err != nil {
		t.Fatal(err)
	}
	sink.check(t, 3000)
	if st := snd.Stats(); st.Reconnects == 0 || st.Resent == 0 || st.Accepted != 3000 {
		t.Fatalf("stats %+v: want a reconnect with resends", st)
	}
}

func TestResendsAfterConnectionCutStoresOnce(t *testing.T) {
	sink := &countingSink{byUID: map[string]int{}}
	h := newHarness(t, server.DefaultConfig(), sink)
	var once sync.Once
	sink.onWrite = func(n int) {
		if n == 10 { // stored, but the acks of this and neighbouring batches are lost
			once.Do(func() { go h.cut() })
		}
	}
	snd, _ := New(h.cc, testConfig(), slog.New(slog.DiscardHandler))
	if err := snd.Run(t.Context(), &sliceSource{conns: events(5000)}); err != nil {
		t.Fatal(err)
	}
	sink.check(t, 5000)
	st := snd.Stats()
	if st.Reconnects == 0 {
		t.Fatalf("stats %+v: the cut did not force a reconnect", st)
	}
	if st.Acked != 5000 {
		t.Fatalf("acked %d events, want 5000", st.Acked)
	}
}

func TestRejectionsReported(t *testing.T) {
	sink := &countingSink{byUID: map[string]int{}}
	h := newHarness(t, server.DefaultConfig(), sink)
	ev := events(10)
	ev[3].TS = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro() // beyond the server's clock
	var got []string
	cfg := testConfig()
	cfg.OnReject = func(label string, seq uint64, r *ndrv1.Rejection) {
		got = append(got, label+"/"+itoa(int(seq))+"/"+itoa(int(r.GetIndex()))+"/"+r.GetField())
	}
	snd, _ := New(h.cc, cfg, slog.New(slog.DiscardHandler))
	if err := snd.Run(t.Context(), &sliceSource{conns: ev}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "mem/1/3/ts" {
		t.Fatalf("rejections %v, want [mem/1/3/ts]", got)
	}
	if st := snd.Stats(); st.Rejected != 1 || st.Accepted != 9 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPermanentErrorStops(t *testing.T) {
	scfg := server.DefaultConfig()
	scfg.MaxEventsPerBatch = 10
	h := newHarness(t, scfg, &countingSink{byUID: map[string]int{}})
	snd, _ := New(h.cc, testConfig(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := snd.Run(ctx, &sliceSource{conns: events(500)})
	if err == nil || ctx.Err() != nil {
		t.Fatalf("err = %v, want an immediate InvalidArgument", err)
	}
}

// blockingSink never completes a write until released: the sender must stop
// reading its source once its window is full.
type blockingSink struct {
	mu   sync.Mutex
	held []func()
}

func (s *blockingSink) Write(_ context.Context, b *ingest.Batch, done func(error)) error {
	s.mu.Lock()
	s.held = append(s.held, func() { done(nil) })
	s.mu.Unlock()
	return nil
}

func TestWindowStopsReading(t *testing.T) {
	sink := &blockingSink{}
	h := newHarness(t, server.DefaultConfig(), sink)
	cfg := testConfig()
	cfg.MaxInFlight = 3
	snd, _ := New(h.cc, cfg, slog.New(slog.DiscardHandler))
	src := &sliceSource{conns: events(2000)}
	errc := make(chan error, 1)
	go func() { errc <- snd.Run(t.Context(), src) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		sink.mu.Lock()
		n := len(sink.held)
		sink.mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // give a broken window time to over-read
	if got := snd.Stats().Batches; got != 3 {
		t.Fatalf("read %d batches with a window of 3 and nothing acknowledged", got)
	}
	// Release everything, repeatedly, until the sender finishes.
	for {
		sink.mu.Lock()
		held := sink.held
		sink.held = nil
		sink.mu.Unlock()
		for _, f := range held {
			f()
		}
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
			if st := snd.Stats(); st.Acked != 2000 {
				t.Fatalf("acked %d", st.Acked)
			}
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// TestOnAckReportsEveryBatchWithItsLatency: OnAck runs once per batch with
// its events and the time the server took, which here includes a storage
// delay the sink adds.
func TestOnAckReportsEveryBatchWithItsLatency(t *testing.T) {
	const delay = 20 * time.Millisecond
	sink := &countingSink{byUID: map[string]int{}, onWrite: func(int) { time.Sleep(delay) }}
	h := newHarness(t, server.DefaultConfig(), sink)
	cfg := testConfig()
	var mu sync.Mutex
	var batches, evs int
	var shortest time.Duration = time.Hour
	cfg.OnAck = func(n int, d time.Duration) {
		mu.Lock()
		batches++
		evs += n
		shortest = min(shortest, d)
		mu.Unlock()
	}
	snd, err := New(h.cc, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := snd.Run(t.Context(), &sliceSource{conns: events(1_050)}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if batches != 11 || evs != 1_050 {
		t.Errorf("OnAck saw %d batches, %d events; want 11, 1050", batches, evs)
	}
	if shortest < delay {
		t.Errorf("shortest ack latency %v, below the sink's %v delay", shortest, delay)
	}
}
