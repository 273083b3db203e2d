package loadgen

import (
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/scenario"
)

func TestRemapIsDisjointAndInvertible(t *testing.T) {
	addrs := []netip.Addr{
		netip.MustParseAddr("10.10.0.1"), netip.MustParseAddr("10.10.7.250"),
		netip.MustParseAddr("10.20.0.53"), netip.MustParseAddr("10.20.1.7"), netip.MustParseAddr("10.30.0.10"),
	}
	seen := map[netip.Addr]bool{}
	for k := range MaxCopies {
		for _, a := range addrs {
			m := Remap(a, k)
			if seen[m] {
				t.Fatalf("copy %d maps %v to %v, already taken", k, a, m)
			}
			seen[m] = true
			if got, ok := CopyOf(m); !ok || got != k {
				t.Fatalf("CopyOf(%v) = %d %v, want %d", m, got, ok, k)
			}
			if !m.IsPrivate() {
				t.Fatalf("copy %d maps %v to %v, outside 10.0.0.0/8", k, a, m)
			}
		}
	}
	ext := netip.MustParseAddr("203.0.113.99")
	if Remap(ext, 5) != ext {
		t.Error("an external address was renumbered")
	}
	if _, ok := CopyOf(ext); ok {
		t.Error("CopyOf claims an external address")
	}
}

func smallCorpus(t *testing.T) *Corpus {
	t.Helper()
	spec, err := scenario.Preset("mixed", 1, time.Date(2026, 2, 6, 10, 0, 0, 0, time.UTC), 20*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	spec.Background.Hosts = 20
	c, err := NewCorpus(spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// drain reads a source to the end and returns its events.
func drain(t *testing.T, s *Source, batch int) []ingest.Conn {
	t.Helper()
	var all []ingest.Conn
	var b ingest.Batch
	for {
		b.Conns = b.Conns[:0]
		_, err := s.Next(&b, batch)
		all = append(all, b.Conns...)
		if err == io.EOF {
			return all
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestStreamsCarryDisjointCopiesInEventTimeOrder: every stream replays its
// own copies of the corpus, in order, passes later in event time, and
// stops at the event-time limit.
func TestStreamsCarryDisjointCopiesInEventTimeOrder(t *testing.T) {
	c := smallCorpus(t)
	shift := time.Hour
	plan := Plan{Streams: 2, Copies: 4, Duration: time.Hour, MaxLead: 1000 * time.Hour, Shift: shift,
		EventTimeLimit: c.Start().Add(shift + 2*c.Span() + c.Span()/2)} // two and a half passes
	r, err := NewRun(t.Context(), c, plan, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	for s, src := range r.Sources() {
		got := drain(t, src, 1000)
		want := (2*c.Len() + c.Len()/2) * 2 // copies per stream
		if len(got) < want*9/10 || len(got) > want*11/10 {
			t.Errorf("stream %d sent %d events, want about %d", s, len(got), want)
		}
		for i, x := range got {
			if i > 0 && x.TS < got[i-1].TS {
				t.Fatalf("stream %d: event %d at %d before %d", s, i, x.TS, got[i-1].TS)
			}
			if x.TS < c.Start().Add(shift).UnixMicro() || x.TS > plan.EventTimeLimit.UnixMicro() {
				t.Fatalf("stream %d: event %d at %v outside the run", s, i, time.UnixMicro(x.TS))
			}
			for _, a := range []netip.Addr{x.OrigH, x.RespH} {
				if k, ok := CopyOf(a); ok && k%plan.Streams != s {
					t.Fatalf("stream %d carries %v of copy %d", s, a, k)
				}
			}
		}
	}
	if !r.BudgetExhausted() {
		t.Error("the event-time limit was reached but not reported")
	}
}

// TestRatePacesAndDurationEnds: at a target rate the sources hand over
// about rate x duration events, then end.
func TestRatePacesAndDurationEnds(t *testing.T) {
	c := smallCorpus(t)
	plan := Plan{Streams: 2, Copies: 2, Rate: 20_000, Duration: 500 * time.Millisecond, MaxLead: 1000 * time.Hour}
	r, err := NewRun(t.Context(), c, plan, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	var wg sync.WaitGroup
	counts := make([]int, plan.Streams)
	for i, src := range r.Sources() {
		wg.Go(func() { counts[i] = len(drain(t, src, 500)) })
	}
	wg.Wait()
	total := counts[0] + counts[1]
	if total < 5_000 || total > 12_000 {
		t.Errorf("handed over %d events in 0.5 s at 20,000/s, want about 10,000", total)
	}
}

// TestStreamsKeepStepInEventTime: a stream that is not read holds the
// others back to within MaxLead of it; when it ends, they go on.
func TestStreamsKeepStepInEventTime(t *testing.T) {
	c := smallCorpus(t)
	plan := Plan{Streams: 2, Copies: 2, Duration: time.Hour, MaxLead: time.Minute,
		EventTimeLimit: c.Start().Add(c.Span())}
	r, err := NewRun(t.Context(), c, plan, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	fast, slow := r.Sources()[0], r.Sources()[1]
	var firstTS atomic.Int64 // the start of the fast stream's latest batch
	got := make(chan int)
	go func() {
		n := 0
		var b ingest.Batch
		for {
			b.Conns = b.Conns[:0]
			_, err := fast.Next(&b, 100)
			if len(b.Conns) > 0 {
				firstTS.Store(b.Conns[0].TS)
			}
			n += len(b.Conns)
			if err != nil {
				got <- n
				return
			}
		}
	}()
	limit := c.Start().Add(plan.MaxLead).UnixMicro()
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if ts := firstTS.Load(); ts > limit {
			t.Fatalf("the fast stream started a batch %v ahead of the slow one, more than %v", time.Duration(ts-c.Start().UnixMicro())*time.Microsecond, plan.MaxLead)
		}
		select {
		case <-got:
			t.Fatal("the fast stream finished while the slow one had not started")
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fast.Events() == 0 || fast.Events() >= int64(c.Len()) {
		t.Fatalf("fast stream sent %d of %d before the slow one moved", fast.Events(), c.Len())
	}
	drain(t, slow, 1000)
	select {
	case n := <-got:
		if n < c.Len()*9/10 {
			t.Errorf("fast stream sent %d events, want about %d", n, c.Len())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fast stream stayed blocked after the slow one ended")
	}
}

func TestLatencyPercentiles(t *testing.T) {
	var l Latencies
	if l.Percentile(99) != 0 {
		t.Error("no samples, nonzero percentile")
	}
	for i := 100; i >= 1; i-- {
		l.Add(time.Duration(i) * time.Millisecond)
	}
	f := func(p float64, want time.Duration) {
		t.Helper()
		if got := l.Percentile(p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	f(50, 50*time.Millisecond)
	f(99, 99*time.Millisecond)
	f(100, 100*time.Millisecond)
}
