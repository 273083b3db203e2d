package server

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

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/wire"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// memSink is an in-memory Sink: it stores synchronously unless held, and can
// be told to fail. It stands in for storage, whose own tests run against a
// real ClickHouse.
type memSink struct {
	mu     sync.Mutex
	conns  []ingest.Conn
	held   []func()
	hold   bool
	fail   error
	block  chan struct{} // when non-nil, Write blocks until it is closed or ctx ends
	writes int
}

func (m *memSink) Write(ctx context.Context, b *ingest.Batch, done func(error)) error {
	m.mu.Lock()
	block := m.block
	m.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	if m.fail != nil {
		err := m.fail
		go done(err)
		return nil
	}
	commit := func() {
		m.mu.Lock()
		m.conns = append(m.conns, b.Conns...)
		m.mu.Unlock()
		done(nil)
	}
	if m.hold {
		m.held = append(m.held, commit)
		return nil
	}
	m.conns = append(m.conns, b.Conns...)
	go done(nil)
	return nil
}

func (m *memSink) release() {
	m.mu.Lock()
	held := m.held
	m.held, m.hold = nil, false
	m.mu.Unlock()
	for _, f := range held {
		f()
	}
}

func (m *memSink) stored() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

var testNow = func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) }

func startServer(t *testing.T, cfg Config, sink Sink) (ndrv1.IngestServiceClient, *grpc.ClientConn, *Server) {
	t.Helper()
	srv, err := New(cfg, sink, slog.New(slog.DiscardHandler), testNow)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := NewGRPCServer(DefaultGRPCConfig(), srv)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return ndrv1.NewIngestServiceClient(cc), cc, srv
}

func conn(i int) ingest.Conn {
	return ingest.Conn{
		TS: time.Date(2026, 11, 23, 10, 0, i, 0, time.UTC).UnixMicro(), UID: "C" + string(rune('a'+i%26)),
		OrigH: netip.MustParseAddr("10.0.0.5"), RespH: netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}),
		OrigP: 40000, RespP: 445, Proto: ingest.TCP, ConnState: ingest.SF, OrigBytes: uint64(i),
	}
}

func batch(seq uint64, n int) *ndrv1.EventBatch {
	b := ingest.Batch{Sensor: "zeek-1", Stream: "st", Seq: seq}
	for i := range n {
		b.Conns = append(b.Conns, conn(i))
	}
	return wire.EncodeBatch(&b)
}

func TestStreamAcksAfterStoreWithRejections(t *testing.T) {
	sink := &memSink{hold: true}
	cli, _, srv := startServer(t, DefaultConfig(), sink)
	st, err := cli.Stream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b := batch(1, 5)
	b.Events[2].RespH = []byte{1, 2, 3}   // bad address
	b.Events[4].TsUs = 253402300799000000 // year 9999
	if err := st.Send(b); err != nil {
		t.Fatal(err)
	}
	// No ack may arrive while the sink holds the batch.
	got := make(chan *ndrv1.BatchAck, 1)
	go func() {
		a, err := st.Recv()
		if err != nil {
			t.Error(err)
		}
		got <- a
	}()
	select {
	case a := <-got:
		t.Fatalf("ack %v before the batch was stored", a)
	case <-time.After(50 * time.Millisecond):
	}
	sink.release()
	a := <-got
	if a.GetSeq() != 1 || a.GetAccepted() != 3 || len(a.GetRejections()) != 2 {
		t.Fatalf("ack = %v, want seq 1, 3 accepted, 2 rejected", a)
	}
	if r := a.GetRejections()[0]; r.GetIndex() != 2 || r.GetField() != "id.resp_h" {
		t.Errorf("first rejection = %v, want index 2 field id.resp_h", r)
	}
	if r := a.GetRejections()[1]; r.GetIndex() != 4 || r.GetField() != "ts" {
		t.Errorf("second rejection = %v, want index 4 field ts", r)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v, want EOF", err)
	}
	if sink.stored() != 3 {
		t.Fatalf("stored %d, want 3", sink.stored())
	}
	if s := srv.Stats(); s.Accepted != 3 || s.Rejected != 2 || s.Batches != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestResentBatchIsStoredOnce(t *testing.T) {
	sink := &memSink{}
	cli, _, _ := startServer(t, DefaultConfig(), sink)
	for attempt := range 2 { // the second stream plays a sender resending after a reconnect
		st, err := cli.Stream(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for seq := uint64(1); seq <= 3; seq++ {
			if err := st.Send(batch(seq, 10)); err != nil {
				t.Fatal(err)
			}
		}
		st.CloseSend()
		n := 0
		for {
			a, err := st.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
			if a.GetDuplicate() != (attempt == 1) {
				t.Errorf("attempt %d: ack %v duplicate=%v", attempt, a.GetSeq(), a.GetDuplicate())
			}
			if a.GetAccepted() != 10 {
				t.Errorf("attempt %d: ack %v accepted %d, want 10 (repeated from the original)", attempt, a.GetSeq(), a.GetAccepted())
			}
		}
		if n != 3 {
			t.Fatalf("attempt %d: %d acks, want 3", attempt, n)
		}
	}
	if sink.stored() != 30 {
		t.Fatalf("stored %d, want 30", sink.stored())
	}
}

func TestResendWhileOriginalInFlightWaitsForIt(t *testing.T) {
	sink := &memSink{hold: true}
	cli, _, srv := startServer(t, DefaultConfig(), sink)
	first, _ := cli.Stream(t.Context())
	if err := first.Send(batch(1, 4)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { sink.mu.Lock(); defer sink.mu.Unlock(); return len(sink.held) == 1 })
	second, _ := cli.Stream(t.Context())
	if err := second.Send(batch(1, 4)); err != nil {
		t.Fatal(err)
	}
	key := streamKey{sensor: "zeek-1", stream: "st"}
	waitFor(t, func() bool {
		srv.reg.mu.Lock()
		defer srv.reg.mu.Unlock()
		return len(srv.reg.streams[key].Value.(*streamState).pending[1]) == 1
	})
	sink.release()
	a1, err := first.Recv()
	if err != nil {
		t.Fatal(err)
	}
	a2, err := second.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if a1.GetDuplicate() || !a2.GetDuplicate() {
		t.Fatalf("acks %v / %v: want the original then a duplicate", a1, a2)
	}
	if sink.stored() != 4 || sink.writes != 1 {
		t.Fatalf("stored %d in %d writes, want 4 in 1", sink.stored(), sink.writes)
	}
}

func TestOversizedBatchIsInvalidArgument(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxEventsPerBatch = 3
	cli, _, _ := startServer(t, cfg, &memSink{})
	st, _ := cli.Stream(t.Context())
	_ = st.Send(batch(1, 4))
	_, err := st.Recv()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v, want InvalidArgument", err)
	}
}

func TestSeqZeroIsInvalidArgument(t *testing.T) {
	cli, _, _ := startServer(t, DefaultConfig(), &memSink{})
	_, err := cli.Push(t.Context(), batch(0, 1))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v, want InvalidArgument", err)
	}
}

func TestSinkFailureEndsStreamUnavailable(t *testing.T) {
	sink := &memSink{fail: errors.New("clickhouse: connection refused")}
	cli, _, _ := startServer(t, DefaultConfig(), sink)
	st, _ := cli.Stream(t.Context())
	_ = st.Send(batch(1, 2))
	_, err := st.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	// The failed batch is forgotten: a resend is stored, not called a duplicate.
	sink.mu.Lock()
	sink.fail = nil
	sink.mu.Unlock()
	a, err := cli.Push(t.Context(), &ndrv1.EventBatch{Seq: 1, StreamId: "st", SensorId: "zeek-1", Events: batch(1, 2).Events})
	if err != nil || a.GetDuplicate() || sink.stored() != 2 {
		t.Fatalf("resend: ack %v err %v stored %d", a, err, sink.stored())
	}
}

func TestBackpressureTimeoutIsResourceExhaustedWithRetryInfo(t *testing.T) {
	cfg := DefaultConfig()
	cfg.BackpressureTimeout = 50 * time.Millisecond
	cfg.RetryDelay = 3 * time.Second
	sink := &memSink{block: make(chan struct{})}
	cli, _, srv := startServer(t, cfg, sink)
	st, _ := cli.Stream(t.Context())
	_ = st.Send(batch(1, 2))
	_, err := st.Recv()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("err = %v, want ResourceExhausted", err)
	}
	var delay time.Duration
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.GetRetryDelay().AsDuration()
		}
	}
	if delay != 3*time.Second {
		t.Fatalf("retry delay %v, want 3s", delay)
	}
	if srv.Stats().Refused != 1 {
		t.Fatalf("refused = %d, want 1", srv.Stats().Refused)
	}
}

func TestTooManyStreams(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxStreams = 1
	cli, _, _ := startServer(t, cfg, &memSink{})
	held, _ := cli.Stream(t.Context())
	_ = held.Send(batch(1, 1))
	if _, err := held.Recv(); err != nil {
		t.Fatal(err)
	}
	_, err := cli.Push(t.Context(), batch(1, 1))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("err = %v, want ResourceExhausted", err)
	}
}

func TestPushAndHealth(t *testing.T) {
	sink := &memSink{}
	cli, cc, _ := startServer(t, DefaultConfig(), sink)
	a, err := cli.Push(t.Context(), batch(1, 7))
	if err != nil || a.GetAccepted() != 7 {
		t.Fatalf("push: %v %v", a, err)
	}
	h, err := healthpb.NewHealthClient(cc).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "ndr.v1.IngestService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
}

func TestRegistryGivesUpOnGaps(t *testing.T) {
	r := newRegistry(2)
	k := streamKey{"s", "x"}
	for seq := uint64(2); seq < 2+maxAbove+5; seq++ { // seq 1 never arrives... after the base 2
		if first, _ := r.claim(k, seq+1, nil); !first {
			t.Fatalf("seq %d not first", seq+1)
		}
		r.complete(k, seq+1, &ndrv1.BatchAck{Seq: seq + 1}, nil)
	}
	st := r.streams[k].Value.(*streamState)
	if len(st.stored) > maxAbove {
		t.Fatalf("stored map holds %d seqs, bound is %d", len(st.stored), maxAbove)
	}
	// Eviction keeps the registry bounded.
	r.claim(streamKey{"s", "y"}, 1, nil)
	r.complete(streamKey{"s", "y"}, 1, &ndrv1.BatchAck{Seq: 1}, nil)
	r.claim(streamKey{"s", "z"}, 1, nil)
	if len(r.streams) != 2 {
		t.Fatalf("%d streams tracked, max 2", len(r.streams))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met")
		case <-time.After(time.Millisecond):
		}
	}
}
