package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/store"
	"github.com/ndr-go/ndr/scoring"
)

func analysisWriter(t *testing.T, s *store.Store) *store.AnalysisWriter {
	t.Helper()
	w, err := s.NewAnalysisWriter(store.DefaultWriterConfig())
	if err != nil {
		t.Fatal(err)
	}
	w.Start(t.Context())
	t.Cleanup(func() { w.Shutdown(t.Context()) })
	return w
}

func TestAnalysisWriterSignals(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	w := analysisWriter(t, s)
	t0 := time.Date(2025, 1, 29, 10, 15, 0, 0, time.UTC).UnixMicro()
	sigs := []features.Signal{
		{Type: features.PortScan, Src: netip.MustParseAddr("10.0.0.5"), WindowStart: t0, WindowEnd: t0 + 60e6,
			FirstSeen: t0 + 1e6, LastSeen: t0 + 40e6, Severity: features.Medium, Value: 24, Threshold: 20,
			Metrics: []features.Metric{{Name: "unique_ports", Value: 24}}, Ports: []uint16{22, 445}},
		{Type: features.PeriodicBeacon, Src: netip.MustParseAddr("192.168.1.45"), Dst: netip.MustParseAddr("2001:db8::99"), DstPort: 8443,
			WindowStart: t0, WindowEnd: t0 + 300e6, Severity: features.High, Value: 0.03, Threshold: 0.3,
			Dsts: []netip.Addr{netip.MustParseAddr("203.0.113.99")}},
	}
	if err := w.AddSignals(t.Context(), sigs); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Query(t.Context(), "SELECT signal_type, src_ip, dst_ip, dst_port, toString(severity), metrics['unique_ports'], length(dsts) FROM signals ORDER BY signal_type")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var typ, src, dst, sev string
		var port uint16
		var ports float64
		var ndst uint64
		if err := rows.Scan(&typ, &src, &dst, &port, &sev, &ports, &ndst); err != nil {
			t.Fatal(err)
		}
		got = append(got, typ+" "+src+" "+dst+" "+sev)
		if typ == "PORT_SCAN" && ports != 24 {
			t.Errorf("unique_ports = %v", ports)
		}
		if typ == "PERIODIC_BEACON" && (port != 8443 || ndst != 1) {
			t.Errorf("beacon port %d dsts %d", port, ndst)
		}
	}
	want := []string{"PERIODIC_BEACON 192.168.1.45 2001:db8::99 HIGH", "PORT_SCAN 10.0.0.5 :: MEDIUM"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("rows %q, want %q", got, want)
	}
}

// TestAnalysisWriterDetections checks that the stored JSON columns are the
// JSON line's own fields and that versions collapse to the latest.
func TestAnalysisWriterDetections(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	w := analysisWriter(t, s)
	sigs := referenceLateralSignals()
	ds, err := scoring.Correlate(t.Context(), mustRules(t), sigs, scoring.Options{})
	if err != nil || len(ds) != 1 {
		t.Fatalf("correlate: %d detections, %v", len(ds), err)
	}
	d := ds[0]
	v1 := d
	v1.Version, v1.Count = 1, 1
	v2 := d
	v2.Version, v2.Count = 2, 2
	for _, v := range []scoring.Detection{v2, v1} { // out of order on purpose
		if err := w.AddDetection(t.Context(), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var id, typ, src, signals, evidence, mitre string
	var version uint64
	var count uint32
	if err := s.QueryRow(t.Context(), "SELECT detection_id, type, src_ip, version, count, signals, evidence, mitre FROM detections_latest").
		Scan(&id, &typ, &src, &version, &count, &signals, &evidence, &mitre); err != nil {
		t.Fatal(err)
	}
	if id != d.ID || typ != "LATERAL_MOVEMENT" || src != "10.0.0.5" || version != 2 || count != 2 {
		t.Fatalf("latest row %s %s %s v%d count %d", id, typ, src, version, count)
	}
	line, _ := json.Marshal(v2)
	var want map[string]json.RawMessage
	json.Unmarshal(line, &want)
	for name, got := range map[string]string{"signals": signals, "evidence": evidence, "mitre": mitre} {
		if !bytes.Equal(want[name], []byte(got)) {
			t.Errorf("%s column differs from the JSON line:\n got %s\nwant %s", name, got, want[name])
		}
	}
}

func mustRules(t *testing.T) []scoring.Rule {
	t.Helper()
	r, err := scoring.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// referenceLateralSignals are the reference's UC-01 signals.
func referenceLateralSignals() []features.Signal {
	t0 := time.Date(2025, 1, 29, 10, 15, 0, 0, time.UTC).UnixMicro()
	src := netip.MustParseAddr("10.0.0.5")
	base := features.Signal{Src: src, WindowStart: t0, WindowEnd: t0 + 60e6, FirstSeen: t0 + 1e6, LastSeen: t0 + 40e6}
	spike, scan, priv := base, base, base
	spike.Type, spike.Severity, spike.Value, spike.Threshold = features.ConnectionSpike, features.Critical, 10, 3
	spike.Metrics = []features.Metric{{Name: "connection_count", Value: 40}, {Name: "deviation_score", Value: 10}}
	scan.Type, scan.Severity, scan.Value, scan.Threshold = features.PortScan, features.Medium, 24, 20
	scan.Metrics = []features.Metric{{Name: "unique_ports", Value: 24}}
	priv.Type, priv.Severity, priv.Value, priv.Threshold = features.PrivilegedAccess, features.Critical, 4, 2
	priv.Metrics = []features.Metric{{Name: "unique_services", Value: 4}}
	priv.Services = []string{"SSH", "SMB", "RDP", "WinRM"}
	return []features.Signal{spike, scan, priv}
}

// TestAnalysisWriterFeatures runs Layer 1 over the reference lateral
// movement sample and stores its feature rows: the tiling rows land with
// their values, and the checked allocator shows every record released.
func TestAnalysisWriterFeatures(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	w := analysisWriter(t, s)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var emitted int64
	eng, err := features.NewEngine(features.DefaultConfig(), features.EmitterFunc(func(ctx context.Context, out *features.WindowOutput) error {
		emitted += out.Hosts.NumRows() + out.Pairs.NumRows()
		return w.AddFeatures(ctx, out)
	}), chtest.Logger(t), mem)
	if err != nil {
		t.Fatal(err)
	}
	var conns []ingest.Conn
	t0 := time.Date(2025, 1, 29, 10, 15, 1, 0, time.UTC)
	ports := []uint16{22, 80, 445, 135, 139, 3389, 443, 5985, 21, 23, 445, 3306, 1433, 5432, 27017, 6379, 8080, 9200, 5000, 8443, 3000, 5900, 3389, 445, 22, 5985, 389, 636, 88, 445, 3389, 445, 22, 3389, 445, 5985, 22, 445, 3389, 445}
	for i, p := range ports {
		conns = append(conns, ingest.Conn{TS: t0.Add(time.Duration(i) * time.Second).UnixMicro(), OrigH: netip.MustParseAddr("10.0.0.5"),
			RespH: netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)}), RespP: p, Proto: ingest.TCP})
	}
	if err := eng.Process(t.Context(), conns); err != nil {
		t.Fatal(err)
	}
	if err := eng.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	// Layer 1 emits rows for tiling windows only; the writer keeps them all.
	if st.HostRows == 0 || int64(st.HostRows+st.PairRows) != emitted {
		t.Fatalf("stored %d host and %d pair rows of %d emitted: want all of them", st.HostRows, st.PairRows, emitted)
	}
	var conns60, ports60 uint32
	var window string
	if err := s.QueryRow(t.Context(), "SELECT window, connections, distinct_ports FROM host_features WHERE host_ip = '10.0.0.5' AND window_start = '2025-01-29 10:15:00' AND window = '1m0s'").
		Scan(&window, &conns60, &ports60); err != nil {
		t.Fatal(err)
	}
	if conns60 != 40 || ports60 != 24 {
		t.Fatalf("window %s [10:15, 10:16): %d connections, %d ports; want 40 and 24", window, conns60, ports60)
	}
	var overlapping uint64
	if err := s.QueryRow(t.Context(), "SELECT count() FROM host_features WHERE toUnixTimestamp64Micro(window_start) % (toUnixTimestamp64Micro(window_end) - toUnixTimestamp64Micro(window_start)) != 0").Scan(&overlapping); err != nil {
		t.Fatal(err)
	}
	if overlapping != 0 {
		t.Fatalf("%d stored rows are overlapping hops", overlapping)
	}
}
