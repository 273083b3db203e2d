package pipeline

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/scoring"
)

type signalRecorder struct{ sigs []features.Signal }

func (r *signalRecorder) AddSignals(_ context.Context, sigs []features.Signal) error {
	r.sigs = append(r.sigs, sigs...)
	return nil
}

// TestLayer2Wiring: raw connections reach the beacon Tracker and the
// upload Scorer, their signals are stored beside Layer 1's, and the Layer
// 2 rules turn them into C2_BEACONING, DATA_EXFILTRATION and KILL_CHAIN
// detections whose confidence follows the evidence.
func TestLayer2Wiring(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC).UnixMicro()
	r := rand.New(rand.NewPCG(4, 4))
	implant, c2 := netip.MustParseAddr("10.0.0.66"), netip.MustParseAddr("203.0.113.9")
	drop, share := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("10.1.0.5")
	var conns []ingest.Conn
	// A 5-minute beacon, +-20 % jitter, for 12 hours.
	for ts := start + 60e6; ts < start+12*3600e6; ts += 300e6 + r.Int64N(120e6) - 60e6 {
		conns = append(conns, ingest.Conn{TS: ts, OrigH: implant, RespH: c2, RespP: 443, Proto: ingest.TCP,
			OrigBytes: 400 + uint64(r.IntN(40)), OrigIPBytes: 600, RespBytes: 900, ConnState: ingest.SF})
	}
	// At 09:00 the host pulls 3 GB from a file share, then at 10:00 sends
	// 2 GB to an address no other host uses.
	for i := range 30 {
		conns = append(conns, ingest.Conn{TS: start + 9*3600e6 + int64(i)*60e6, OrigH: implant, RespH: share, RespP: 445,
			Proto: ingest.TCP, OrigBytes: 1e4, RespBytes: 100e6, ConnState: ingest.SF})
	}
	for i := range 20 {
		conns = append(conns, ingest.Conn{TS: start + 10*3600e6 + int64(i)*30e6, OrigH: implant, RespH: drop, RespP: 443,
			Proto: ingest.TCP, OrigBytes: 100e6, RespBytes: 1e4, ConnState: ingest.SF})
	}
	// Twenty hosts polling a popular service every minute, and browsing
	// sites of their own.
	for h := range 20 {
		src := netip.AddrFrom4([4]byte{10, 0, 1, byte(h + 1)})
		for ts := start + r.Int64N(60e6); ts < start+12*3600e6; ts += 60e6 {
			conns = append(conns, ingest.Conn{TS: ts, OrigH: src, RespH: netip.MustParseAddr("198.19.0.10"), RespP: 443,
				Proto: ingest.TCP, OrigBytes: 300, RespBytes: 300, ConnState: ingest.SF})
			if r.IntN(10) == 0 {
				conns = append(conns, ingest.Conn{TS: ts + 7e6, OrigH: src, RespH: netip.AddrFrom4([4]byte{198, 18, byte(h), byte(r.IntN(250))}),
					RespP: 443, Proto: ingest.TCP, OrigBytes: 2e3, RespBytes: 5e4, ConnState: ingest.SF})
			}
		}
	}
	slices.SortStableFunc(conns, func(a, b ingest.Conn) int { return int(a.TS - b.TS) })

	rules, err := scoring.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	var sigs signalRecorder
	var dets scoring.Collector
	an, err := NewAnalyzer(Config{Features: features.DefaultConfig(), Rules: rules}, Outputs{Signals: &sigs, Detections: []scoring.Sink{&dets}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < len(conns); i += 1000 {
		if err := an.Process(ctx, conns[i:min(i+1000, len(conns))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := an.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	stored := map[features.SignalType]int{}
	for _, s := range sigs.sigs {
		stored[s.Type]++
		if s.Type == scoring.SignalBeaconScore && (s.Src != implant || s.Dst != c2) {
			t.Errorf("BEACON_SCORE for %s -> %s", s.Src, s.Dst)
		}
	}
	for _, typ := range []features.SignalType{scoring.SignalBeaconScore, scoring.SignalStagingAnomaly, scoring.SignalUploadAnomaly} {
		if stored[typ] == 0 {
			t.Errorf("no %s signal stored (stored: %v)", typ, stored)
		}
	}
	byRule := map[string]scoring.Detection{}
	for _, d := range dets.Detections() {
		if d.Src != implant {
			t.Errorf("detection %s on %s", d.ID, d.Src)
		}
		byRule[d.RuleID] = d
	}
	c2d, ok := byRule["C2-BEACON-002"]
	if !ok {
		t.Fatalf("no C2-BEACON-002 detection: %v", byRule)
	}
	if c2d.Type != "C2_BEACONING" || !slices.Equal(c2d.Dsts, []netip.Addr{c2}) || c2d.Confidence < 0.75 || c2d.Confidence >= 1 {
		t.Errorf("C2 detection %+v", c2d)
	}
	ev := c2d.Evidence.Signals[0]
	for _, m := range []string{"beacon_score", "interval_dispersion", "spectral", "size_regularity", "persistence", "rarity", "period_seconds"} {
		if !slices.ContainsFunc(ev.Metrics, func(x features.Metric) bool { return x.Name == m }) {
			t.Errorf("evidence lacks %s", m)
		}
	}
	ex, ok := byRule["EXFIL-002"]
	if !ok {
		t.Fatalf("no EXFIL-002 detection")
	}
	if len(ex.Evidence.Deviations) == 0 || ex.Evidence.Deviations[0].Feature != "bytes_out_external" ||
		ex.Evidence.Deviations[0].Baseline != "static prior" || ex.Evidence.Deviations[0].Ratio < 100 {
		t.Errorf("exfiltration deviations %+v", ex.Evidence.Deviations)
	}
	kc, ok := byRule["KILL-CHAIN-001"]
	if !ok {
		t.Fatal("no KILL_CHAIN detection for beacon, staging and upload from one host")
	}
	// Confidence is the mean strength: the beacon's (about 1), the staging
	// (z 4 against the static prior: 0.33) and the upload (p 2e-6: 0.46).
	if kc.Type != "KILL_CHAIN" || kc.Evidence.Summary.MatchedSignals != 3 || kc.Severity < features.High || kc.Confidence < 0.75 {
		t.Errorf("kill chain %+v", kc)
	}
}
