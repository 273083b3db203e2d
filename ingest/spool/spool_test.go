package spool

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

func testBatch(stream string, seq uint64, n int) *ingest.Batch {
	b := &ingest.Batch{Sensor: "zeek-1", Stream: stream, Seq: seq}
	for i := range n {
		b.Conns = append(b.Conns, ingest.Conn{
			TS: 1772442000_000000 + int64(seq)*1000 + int64(i), UID: fmt.Sprintf("C%s-%d-%d", stream, seq, i),
			OrigH: netip.MustParseAddr("10.0.0.5"), RespH: netip.MustParseAddr("2001:db8::1"), OrigP: 40000, RespP: 443,
			Proto: ingest.TCP, Service: "ssl", Duration: 1500 * time.Microsecond, OrigBytes: uint64(i), ConnState: ingest.SF,
			LocalOrig: ingest.True, History: "ShADadFf", OrigPkts: 3, Sensor: "zeek-1",
		})
	}
	if n > 1 {
		b.Conns[1].Sensor = "relay-2"
	}
	return b
}

func TestCodecRoundTrip(t *testing.T) {
	b := testBatch("s", 7, 5)
	got, err := decodeBatch(encodeBatch(nil, b))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch(nil, testBatch("s", 1, 3)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := decodeBatch(p)
		if err != nil {
			return
		}
		if again, err := decodeBatch(encodeBatch(nil, b)); err != nil || len(again.Conns) != len(b.Conns) {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
	})
}

// dedupInserter stands in for ClickHouse's insert deduplication: a token
// seen before stores nothing. block, when set, makes inserts hang (a
// ClickHouse that never answers) until released.
type dedupInserter struct {
	mu     sync.Mutex
	tokens map[string]bool
	uids   map[string]int
	calls  int
	fail   int // fail this many calls first
	block  chan struct{}
}

func newInserter() *dedupInserter {
	return &dedupInserter{tokens: map[string]bool{}, uids: map[string]int{}}
}

func (d *dedupInserter) WriteChunk(ctx context.Context, token string, batches []*ingest.Batch, done func(error)) error {
	d.mu.Lock()
	block := d.block
	d.mu.Unlock()
	go func() {
		if block != nil {
			select {
			case <-block:
			case <-ctx.Done():
				done(ctx.Err())
				return
			}
		}
		d.mu.Lock()
		d.calls++
		if d.fail > 0 {
			d.fail--
			d.mu.Unlock()
			done(fmt.Errorf("clickhouse: connection refused"))
			return
		}
		if !d.tokens[token] {
			d.tokens[token] = true
			for _, b := range batches {
				for _, c := range b.Conns {
					d.uids[c.UID]++
				}
			}
		}
		d.mu.Unlock()
		done(nil)
	}()
	return nil
}

func (d *dedupInserter) stored(t *testing.T) int {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for uid, n := range d.uids {
		if n != 1 {
			t.Errorf("%s stored %d times", uid, n)
		}
	}
	return len(d.uids)
}

func open(t *testing.T, dir string, opts Options) *Spool {
	t.Helper()
	opts.Dir = dir
	s, err := Open(opts, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func small() Options {
	return Options{ChunkRows: 50, ChunkAge: 5 * time.Millisecond, SegmentBytes: 4 << 10, RetainBytes: 0, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}
}

// write appends batches and waits for every ack.
func write(t *testing.T, s *Spool, stream string, from, to uint64, rows int) {
	t.Helper()
	var wg sync.WaitGroup
	for seq := from; seq <= to; seq++ {
		wg.Add(1)
		if err := s.Write(t.Context(), testBatch(stream, seq, rows), func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func shutdown(t *testing.T, s *Spool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDrainsEverythingOnce(t *testing.T) {
	ins := newInserter()
	s := open(t, t.TempDir(), small())
	var analysed []uint64
	var amu sync.Mutex
	s.Start(t.Context(), ins, func(_ context.Context, lsn uint64, b *ingest.Batch) error {
		amu.Lock()
		analysed = append(analysed, b.Seq)
		amu.Unlock()
		return nil
	})
	write(t, s, "a", 1, 40, 7)
	shutdown(t, s)
	if n := ins.stored(t); n != 280 {
		t.Fatalf("stored %d, want 280", n)
	}
	if len(analysed) != 40 {
		t.Fatalf("analysed %d batches, want 40", len(analysed))
	}
	for i, seq := range analysed {
		if seq != uint64(i+1) {
			t.Fatalf("analysis out of order: %v", analysed)
		}
	}
	if st := s.Stats(); st.Segments > 1 {
		t.Errorf("%d segments left after draining with RetainBytes 0", st.Segments)
	}
}

// crash abandons a spool as kill -9 would: nothing more is written.
func crash(s *Spool) {
	s.mu.Lock()
	s.closed = true
	s.broken = fmt.Errorf("crashed")
	if s.file != nil {
		s.file.Close()
	}
	for _, f := range s.readers {
		f.Close()
	}
	s.mu.Unlock()
	if s.stopDrain != nil {
		s.stopDrain()
	}
}

// TestCrashBetweenInsertAndConfirmation is the kill -9 case: chunks were
// cut and may have been inserted, but no confirmation reached the log. The
// reopened spool inserts them again with the same tokens, and deduplication
// leaves every row stored exactly once.
func TestCrashBetweenInsertAndConfirmation(t *testing.T) {
	dir := t.TempDir()
	ins := newInserter()
	ins.block = make(chan struct{})
	opts := small()
	opts.RetainBytes = 1 << 30 // keep drained batches: their seqs must be recognised
	s := open(t, dir, opts)
	s.Start(t.Context(), ins, nil)
	write(t, s, "a", 1, 30, 10)
	// Let the first chunks reach "ClickHouse" but crash before the drained
	// records are written.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.open)
		s.mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s.mu.Lock()
	s.broken = fmt.Errorf("crashed") // drained records can no longer be written
	s.mu.Unlock()
	close(ins.block)
	time.Sleep(20 * time.Millisecond)
	crash(s)

	ins.mu.Lock()
	ins.block = nil
	ins.mu.Unlock()
	s2 := open(t, dir, opts)
	if st := s2.Stats(); st.Recovered == 0 {
		t.Fatal("nothing recovered")
	}
	streams := s2.Streams()
	got := streams[[2]string{"zeek-1", "a"}]
	if len(got) != 30 || got[0] != (Held{Seq: 1, Rows: 10}) {
		t.Fatalf("recovered stream holds %d batches (first %+v), want 30 starting with seq 1 of 10 rows", len(got), got)
	}
	s2.Start(t.Context(), ins, nil)
	write(t, s2, "a", 31, 35, 10)
	shutdown(t, s2)
	if n := ins.stored(t); n != 350 {
		t.Fatalf("stored %d rows, want 350 exactly once", n)
	}
}

func TestTornTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{ChunkRows: 1 << 20, ChunkAge: time.Hour})
	s.Start(t.Context(), newInserter(), nil)
	write(t, s, "a", 1, 3, 5)
	crash(s)
	segs, _ := listSegments(dir)
	last := segs[len(segs)-1].path
	f, _ := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{1, 2, 3, 4, 5, 6, 7}) // half a header: a write that never completed
	f.Close()
	ins := newInserter()
	s2 := open(t, dir, small())
	s2.Start(t.Context(), ins, nil)
	shutdown(t, s2)
	if n := ins.stored(t); n != 15 {
		t.Fatalf("stored %d, want the 15 rows before the torn tail", n)
	}
}

func TestFullSpoolBlocksWriters(t *testing.T) {
	ins := newInserter()
	ins.block = make(chan struct{}) // ClickHouse is down
	opts := small()
	opts.MaxBytes = 16 << 10
	s := open(t, t.TempDir(), opts)
	s.Start(t.Context(), ins, nil)
	var blocked error
	for seq := uint64(1); seq < 1000; seq++ {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		err := s.Write(ctx, testBatch("a", seq, 10), func(error) {})
		cancel()
		if err != nil {
			blocked = err
			break
		}
	}
	if blocked != context.DeadlineExceeded {
		t.Fatalf("writes into a full spool: %v, want a deadline while it waits for room", blocked)
	}
	if st := s.Stats(); st.DiskBytes > opts.MaxBytes {
		t.Fatalf("spool grew to %d bytes, bound %d", st.DiskBytes, opts.MaxBytes)
	}
	close(ins.block) // ClickHouse is back: room frees and writes go through
	write(t, s, "b", 1, 5, 10)
	shutdown(t, s)
}

func TestRetriesUntilClickHouseIsBack(t *testing.T) {
	ins := newInserter()
	ins.fail = 5
	s := open(t, t.TempDir(), small())
	s.Start(t.Context(), ins, nil)
	write(t, s, "a", 1, 10, 10)
	shutdown(t, s)
	if n := ins.stored(t); n != 100 {
		t.Fatalf("stored %d, want 100", n)
	}
	if st := s.Stats(); st.ChunkRetries < 5 {
		t.Fatalf("%d retries, want at least 5", st.ChunkRetries)
	}
}

func TestReplayMutesAnalysedBatches(t *testing.T) {
	dir := t.TempDir()
	opts := small()
	opts.RetainBytes = 1 << 30
	s := open(t, dir, opts)
	var (
		mu   sync.Mutex
		lsns []uint64
	)
	s.Start(t.Context(), newInserter(), func(_ context.Context, lsn uint64, b *ingest.Batch) error {
		mu.Lock()
		lsns = append(lsns, lsn)
		mu.Unlock()
		return nil
	})
	write(t, s, "a", 1, 6, 3)
	for { // analysis runs after the acks
		mu.Lock()
		n := len(lsns)
		mu.Unlock()
		if n == 6 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s.MarkAnalysed(lsns[3])
	shutdown(t, s)

	s2 := open(t, dir, opts)
	var muted, loud []uint64
	if err := s2.Replay(t.Context(), func(_ context.Context, lsn uint64, b *ingest.Batch, m bool) error {
		if m {
			muted = append(muted, b.Seq)
		} else {
			loud = append(loud, b.Seq)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(muted, []uint64{1, 2, 3, 4}) || !reflect.DeepEqual(loud, []uint64{5, 6}) {
		t.Fatalf("muted %v loud %v", muted, loud)
	}
	shutdown(t, s2)
}

func TestSegmentsRollAndAreCollected(t *testing.T) {
	dir := t.TempDir()
	ins := newInserter()
	s := open(t, dir, small())
	s.Start(t.Context(), ins, nil)
	write(t, s, "a", 1, 200, 5)
	shutdown(t, s)
	files, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(files) > 2 {
		t.Fatalf("%d segment files left after a full drain", len(files))
	}
	if ins.stored(t) != 1000 {
		t.Fatal("rows lost")
	}
}
