package upload

import (
	"context"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
)

var t0 = time.Date(2026, 2, 3, 0, 0, 0, 0, time.UTC).UnixMicro()

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func out(ts int64, src, dst string, port uint16, bytes uint64) ingest.Conn {
	return ingest.Conn{TS: ts, OrigH: addr(src), RespH: addr(dst), RespP: port, Proto: ingest.TCP, OrigBytes: bytes, RespBytes: 1e4}
}

// pull is src reading bytes from an internal server over SMB.
func pull(ts int64, src, server string, bytes uint64) ingest.Conn {
	return ingest.Conn{TS: ts, OrigH: addr(src), RespH: addr(server), RespP: 445, Proto: ingest.TCP, OrigBytes: 1e4, RespBytes: bytes}
}

// popular counts dst as contacted by many internal hosts.
type popular map[netip.Addr]int

func (p popular) Sources(dst netip.Addr) (int, bool) { n, ok := p[dst]; return n, ok }
func (p popular) Hosts() int                         { return 1000 }

// mapBaseline is a fixed per-host model, standing in for a fitted
// snapshot: location and scale on the log1p scale.
type mapBaseline map[netip.Addr][2]float64

func (m mapBaseline) ExpectUpload(host netip.Addr, _ int64, v float64) (Expectation, bool) {
	ls, ok := m[host]
	if !ok {
		return Expectation{}, false
	}
	e := Expectation{Location: ls[0], Scale: ls[1], Source: "host v3", Kind: KindHost, Version: 3}
	e.Z = (logp(v) - ls[0]) / ls[1]
	e.TailProb = upperTail(e.Z)
	return e, true
}
func (m mapBaseline) Prevalence(netip.Addr) (int, bool) { return 0, false }

func run(t *testing.T, s *Scorer, conns []ingest.Conn, end int64) []features.Signal {
	t.Helper()
	slices.SortStableFunc(conns, func(a, b ingest.Conn) int { return int(a.TS - b.TS) })
	var sigs []features.Signal
	ctx := context.Background()
	for i := 0; i < len(conns); i += 50 {
		b := conns[i:min(i+50, len(conns))]
		s.Add(b)
		got, err := s.Advance(ctx, b[len(b)-1].TS-30e6)
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, got...)
	}
	got, err := s.Advance(ctx, end)
	if err != nil {
		t.Fatal(err)
	}
	return append(sigs, got...)
}

func newScorer(t *testing.T, opts Options) *Scorer {
	t.Helper()
	s, err := NewScorer(DefaultConfig(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// browsing is a day of a workstation's ordinary traffic: a 50 kB request a
// minute to its own sites.
func browsing(src string, hours int) []ingest.Conn {
	var cs []ingest.Conn
	for i := range hours * 60 {
		cs = append(cs, out(t0+int64(i)*60e6, src, "198.18.7.1", 443, 50e3))
	}
	return cs
}

func byType(sigs []features.Signal, typ features.SignalType, src string) []features.Signal {
	var out []features.Signal
	for _, s := range sigs {
		if s.Type == typ && s.Src == addr(src) {
			out = append(out, s)
		}
	}
	return out
}

func metric(t *testing.T, s features.Signal, name string) float64 {
	t.Helper()
	v, ok := s.Metric(name)
	if !ok {
		t.Fatalf("%s signal has no metric %s", s.Type, name)
	}
	return v
}

func TestBurst(t *testing.T) {
	conns := browsing("10.0.0.7", 6)
	// 2 GB in 20 connections of 100 MB to one address no one else uses.
	for i := range 20 {
		conns = append(conns, out(t0+3*3600e6+int64(i)*10e6, "10.0.0.7", "203.0.113.50", 443, 100e6))
	}
	sigs := run(t, newScorer(t, Options{}), conns, t0+7*3600e6)
	b := byType(sigs, SignalUpload, "10.0.0.7")
	if len(b) == 0 {
		t.Fatalf("no UPLOAD_ANOMALY for a 2 GB burst: %v", sigs)
	}
	if metric(t, b[0], "mode") != ModeBurst || metric(t, b[0], "tail_prob") > 1e-5 || b[0].Dst != addr("203.0.113.50") ||
		metric(t, b[0], "observed") < 1e9 || b[0].Severity < features.Medium {
		t.Errorf("burst signal %+v", b[0])
	}
	if n := len(byType(sigs, SignalUpload, "10.0.0.7")); n > 2 {
		t.Errorf("%d upload signals for one burst: repeats are not suppressed", n)
	}
}

// TestLowAndSlow: 10 MB every 10 minutes (60 MB an hour) never makes a
// burst, but the CUSUM accumulates it within hours.
func TestLowAndSlow(t *testing.T) {
	conns := browsing("10.0.0.8", 14)
	for i := range 10 * 6 {
		conns = append(conns, out(t0+2*3600e6+int64(i)*600e6, "10.0.0.8", "203.0.113.60", 443, 10e6))
	}
	sigs := run(t, newScorer(t, Options{}), conns, t0+14*3600e6)
	up := byType(sigs, SignalUpload, "10.0.0.8")
	if len(up) == 0 {
		t.Fatal("no UPLOAD_ANOMALY for 10 MB every 10 minutes over 10 hours")
	}
	for _, s := range up {
		if metric(t, s, "mode") != ModeSustained {
			t.Errorf("mode %v: 60 MB an hour is not a burst", metric(t, s, "mode"))
		}
	}
	first := up[0]
	if first.WindowEnd > t0+9*3600e6 || metric(t, first, "cusum") < DefaultConfig().H || first.WindowStart > t0+3*3600e6 {
		t.Errorf("sustained signal %d h after the start, window from %d h: %+v", (first.WindowEnd-t0)/3600e6, (first.WindowStart-t0)/3600e6, first)
	}
	// The same volume to a destination half the company uses is cloud
	// storage: nothing.
	conns = browsing("10.0.0.8", 14)
	for i := range 10 * 6 {
		conns = append(conns, out(t0+2*3600e6+int64(i)*600e6, "10.0.0.8", "198.51.100.10", 443, 10e6))
	}
	sigs = run(t, newScorer(t, Options{Prevalence: popular{addr("198.51.100.10"): 500}}), conns, t0+14*3600e6)
	if len(sigs) != 0 {
		t.Errorf("signals for uploads to a popular destination: %+v", sigs)
	}
}

// TestHostBaseline: a host whose baseline says it uploads about 1 GB an
// hour (a build server) is quiet at 1.5 GB; a workstation is not.
func TestHostBaseline(t *testing.T) {
	bl := mapBaseline{addr("10.0.0.9"): {logp(1e9), 0.5}}
	var conns []ingest.Conn
	for _, src := range []string{"10.0.0.9", "10.0.0.10"} {
		for i := range 15 {
			conns = append(conns, out(t0+3600e6+int64(i)*60e6, src, "203.0.113.70", 443, 100e6))
		}
	}
	sigs := run(t, newScorer(t, Options{Baseline: bl}), conns, t0+3*3600e6)
	if got := byType(sigs, SignalUpload, "10.0.0.9"); len(got) != 0 {
		t.Errorf("build server flagged against its own baseline: %+v", got)
	}
	ws := byType(sigs, SignalUpload, "10.0.0.10")
	if len(ws) == 0 {
		t.Fatal("workstation's 1.5 GB not flagged")
	}
	if metric(t, ws[0], "baseline_kind") != KindStaticPrior {
		t.Errorf("workstation judged by baseline kind %v, want the static prior", metric(t, ws[0], "baseline_kind"))
	}
}

// TestStaging: a host pulling 3 GB from file servers when it usually
// reads a few MB is staging; the same host's usual reads are not.
func TestStaging(t *testing.T) {
	var conns []ingest.Conn
	for h := range 6 {
		conns = append(conns, pull(t0+int64(h)*3600e6+60e6, "10.0.0.11", "10.1.0.5", 5e6))
	}
	for i := range 30 {
		conns = append(conns, pull(t0+6*3600e6+int64(i)*60e6, "10.0.0.11", "10.1.0.6", 100e6))
	}
	sigs := run(t, newScorer(t, Options{}), conns, t0+8*3600e6)
	st := byType(sigs, SignalStaging, "10.0.0.11")
	if len(st) == 0 {
		t.Fatal("no STAGING_ANOMALY for 3 GB pulled")
	}
	if st[0].WindowEnd < t0+6*3600e6 || metric(t, st[0], "z") < DefaultConfig().StagingZ || metric(t, st[0], "total_bytes_staged") < 200e6 {
		t.Errorf("staging signal %+v", st[0])
	}
}

// TestDrop: 40 MB to each of four addresses no one else uses within half
// an hour is a multi-destination drop; to three popular ones it is not.
func TestDrop(t *testing.T) {
	var conns []ingest.Conn
	for i, d := range []string{"203.0.113.81", "203.0.113.82", "203.0.113.83", "203.0.113.84"} {
		conns = append(conns, out(t0+3600e6+int64(i)*120e6, "10.0.0.12", d, 443, 40e6))
	}
	for i, d := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		conns = append(conns, out(t0+3600e6+int64(i)*120e6, "10.0.0.13", d, 443, 40e6))
	}
	pop := popular{addr("198.51.100.1"): 300, addr("198.51.100.2"): 300, addr("198.51.100.3"): 300}
	sigs := run(t, newScorer(t, Options{Prevalence: pop}), conns, t0+3*3600e6)
	d := byType(sigs, SignalSpread, "10.0.0.12")
	if len(d) == 0 || len(d[0].Dsts) != 4 || metric(t, d[0], "total_bytes_sent") != 160e6 {
		t.Fatalf("drop signals %+v", d)
	}
	if got := byType(sigs, SignalSpread, "10.0.0.13"); len(got) != 0 {
		t.Errorf("drop to popular destinations: %+v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Every, c.BurstTail, c.DropDestinations, c.MaxHosts = 7*time.Minute, 2, 1, 0
	err := c.Validate()
	for _, want := range []string{"every", "burst_tail", "drop_destinations", "max_hosts"} {
		if err == nil || !contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func logp(v float64) float64      { return math.Log1p(math.Max(v, 0)) }
func upperTail(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }
