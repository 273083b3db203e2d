package features

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

// Parity with the reference (flowtracex/flink-ndr-usecases): its sample
// events, read by ingest's reader, must give the signals its correlation
// rules need, with its counts, severities and scores, and nothing that
// could make a detection for the benign hosts.

func metric(t *testing.T, s Signal, name string) float64 {
	t.Helper()
	v, ok := s.Metric(name)
	if !ok {
		t.Fatalf("%s: no metric %q in %v", s.Type, name, s.Metrics)
	}
	return v
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func maxSeverity(ss []Signal) Severity {
	var m Severity
	for _, s := range ss {
		m = max(m, s.Severity)
	}
	return m
}

func setOf[T comparable](v ...T) map[T]bool {
	m := map[T]bool{}
	for _, x := range v {
		m[x] = true
	}
	return m
}

func TestParityLateralMovement(t *testing.T) {
	conns := readFile(t, "testdata/reference/01-lateral-movement.ndjson")
	if len(conns) != 40 {
		t.Fatalf("read %d events, want 40", len(conns))
	}
	c, st := run(t, DefaultConfig(), conns)
	if st.LateHost != 0 {
		t.Errorf("%d late events in an ordered file", st.LateHost)
	}
	const src = "10.0.0.5"
	// The reference's three signals, and beside them ndr's HOST_SWEEP: 40
	// internal hosts in 5 minutes (its fan-out criterion, which catches
	// sweeps paced under PORT_SCAN's threshold).
	if got, want := c.types(src), setOf(PortScan, ConnectionSpike, PrivilegedAccess, HostSweep); !mapsEqual(got, want) {
		t.Errorf("signal types for %s: %v, want %v", src, got, want)
	}
	refOnly := DefaultConfig()
	refOnly.Signals.HostSweep.MinInternalHosts = 0
	if c0, _ := run(t, refOnly, conns); !mapsEqual(c0.types(src), setOf(PortScan, ConnectionSpike, PrivilegedAccess)) {
		t.Errorf("without the fan-out criterion, signal types for %s: %v, want the reference's three", src, c0.types(src))
	}
	for _, s := range c.of(HostSweep, src) {
		if got := metric(t, s, "unique_internal_hosts"); got != 40 {
			t.Errorf("HOST_SWEEP unique_internal_hosts %g, want 40", got)
		}
	}
	for _, s := range c.signals {
		if s.Src.String() != src {
			t.Errorf("signal for another host: %+v", s)
		}
	}

	// CONNECTION_SPIKE: 40 connections in [10:15:00, 10:16:00), z = (40 -
	// 10) / 3 = 10.0 against the prior, CRITICAL.
	spikes := c.of(ConnectionSpike, src)
	if len(spikes) != 1 {
		t.Fatalf("%d CONNECTION_SPIKE signals, want 1: %+v", len(spikes), spikes)
	}
	sp := spikes[0]
	if got := metric(t, sp, "connection_count"); got != 40 {
		t.Errorf("connection_count %g, want 40", got)
	}
	if got := metric(t, sp, "deviation_score"); got != 10.0 {
		t.Errorf("deviation_score %g, want 10.0", got)
	}
	if metric(t, sp, "baseline") != 0 {
		t.Error("baseline: want 0 (prior)")
	}
	if sp.Severity != Critical {
		t.Errorf("CONNECTION_SPIKE severity %s, want CRITICAL", sp.Severity)
	}
	if want := at("2025-01-29T10:15:00Z").UnixMicro(); sp.WindowStart != want || sp.WindowEnd != want+60e6 {
		t.Errorf("CONNECTION_SPIKE window [%s, %s)", us(sp.WindowStart), us(sp.WindowEnd))
	}
	if sp.FirstSeen != at("2025-01-29T10:15:01Z").UnixMicro() || sp.LastSeen != at("2025-01-29T10:15:40Z").UnixMicro() {
		t.Errorf("CONNECTION_SPIKE seen %s..%s", us(sp.FirstSeen), us(sp.LastSeen))
	}

	// PORT_SCAN: 24 distinct ports (signals-output.json; the stale
	// expected-output.txt says 23), MEDIUM.
	scans := c.of(PortScan, src)
	if len(scans) == 0 {
		t.Fatal("no PORT_SCAN")
	}
	var most float64
	for _, s := range scans {
		most = max(most, metric(t, s, "unique_ports"))
		if s.Severity != Medium {
			t.Errorf("PORT_SCAN severity %s, want MEDIUM", s.Severity)
		}
		if s.Value <= 20 || s.Threshold != 20 {
			t.Errorf("PORT_SCAN value %g threshold %g", s.Value, s.Threshold)
		}
	}
	if most != 24 {
		t.Errorf("PORT_SCAN unique_ports %g, want 24", most)
	}
	if got := len(scans[0].Ports); got != 24 {
		t.Errorf("PORT_SCAN lists %d ports, want 24", got)
	}

	// PRIVILEGED_ACCESS: SSH, SMB, RDP, WinRM: 4 services, CRITICAL.
	privs := c.of(PrivilegedAccess, src)
	if len(privs) == 0 {
		t.Fatal("no PRIVILEGED_ACCESS")
	}
	for _, s := range privs {
		if got := setOf(s.Services...); !mapsEqual(got, setOf("WinRM", "RDP", "SMB", "SSH")) {
			t.Errorf("services %v", s.Services)
		}
		if metric(t, s, "unique_services") != 4 || s.Severity != Critical {
			t.Errorf("PRIVILEGED_ACCESS %v %s, want 4 services CRITICAL", s.Metrics, s.Severity)
		}
	}
}

func TestParityExfiltration(t *testing.T) {
	conns := readFile(t, "testdata/reference/07-large-volume-exfiltration.json")
	if len(conns) != 10 {
		t.Fatalf("read %d events, want 10", len(conns))
	}
	sorted := slices.Clone(conns)
	slices.SortStableFunc(sorted, func(a, b ingest.Conn) int { return int(a.TS - b.TS) })

	for _, tc := range []struct {
		name  string
		conns []ingest.Conn
		late  uint64
	}{
		// The file lists the benign hosts' events (10:10, 10:12) after
		// 10:25: replayed in file order they are later than the 30 s
		// allowed lateness, counted and ignored by windows.
		{"file order", conns, 2},
		// In time order every event counts, and the benign hosts must
		// still give nothing.
		{"time order", sorted, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, st := run(t, DefaultConfig(), tc.conns)
			if st.LateHost != tc.late {
				t.Errorf("late events %d, want %d", st.LateHost, tc.late)
			}
			const src = "10.100.50.25"
			if got, want := c.types(src), setOf(DataStaging, OutboundSpike, DestinationDiversity); !mapsEqual(got, want) {
				t.Errorf("signal types for %s: %v, want %v", src, got, want)
			}
			for _, benign := range []string{"10.100.60.40", "10.100.70.15"} {
				if got := c.types(benign); len(got) != 0 {
					t.Errorf("signals for benign %s: %v", benign, got)
				}
			}

			// DATA_STAGING: 650 MB + 450 MB over SMB in [10:15, 10:20):
			// 1.1 GB, 2 transfers, HIGH.
			stg := c.of(DataStaging, src)
			if len(stg) != 1 {
				t.Fatalf("%d DATA_STAGING, want 1", len(stg))
			}
			if metric(t, stg[0], "total_bytes_staged") != 1.1e9 || metric(t, stg[0], "transfer_count") != 2 ||
				stg[0].Severity != High {
				t.Errorf("DATA_STAGING %v %s, want 1.1 GB, 2 transfers, HIGH", stg[0].Metrics, stg[0].Severity)
			}
			if stg[0].WindowStart != at("2026-02-06T10:15:00Z").UnixMicro() {
				t.Errorf("DATA_STAGING window starts %s", us(stg[0].WindowStart))
			}

			// OUTBOUND_SPIKE: the 5-minute window [10:20, 10:25) holds
			// 2.05 GB: z = (2050 - 50) / 25 = 80, CRITICAL (> 1 GB).
			outs := c.of(OutboundSpike, src)
			if maxSeverity(outs) != Critical {
				t.Errorf("OUTBOUND_SPIKE max severity %s, want CRITICAL", maxSeverity(outs))
			}
			var peak *Signal
			for i := range outs {
				if outs[i].WindowStart == at("2026-02-06T10:20:00Z").UnixMicro() {
					peak = &outs[i]
				}
			}
			if peak == nil {
				t.Fatalf("no OUTBOUND_SPIKE for [10:20, 10:25): %+v", outs)
			}
			if metric(t, *peak, "bytes_uploaded") != 2.05e9 || !near(metric(t, *peak, "deviation_score"), 80) ||
				peak.Severity != Critical {
				t.Errorf("OUTBOUND_SPIKE [10:20, 10:25) %v %s", peak.Metrics, peak.Severity)
			}

			// DESTINATION_DIVERSITY: 6 external destinations, 2.2 GB,
			// MEDIUM.
			div := c.of(DestinationDiversity, src)
			if len(div) == 0 {
				t.Fatal("no DESTINATION_DIVERSITY")
			}
			if metric(t, div[0], "unique_destinations") != 6 || metric(t, div[0], "total_bytes_sent") != 2.2e9 ||
				div[0].Severity != Medium || len(div[0].Dsts) != 6 {
				t.Errorf("DESTINATION_DIVERSITY %v %s %v", div[0].Metrics, div[0].Severity, div[0].Dsts)
			}
		})
	}
}

// TestParityDeviationScoreWholeData: the reference computes its 86.0 over
// all of its data (2.2 GB); a 10-minute outbound window holds all of it.
func TestParityDeviationScoreWholeData(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Signals.OutboundSpike.Window = Window{Duration(10 * time.Minute), Duration(2 * time.Minute)}
	c, _ := run(t, cfg, readFile(t, "testdata/reference/07-large-volume-exfiltration.json"))
	var z float64
	for _, s := range c.of(OutboundSpike, "10.100.50.25") {
		z = max(z, metric(t, s, "deviation_score"))
	}
	if !near(z, 86.0) {
		t.Errorf("deviation_score over the whole upload %g, want 86.0", z)
	}
}

// TestParityBeaconing: the reference has no raw events for UC-02, only
// its three finished signals for 192.168.1.45 -> 203.0.113.99:8443 (about
// 60 s apart, 235 B requests, 1420 B responses). Events shaped like them
// must give the same three signals and severities.
func TestParityBeaconing(t *testing.T) {
	start := at("2026-02-04T14:20:00Z")
	var conns []ingest.Conn
	jitter := []time.Duration{0, 2, -1, 3, -2, 1, 0, -3, 2, 1, -1, 0}
	for i := range 12 {
		ts := start.Add(time.Duration(i)*time.Minute + jitter[i]*time.Second)
		conns = append(conns, conn(ts, "192.168.1.45", "203.0.113.99", 8443, 235, 1420))
	}
	c, _ := run(t, DefaultConfig(), conns)
	const src = "192.168.1.45"
	if got, want := c.types(src), setOf(PeriodicBeacon, PersistentDestination, CommandExchange); !mapsEqual(got, want) {
		t.Fatalf("signal types %v, want %v", got, want)
	}
	for _, s := range c.signals {
		if s.Dst.String() != "203.0.113.99" || s.DstPort != 8443 {
			t.Errorf("%s for %s:%d", s.Type, s.Dst, s.DstPort)
		}
	}
	if got := maxSeverity(c.of(PeriodicBeacon, src)); got != High {
		t.Errorf("PERIODIC_BEACON severity %s, want HIGH", got)
	}
	for _, s := range c.of(PeriodicBeacon, src) {
		if m := metric(t, s, "avg_interval_seconds"); m < 58 || m > 62 {
			t.Errorf("avg_interval_seconds %g", m)
		}
	}
	for _, s := range c.of(PersistentDestination, src) {
		if s.Severity != Critical || metric(t, s, "internal_hosts_contacting") != 1 {
			t.Errorf("PERSISTENT_DESTINATION %v %s, want 1 internal host, CRITICAL", s.Metrics, s.Severity)
		}
	}
	ex := c.of(CommandExchange, src)
	if len(ex) != 1 {
		t.Fatalf("%d COMMAND_EXCHANGE, want 1 (one session)", len(ex))
	}
	if ex[0].Severity != High || metric(t, ex[0], "avg_request_size") != 235 ||
		metric(t, ex[0], "avg_response_size") != 1420 || !near(metric(t, ex[0], "response_ratio"), 1420.0/235) {
		t.Errorf("COMMAND_EXCHANGE %v %s", ex[0].Metrics, ex[0].Severity)
	}
}

// TestZeekSampleBeacon: the repository's Zeek conn.log sample holds a 60 s
// beacon from 10.0.0.23 to 203.0.113.99:8443 among ordinary traffic.
func TestZeekSampleBeacon(t *testing.T) {
	c, st := run(t, DefaultConfig(), readFile(t, "testdata/zeek/conn.sample.log"))
	if st.Events == 0 {
		t.Fatal("no events")
	}
	got := map[SignalType]bool{}
	for _, s := range c.signals {
		if s.Src.String() == "10.0.0.23" && s.Dst.String() == "203.0.113.99" && s.DstPort == 8443 {
			got[s.Type] = true
		}
	}
	if !got[PeriodicBeacon] || !got[PersistentDestination] {
		t.Errorf("beacon pair signals %v, want PERIODIC_BEACON and PERSISTENT_DESTINATION", got)
	}
	// Its responses are smaller than its requests: no command exchange.
	if got[CommandExchange] {
		t.Error("COMMAND_EXCHANGE for a beacon whose responses are smaller than its requests")
	}
}

func mapsEqual[K comparable](a, b map[K]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
