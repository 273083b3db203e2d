package baseline

import (
	"cmp"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

// uploads returns conns from src to dst every 5 minutes for hours,
// 200 MB each, with an SSH login to an internal server every hour.
func uploads(src, dst netip.Addr, start time.Time, hours int) []ingest.Conn {
	var out []ingest.Conn
	server := netip.MustParseAddr("10.20.0.22")
	for i := range hours * 12 {
		ts := start.Add(time.Duration(i) * 5 * time.Minute).UnixMicro()
		out = append(out, ingest.Conn{TS: ts, OrigH: src, RespH: dst, RespP: 443, OrigBytes: 200e6, RespBytes: 1e3})
		if i%12 == 0 {
			out = append(out, ingest.Conn{TS: ts + 1, OrigH: src, RespH: server, RespP: 22, OrigBytes: 1e3})
		}
	}
	return out
}

func TestLearner(t *testing.T) {
	t.Parallel()
	var reg Registry
	l, err := NewLearner(DefaultLearnerConfig(), &reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("203.0.113.5")
	conns := uploads(src, dst, t0, 72)
	// An external originator is ignored; a sensor's local_orig wins.
	conns = append(conns,
		ingest.Conn{TS: t0.UnixMicro(), OrigH: dst, RespH: src, RespP: 443},
		ingest.Conn{TS: t0.UnixMicro(), OrigH: netip.MustParseAddr("100.64.0.9"), LocalOrig: ingest.True, RespH: dst, RespP: 443, OrigBytes: 5})
	fitsAt := map[int]uint64{}
	for h := range 72 {
		var batch []ingest.Conn
		for _, c := range conns {
			if c.TS >= t0.Add(time.Duration(h)*time.Hour).UnixMicro() && c.TS < t0.Add(time.Duration(h+1)*time.Hour).UnixMicro() {
				batch = append(batch, c)
			}
		}
		l.Observe(batch)
		fitsAt[h] = reg.Version()
	}
	// Nothing before a day of history; then a fit every 6 hours.
	if fitsAt[23] != 0 || fitsAt[24] != 1 || fitsAt[29] != 1 || fitsAt[30] != 2 || fitsAt[71] != 8 {
		t.Errorf("versions by hour: 23:%d 24:%d 29:%d 30:%d 71:%d; want 0 1 1 2 8", fitsAt[23], fitsAt[24], fitsAt[29], fitsAt[30], fitsAt[71])
	}
	s := reg.Current()
	if !s.DataTo().Equal(t0.Add(66*time.Hour)) || !s.DataFrom().Equal(t0) {
		t.Errorf("data window [%s, %s), want [%s, %s)", s.DataFrom(), s.DataTo(), t0, t0.Add(66*time.Hour))
	}
	at := t0.Add(70 * time.Hour)
	mean, sd, ok := s.WindowStats(src, BytesOutExternal, at, 5*time.Minute)
	if !ok || mean < 180e6 || mean > 220e6 || (200e6-mean)/sd > 1 {
		t.Errorf("learnt 5 min upload mean %.3g sd %.3g ok %v, want about 200 MB with 200 MB unremarkable", mean, sd, ok)
	}
	if n, first, ok := s.Prevalence(dst); n != 2 || !first.Equal(t0) || !ok {
		t.Errorf("Prevalence(dst) = %d, %s, %v; want 2 hosts, first at %s", n, first, ok, t0)
	}
	if a, ok := s.AdminPorts(src); !ok || !a.Uses(22) || a.Hours != 66 {
		t.Errorf("AdminPorts = %+v, %v; want SSH every hour", a, ok)
	}
	m, _ := s.HostModel(src)
	if loc, _ := m.Expected(ExternalDestinations, 0); loc != 0.6931472 && (loc < 0.69 || loc > 0.70) {
		t.Errorf("external destinations location %v, want log1p(1)", loc)
	}
	if f, _ := s.FanOut(src); f.Median != 1 {
		t.Errorf("fan-out median %v, want 1", f.Median)
	}
	st := l.Stats()
	if st.Fits != 8 || st.Hosts != 2 || st.External != 1 || st.Destinations != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestLearnerBounds(t *testing.T) {
	t.Parallel()
	cfg := DefaultLearnerConfig()
	cfg.MaxHosts, cfg.MaxDestinations, cfg.MaxSetElements = 2, 3, 2
	var reg Registry
	l, err := NewLearner(cfg, &reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var conns []ingest.Conn
	for i := range 5 {
		for j := range 5 {
			conns = append(conns, ingest.Conn{TS: t0.UnixMicro() + int64(j), OrigH: hostAddr(i), RespH: netip.AddrFrom4([4]byte{198, 51, 100, byte(j)}), OrigBytes: 1})
		}
	}
	l.Observe(conns)
	st := l.Stats()
	if st.Hosts != 2 || st.HostsRefused != 15 || st.Destinations != 3 || st.DestinationsRefused != 4 {
		t.Errorf("stats %+v: want 2 hosts (15 conns refused), 3 destinations (4 refused)", st)
	}
	if r := l.hosts[hostAddr(0)].hours[0]; r.ext != 2 || r.conns != 5 {
		t.Errorf("host-hour %+v: want 5 connections, distinct capped at 2", r)
	}
	bad := cfg
	bad.Window, bad.MaxHosts = 90*time.Minute, 0
	if err := bad.Validate(); err == nil {
		t.Error("bad config accepted")
	}
}

// TestLearnerRepeats: a host's repeats within the hour (the one-lookup
// path) count like first connections: refused destinations stay refused,
// an earlier repeat moves the destination's first sighting, and the
// distinct counts do not move.
func TestLearnerRepeats(t *testing.T) {
	t.Parallel()
	cfg := DefaultLearnerConfig()
	cfg.MaxDestinations = 3
	var reg Registry
	l, err := NewLearner(cfg, &reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst := func(j int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(j)}) }
	var conns []ingest.Conn
	for pass := range int64(2) {
		for i := range 2 {
			for j := range 5 {
				conns = append(conns, ingest.Conn{TS: t0.UnixMicro() + 1000 - pass*100 + int64(j), OrigH: hostAddr(i), RespH: dst(j), OrigBytes: 1})
			}
		}
	}
	l.Observe(conns)
	st := l.Stats()
	if st.Destinations != 3 || st.DestinationsRefused != 8 {
		t.Errorf("stats %+v: want 3 destinations, 8 connections to the 2 refused", st)
	}
	for j := range 3 {
		d := l.dsts[dst(j)]
		if want := t0.UnixMicro() + 900 + int64(j); d.first != want || len(d.hosts) != 2 {
			t.Errorf("destination %d: first %d, %d hosts; want %d, 2", j, d.first, len(d.hosts), want)
		}
	}
	for i := range 2 {
		if r := l.hosts[hostAddr(i)].hours[0]; r.ext != 5 || r.conns != 10 || r.bytes != 10 {
			t.Errorf("host %d hour %+v: want 10 connections to 5 distinct destinations", i, r)
		}
	}
}

// BenchmarkFit fits 10,000 hosts x 30 days of synthetic host-hours (the
// issue 6 target's size) and reports hosts/s.
func BenchmarkFit(b *testing.B) {
	const hosts, days = 10_000, 30
	data := make([]*HostHours, hosts)
	kinds := []synth{
		{median: 50e6, sigma: 0.8, act: 0.9},
		{median: 200e6, sigma: 0.5, act: 1, office: true, nightAct: 0.3, nightMedian: 1e6},
		{median: 1e6, sigma: 1.5, act: 0.2},
	}
	for i := range data {
		data[i] = kinds[i%len(kinds)].hostHours(hostAddr(i), t0, days, uint64(i))
	}
	p := DefaultParams()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bl, err := NewBuilder(p, t0, t0.Add(days*24*time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		src := &sliceHistory{hosts: data}
		if err := Fit(b.Context(), bl, src, HistoryQuery{}, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := bl.Build(1, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(hosts*b.N)/b.Elapsed().Seconds(), "hosts/s")
}

// Fits happen at hour boundaries in event time, so batching does not
// change them.
func TestLearnerBatchingIndependent(t *testing.T) {
	t.Parallel()
	conns := uploads(netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("203.0.113.5"), t0, 40)
	conns = append(conns, uploads(netip.MustParseAddr("10.0.0.6"), netip.MustParseAddr("203.0.113.6"), t0.Add(3*time.Hour), 30)...)
	slices.SortStableFunc(conns, func(a, b ingest.Conn) int { return cmp.Compare(a.TS, b.TS) })
	var snaps []*Snapshot
	for _, size := range []int{1, 7, 100, len(conns)} {
		var reg Registry
		l, err := NewLearner(DefaultLearnerConfig(), &reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(conns); i += size {
			l.Observe(conns[i:min(i+size, len(conns))])
		}
		if l.Stats().Fits != 3 {
			t.Errorf("batches of %d: %d fits, want 3", size, l.Stats().Fits)
		}
		snaps = append(snaps, reg.Current())
	}
	for i, s := range snaps[1:] {
		if !s.Equal(snaps[0]) {
			t.Errorf("batching %d: snapshot differs from one-by-one", i+1)
		}
	}
}
