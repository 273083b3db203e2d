package baseline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ndr-go/ndr/features"
)

// sample builds a snapshot with hosts in a peer group and elsewhere, IPv4
// and IPv6, seasonal and not, and destinations.
func sample(t testing.TB, version uint64) *Snapshot {
	t.Helper()
	b, err := NewBuilder(DefaultParams(), t0, t0.Add(15*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		s := synth{median: float64(1+i) * 50e6, sigma: 0.4, act: 0.7, office: i%2 == 0, nightAct: 0.2, nightMedian: 1e6}
		if err := b.AddHost(s.hostHours(netip.AddrFrom4([4]byte{10, 1, 2, byte(i + 1)}), t0, 15, uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	v6 := synth{median: 3e6, sigma: 1, act: 0.3}.hostHours(netip.MustParseAddr("fd00::5"), t0.Add(10*24*time.Hour), 5, 42)
	if err := b.AddHost(v6); err != nil {
		t.Fatal(err)
	}
	b.AddDestination(Destination{netip.MustParseAddr("198.51.100.7"), 3, t0})
	b.AddDestination(Destination{netip.MustParseAddr("2001:db8::7"), 1, t0.Add(time.Hour)})
	s, err := b.Build(version, t0.Add(15*24*time.Hour+time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	s := sample(t, 7)
	enc, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Equal(d) {
		t.Fatal("decoded snapshot differs")
	}
	again, _ := d.MarshalBinary()
	if !bytes.Equal(enc, again) {
		t.Fatal("re-encoding differs")
	}
	if d.Version() != 7 || !d.FittedAt().Equal(s.FittedAt()) || !d.DataFrom().Equal(t0) || !d.DataTo().Equal(s.DataTo()) ||
		d.Params() != s.Params() || d.Hosts() != 9 || d.InternalHosts() != 9 || d.Destinations() != 2 {
		t.Errorf("metadata: version %d fitted %s window [%s, %s) hosts %d/%d dsts %d",
			d.Version(), d.FittedAt(), d.DataFrom(), d.DataTo(), d.Hosts(), d.InternalHosts(), d.Destinations())
	}
	// Every query answers the same.
	for _, host := range []string{"10.1.2.1", "10.1.2.4", "fd00::5", "10.1.2.99", "10.9.9.9", "::ffff:10.1.2.3"} {
		a := netip.MustParseAddr(host)
		m1, ok1 := s.HostModel(a)
		m2, ok2 := d.HostModel(a)
		if ok1 != ok2 {
			t.Errorf("%s: ok %v vs %v", host, ok1, ok2)
		}
		for k := range Metric(NumMetrics) {
			for _, how := range []int{0, 10, 35, 150} {
				l1, s1 := m1.Expected(k, how)
				l2, s2 := m2.Expected(k, how)
				p1, p2 := m1.TailProb(k, how, 300e6), m2.TailProb(k, how, 300e6)
				if l1 != l2 || s1 != s2 || p1 != p2 {
					t.Errorf("%s %s at %d: (%v, %v, %v) vs (%v, %v, %v)", host, k, how, l1, s1, p1, l2, s2, p2)
				}
			}
		}
	}
	if n, first, ok := d.Prevalence(netip.MustParseAddr("2001:db8::7")); n != 1 || !first.Equal(t0.Add(time.Hour)) || !ok {
		t.Errorf("Prevalence after decode = %d, %s, %v", n, first, ok)
	}
}

func TestDecodeCorrupt(t *testing.T) {
	t.Parallel()
	enc, _ := sample(t, 1).MarshalBinary()
	f := func(name string, b []byte) {
		t.Helper()
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	f("empty", nil)
	f("magic", append([]byte("XDRBSNAP"), enc[8:]...))
	f("format", append(append([]byte{}, enc[:8]...), append([]byte{2, 0}, enc[10:]...)...))
	for _, n := range []int{9, 20, 40, len(enc) / 2, len(enc) - 1} {
		f(fmt.Sprintf("truncated at %d", n), enc[:n])
	}
	f("trailing", append(append([]byte{}, enc...), 0))
}

func FuzzDecode(f *testing.F) {
	enc, _ := sample(f, 1).MarshalBinary()
	f.Add(enc)
	f.Add(enc[:100])
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// Whatever decodes re-encodes to the same bytes and answers.
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatalf("re-encoded snapshot does not decode: %v", err)
		}
		m, _ := s.HostModel(netip.MustParseAddr("10.1.2.1"))
		_ = m.TailProb(BytesOutExternal, 3, 1e9)
		_, _, _ = s.WindowStats(netip.MustParseAddr("10.1.2.1"), Connections, t0, time.Minute)
	})
}

func TestRegistry(t *testing.T) {
	// Not parallel: AllocsPerRun.
	var r Registry
	sb := NewSpikeBaselines(&r, SpikeWindows{Connections: time.Minute, BytesOutExternal: 5 * time.Minute})
	host := netip.MustParseAddr("10.1.2.8")
	if _, _, ok := sb.Lookup(host, features.BaselineBytesOutExternal, t0.UnixMicro()); ok || r.Version() != 0 || r.Current() != nil {
		t.Fatal("empty registry answers")
	}
	s2 := sample(t, 2)
	if !r.Store(s2) || r.Version() != 2 {
		t.Fatal("Store(v2) refused")
	}
	if r.Store(sample(t, 1)) || r.Version() != 2 {
		t.Error("Store(v1) over v2 accepted")
	}
	at := t0.Add(15*24*time.Hour + 10*time.Hour).UnixMicro()
	mean, sd, ok := sb.Lookup(host, features.BaselineBytesOutExternal, at)
	wm, wsd, _ := s2.WindowStats(host, BytesOutExternal, time.UnixMicro(at), 5*time.Minute)
	if !ok || mean != wm || sd != wsd || !(sd > 0) {
		t.Errorf("Lookup bytes = %v, %v, %v; WindowStats %v, %v", mean, sd, ok, wm, wsd)
	}
	if _, _, ok := sb.Lookup(host, features.BaselineConnections, at); !ok {
		t.Error("Lookup connections: not ok")
	}
	if _, _, ok := sb.Lookup(host, "unknown_metric", at); ok {
		t.Error("unknown metric: ok")
	}
	if n := testing.AllocsPerRun(1000, func() { sb.Lookup(host, features.BaselineBytesOutExternal, at) }); n != 0 {
		t.Errorf("Lookup allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		m, _ := s2.HostModel(host)
		m.TailProb(BytesOutExternal, 30, 1e9)
		s2.Prevalence(host)
	}); n != 0 {
		t.Errorf("HostModel+TailProb+Prevalence allocate %v times", n)
	}
	// Concurrent lookups while versions are swapped (run with -race).
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				sb.Lookup(host, features.BaselineConnections, at)
			}
		})
	}
	for v := uint64(3); v < 6; v++ {
		r.Store(sample(t, v))
	}
	wg.Wait()
	if r.Version() != 5 {
		t.Errorf("version %d, want 5", r.Version())
	}
}

// memSource is an in-memory Source.
type memSource struct {
	mu    sync.Mutex
	snaps map[uint64]*Snapshot
	err   error
}

func (m *memSource) LatestBaselineVersion(context.Context) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return 0, m.err
	}
	var v uint64
	for k := range m.snaps {
		v = max(v, k)
	}
	if v == 0 {
		return 0, ErrNoSnapshot
	}
	return v, nil
}

func (m *memSource) LoadBaseline(_ context.Context, v uint64) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snaps[v], nil
}

func (m *memSource) put(s *Snapshot) {
	m.mu.Lock()
	m.snaps[s.Version()] = s
	m.mu.Unlock()
}

func TestPoller(t *testing.T) {
	t.Parallel()
	s1, s2 := sample(t, 1), sample(t, 2)
	synctest.Test(t, func(t *testing.T) {
		var r Registry
		src := &memSource{snaps: map[uint64]*Snapshot{}}
		p, err := NewPoller(&r, src, time.Minute, nil)
		if err != nil {
			t.Fatal(err)
		}
		p.Start(t.Context())
		synctest.Wait()
		if r.Current() != nil {
			t.Fatal("installed something from an empty source")
		}
		src.put(s1)
		time.Sleep(time.Minute)
		synctest.Wait()
		if r.Version() != 1 {
			t.Fatalf("after a minute: version %d, want 1", r.Version())
		}
		src.mu.Lock()
		src.err = errors.New("clickhouse down")
		src.mu.Unlock()
		time.Sleep(time.Minute)
		synctest.Wait()
		if r.Version() != 1 {
			t.Fatalf("a failed poll changed the version to %d", r.Version())
		}
		src.mu.Lock()
		src.err = nil
		src.mu.Unlock()
		src.put(s2)
		time.Sleep(time.Minute)
		synctest.Wait()
		if r.Current() != s2 {
			t.Fatalf("version %d, want 2", r.Version())
		}
		if err := p.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := p.Shutdown(t.Context()); err != nil {
			t.Fatal("second Shutdown:", err)
		}
	})
}

func TestScheduler(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var at []time.Duration
		start := time.Now()
		s, err := NewScheduler(24*time.Hour, func(ctx context.Context) error {
			mu.Lock()
			at = append(at, time.Since(start))
			n := len(at)
			mu.Unlock()
			if n == 2 {
				return errors.New("fit failed")
			}
			return nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Start(t.Context())
		time.Sleep(3*24*time.Hour + time.Hour)
		synctest.Wait()
		if err := s.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(at) != 3 || at[0] != 24*time.Hour || at[2] != 72*time.Hour {
			t.Errorf("runs at %v, want every 24h from 24h", at)
		}
		if s.Runs() != 3 || s.Failures() != 1 {
			t.Errorf("runs %d failures %d, want 3 and 1", s.Runs(), s.Failures())
		}
	})
	if _, err := NewScheduler(0, nil, nil); err == nil {
		t.Error("zero interval accepted")
	}
}

// BenchmarkLookup is the hot-path cost Layer 1 pays per spike-window host
// row: an atomic load, a map lookup and a few exp calls.
func BenchmarkLookup(b *testing.B) {
	var r Registry
	r.Store(sample(b, 1))
	sb := NewSpikeBaselines(&r, SpikeWindows{Connections: time.Minute, BytesOutExternal: 5 * time.Minute})
	host := netip.MustParseAddr("10.1.2.3")
	at := t0.Add(15*24*time.Hour + 10*time.Hour).UnixMicro()
	b.ReportAllocs()
	for b.Loop() {
		sb.Lookup(host, features.BaselineBytesOutExternal, at)
	}
}

// BenchmarkTailProb is the upload scorer's per-host-hour cost.
func BenchmarkTailProb(b *testing.B) {
	s := sample(b, 1)
	host := netip.MustParseAddr("10.1.2.3")
	b.ReportAllocs()
	for b.Loop() {
		m, _ := s.HostModel(host)
		m.TailProb(BytesOutExternal, 35, 500e6)
	}
}
