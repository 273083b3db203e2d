package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/store"
)

func TestRejectWriterStoresRowsWhole(t *testing.T) {
	s := chtest.OpenStore(t)
	w, err := s.NewRejectWriterWithHooks(store.DefaultWriterConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), nil, nil); !errors.Is(err, store.ErrWriterNotStarted) {
		t.Fatalf("write before start: %v", err)
	}
	w.Start(t.Context())
	at := time.Date(2026, 11, 23, 12, 0, 0, 123456000, time.UTC)
	raw := []byte{0x08, 0x00, 0xff, 0xfe, '\n', '\'', '\\'} // bytes String must keep as they are
	rows := []store.Rejected{
		{ReceivedAt: at, Source: store.RejectedGRPC, Sensor: "zeek-a", Stream: "st", Seq: 7, Index: 3,
			Field: "ts", Reason: "ts: too far in the future", Raw: raw, RawSize: 9000, Peer: "10.0.0.1:5555"},
		{ReceivedAt: at.Add(time.Second), Source: store.RejectedFile, Sensor: "replay", File: "conn.log", Line: 42, Elem: 0,
			Field: "", Reason: "syntax error", Raw: []byte("1.0\tCx\tnot-an-ip"), RawSize: 16},
	}
	done := make(chan error, 1)
	if err := w.Write(t.Context(), rows, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	rows[0].Raw[0] = 'X' // the writer copied: the caller may reuse its rows
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("done: %v", err)
	}
	q, err := s.Query(t.Context(), "SELECT received_at, source, sensor, stream, seq, event_index, file, line, field, reason, raw, raw_size, peer FROM rejected ORDER BY received_at")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var got []store.Rejected
	for q.Next() {
		var r store.Rejected
		var rawS string
		if err := q.Scan(&r.ReceivedAt, &r.Source, &r.Sensor, &r.Stream, &r.Seq, &r.Index, &r.File, &r.Line, &r.Field, &r.Reason, &rawS, &r.RawSize, &r.Peer); err != nil {
			t.Fatal(err)
		}
		r.Raw = []byte(rawS)
		got = append(got, r)
	}
	if len(got) != 2 {
		t.Fatalf("%d rows, want 2", len(got))
	}
	g := got[0]
	if !g.ReceivedAt.Equal(at) || g.Source != "grpc" || g.Sensor != "zeek-a" || g.Stream != "st" || g.Seq != 7 || g.Index != 3 ||
		g.Field != "ts" || string(g.Raw) != "\x08\x00\xff\xfe\n'\\" || g.RawSize != 9000 || g.Peer != "10.0.0.1:5555" {
		t.Errorf("grpc row = %+v", g)
	}
	if g := got[1]; g.Source != "file" || g.File != "conn.log" || g.Line != 42 || string(g.Raw) != "1.0\tCx\tnot-an-ip" {
		t.Errorf("file row = %+v", g)
	}
	if st := w.Stats(); st.Rows != 2 || st.Inserts != 1 {
		t.Errorf("stats %+v", st)
	}
	for range 2 { // safe to repeat
		if err := w.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Write(t.Context(), rows, nil); !errors.Is(err, store.ErrWriterClosed) {
		t.Fatalf("write after shutdown: %v", err)
	}
}

// TestRejectWriterBlocksWhenFull: while an INSERT is in flight and the
// buffer is full, Write waits instead of growing the buffer; a caller that
// gives up gets its ctx's error; once the INSERT is through, Write goes on.
func TestRejectWriterBlocksWhenFull(t *testing.T) {
	s := chtest.OpenStore(t)
	cfg := store.DefaultWriterConfig()
	cfg.FlushRows = 2
	entered, release := make(chan struct{}, 8), make(chan struct{})
	hold := func(ctx context.Context) error {
		entered <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w, err := s.NewRejectWriterWithHooks(cfg, make(chan time.Time), hold)
	if err != nil {
		t.Fatal(err)
	}
	w.Start(t.Context())
	defer w.Shutdown(context.WithoutCancel(t.Context()))
	row := func(i int) []store.Rejected {
		return []store.Rejected{{ReceivedAt: time.Unix(int64(i), 0), Source: "grpc", Reason: "x", Seq: uint64(i)}}
	}
	write := func(ctx context.Context, i int) error { return w.Write(ctx, row(i), nil) }
	// Rows 0 and 1 fill the buffer and start an INSERT, which the hook holds.
	for i := range 2 {
		if err := write(t.Context(), i); err != nil {
			t.Fatal(err)
		}
	}
	<-entered
	// Rows 2 and 3 fill the buffer again.
	for i := 2; i < 4; i++ {
		if err := write(t.Context(), i); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := write(ctx, 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write into a full buffer: %v, want it to wait and give up with DeadlineExceeded", err)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- write(t.Context(), 5) }()
	close(release) // the held INSERT and the next go through
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	q, err := s.Query(t.Context(), "SELECT seq FROM rejected ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for q.Next() {
		var v uint64
		if err := q.Scan(&v); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, v)
	}
	if fmt.Sprint(seqs) != "[0 1 2 3 5]" {
		t.Fatalf("stored seqs %v, want [0 1 2 3 5] (4 gave up)", seqs)
	}
}
