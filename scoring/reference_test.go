package scoring

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ndr-go/ndr/features"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// refObject is a JSON object of the reference's files with its keys in
// file order (metrics are displayed in that order).
type refObject struct {
	keys []string
	vals map[string]any
}

// readObjects reads a JSON array of objects or NDJSON objects.
func readObjects(t testing.TB, path string) []refObject {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out []refObject
	array := bytes.HasPrefix(bytes.TrimSpace(data), []byte("["))
	if array {
		if _, err := dec.Token(); err != nil {
			t.Fatal(err)
		}
	}
	for dec.More() {
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("%s: want an object, got %v %v", path, tok, err)
		}
		o := refObject{vals: map[string]any{}}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			k := tok.(string)
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			o.keys = append(o.keys, k)
			o.vals[k] = v
		}
		if _, err := dec.Token(); err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}

func (o refObject) str(k string) string { s, _ := o.vals[k].(string); return s }

func (o refObject) num(k string) (float64, bool) {
	n, ok := o.vals[k].(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

func (o refObject) time(t testing.TB, k string) int64 {
	v, err := time.Parse(time.RFC3339, o.str(k))
	if err != nil {
		t.Fatalf("%s: %v", k, err)
	}
	return v.UnixMicro()
}

// rawEvent is one of the reference's sample events.
type rawEvent struct {
	ts       int64
	src, dst netip.Addr
	port     uint16
}

func readEvents(t testing.TB, path string) []rawEvent {
	var out []rawEvent
	for _, o := range readObjects(t, path) {
		k := "ts"
		if o.str(k) == "" {
			k = "event_time"
		}
		p, _ := o.num("dest_port")
		out = append(out, rawEvent{
			ts: o.time(t, k), src: netip.MustParseAddr(o.str("src_ip")),
			dst: netip.MustParseAddr(o.str("dest_ip")), port: uint16(p),
		})
	}
	return out
}

// keyMetric names, per signal type, the metric the reference thresholds
// and a plausible threshold (the reference's tuning notes where it has
// them: staging 500 MB, outbound 1000 MB, 5 destinations).
func keyMetric(typ features.SignalType) (string, float64) {
	switch typ {
	case features.PortScan:
		return "unique_ports", 15
	case features.ConnectionSpike:
		return "deviation_score", 3
	case features.PrivilegedAccess:
		return "unique_services", 2
	case features.PeriodicBeacon:
		return "interval_stddev", 5
	case features.PersistentDestination:
		return "connection_count", 10
	case features.CommandExchange:
		return "response_ratio", 3
	case features.DataStaging:
		return "total_bytes_staged", 500e6
	case features.OutboundSpike:
		return "bytes_uploaded", 1000e6
	case features.DestinationDiversity:
		return "unique_destinations", 5
	}
	return "", 0
}

func privilegedPort(p uint16) bool { return p == 22 || p == 445 || p == 3389 || p == 5985 }

// refSignal converts a reference signal into what Layer 1 emits: windows
// of 5 minutes ending at the reference's timestamp, and for host signals
// the destinations, ports and connection times of the raw events the
// signal was computed from.
func refSignal(t testing.TB, o refObject, events []rawEvent) features.Signal {
	typ := features.SignalType(o.str("signal_type"))
	end := o.time(t, "timestamp")
	s := features.Signal{
		Type: typ, Src: netip.MustParseAddr(o.str("src_ip")),
		WindowStart: end - 5*60e6, WindowEnd: end,
	}
	if err := s.Severity.UnmarshalText([]byte(o.str("severity"))); err != nil {
		t.Fatal(err)
	}
	if d := o.str("dest_ip"); d != "" {
		s.Dst = netip.MustParseAddr(d)
		p, _ := o.num("dest_port")
		s.DstPort = uint16(p)
	}
	for _, k := range o.keys {
		if v, ok := o.num(k); ok && k != "dest_port" {
			s.Metrics = append(s.Metrics, features.Metric{Name: k, Value: v})
		}
	}
	if l := o.str("services_list"); l != "" {
		s.Services = strings.Split(l, ", ")
	}
	name, thr := keyMetric(typ)
	s.Value, _ = s.Metric(name)
	s.Threshold = thr
	for _, e := range events {
		if e.src != s.Src || e.ts < s.WindowStart || e.ts > s.WindowEnd {
			continue
		}
		switch typ {
		case features.DataStaging:
			if !e.dst.IsPrivate() {
				continue
			}
		case features.OutboundSpike, features.DestinationDiversity:
			if e.dst.IsPrivate() {
				continue
			}
		case features.PrivilegedAccess:
			if !privilegedPort(e.port) {
				continue
			}
		}
		if s.FirstSeen == 0 || e.ts < s.FirstSeen {
			s.FirstSeen = e.ts
		}
		s.LastSeen = max(s.LastSeen, e.ts)
		if !slices.Contains(s.Dsts, e.dst) {
			s.Dsts = append(s.Dsts, e.dst)
		}
		if !slices.Contains(s.Ports, e.port) {
			s.Ports = append(s.Ports, e.port)
		}
	}
	return s
}

// referenceSignals are the three use cases' signals, as Layer 1 would
// hand them over.
func referenceSignals(t testing.TB) []features.Signal {
	var out []features.Signal
	for _, set := range []struct{ signals, events string }{
		{"01-signals-output.json", "01-sample-data.ndjson"},
		{"02-sample-data.json", ""},
		{"07-signals-output.json", "07-sample-data.json"},
	} {
		var events []rawEvent
		if set.events != "" {
			events = readEvents(t, filepath.Join("testdata/reference", set.events))
		}
		for _, o := range readObjects(t, filepath.Join("testdata/reference", set.signals)) {
			out = append(out, refSignal(t, o, events))
		}
	}
	return out
}

func byRule(ds []Detection) map[string]Detection {
	m := map[string]Detection{}
	for _, d := range ds {
		m[d.RuleID] = d
	}
	return m
}

// TestReferenceParity: the reference's signals give the reference's three
// detections and nothing for the benign hosts.
func TestReferenceParity(t *testing.T) {
	ds, err := Correlate(context.Background(), defaultRules(t), referenceSignals(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 {
		t.Fatalf("%d detections, want 3: %v", len(ds), detIDs(ds))
	}
	m := byRule(ds)
	ts := func(s string) int64 { v, _ := time.Parse(time.RFC3339, s); return v.UnixMicro() }

	lm := m["LM-001"]
	sm := lm.Evidence.Summary
	if lm.Type != "LATERAL_MOVEMENT" || lm.Src != netip.MustParseAddr("10.0.0.5") || lm.Severity != features.Critical ||
		sm.Connections != 40 || sm.DistinctPorts != 24 || sm.DistinctDestinations != 40 ||
		!slices.Equal(sm.Services, []string{"RDP", "SMB", "SSH", "WinRM"}) ||
		lm.FirstSeen != ts("2025-01-29T10:15:01Z") || lm.LastSeen != ts("2025-01-29T10:15:40Z") || len(lm.Signals) != 3 {
		t.Errorf("LM-001: %+v", lm)
	}

	c2 := m["C2-BEACON-001"]
	sm = c2.Evidence.Summary
	if c2.Type != "C2_BEACONING" || c2.Src != netip.MustParseAddr("192.168.1.45") ||
		!slices.Equal(c2.Dsts, []netip.Addr{netip.MustParseAddr("203.0.113.99")}) || c2.Severity != features.Critical ||
		c2.Count != 1 || len(c2.Signals) != 3 || !slices.Equal(sm.Ports, []uint16{8443}) ||
		sm.Connections != 18 || sm.BytesOut != 4520 || sm.BytesIn != 15840 || sm.SpanSeconds != 360 {
		t.Errorf("C2-BEACON-001: %+v", c2)
	}

	ex := m["EXFIL-001"]
	sm = ex.Evidence.Summary
	if ex.Type != "DATA_EXFILTRATION" || ex.Src != netip.MustParseAddr("10.100.50.25") || ex.Severity != features.Critical ||
		sm.BytesStaged != 1_100_000_000 || sm.BytesOut != 2_200_000_000 || sm.DistinctDestinations != 6 ||
		len(ex.Dsts) != 8 || sm.SpanSeconds != 540 || ex.FirstSeen != ts("2026-02-06T10:15:00Z") || ex.LastSeen != ts("2026-02-06T10:25:00Z") {
		t.Errorf("EXFIL-001: %+v", ex)
	}
	for _, d := range ds {
		if !strings.HasPrefix(d.ID, d.RuleID+"-") || len(d.ID) != len(d.RuleID)+13 {
			t.Errorf("id %q is not the rule id and 12 hex digits", d.ID)
		}
		if d.Confidence < 0.8 || d.Score < 80 || d.Version != 1 || d.Count != 1 {
			t.Errorf("%s: confidence %.3f, score %d, version %d, count %d", d.ID, d.Confidence, d.Score, d.Version, d.Count)
		}
		for _, benign := range []string{"10.100.60.40", "10.100.70.15"} {
			if d.Src == netip.MustParseAddr(benign) {
				t.Errorf("detection for benign host %s", benign)
			}
		}
	}
}

func detIDs(ds []Detection) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// TestC2SampleOneDetection: 02's three finished signals arrive at 14:32,
// 14:35 and 14:38 and make one C2 detection at the third, through the
// streaming interface as the live service uses it.
func TestC2SampleOneDetection(t *testing.T) {
	var events []Event
	e, err := NewEngine(defaultRules(t), SinkFunc(func(_ context.Context, ev Event) error {
		events = append(events, ev)
		return nil
	}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, o := range readObjects(t, "testdata/reference/02-sample-data.json") {
		s := refSignal(t, o, nil)
		if err := e.Consume(ctx, []features.Signal{s}); err != nil {
			t.Fatal(err)
		}
		if err := e.Advance(ctx, s.WindowEnd); err != nil {
			t.Fatal(err)
		}
	}
	if len(events) != 1 || events[0].Kind != Created || events[0].Detection.Type != "C2_BEACONING" {
		t.Fatalf("events %+v, want one created C2_BEACONING", events)
	}
	if got := events[0].Detection.LastSeen; got != time.Date(2026, 2, 4, 14, 38, 0, 0, time.UTC).UnixMicro() {
		t.Errorf("last seen %v", time.UnixMicro(got).UTC())
	}
}

// TestGoldenJSON pins the JSON lines shape of the reference detections.
// Refresh with: go test ./scoring -run TestGoldenJSON -update
func TestGoldenJSON(t *testing.T) {
	ds, err := Correlate(context.Background(), defaultRules(t), referenceSignals(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteJSONLines(&buf, ds); err != nil {
		t.Fatal(err)
	}
	golden(t, "reference.jsonl.golden", buf.Bytes())

	// The top-level keys are exactly the issue's, plus rule_id,
	// recommended_actions and count.
	want := []string{"confidence", "count", "detection_id", "dst_ips", "evidence", "first_seen", "last_seen",
		"mitre", "recommended_actions", "rule_id", "score", "severity", "signals", "src_ip", "type"}
	for i, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, want) {
			t.Errorf("line %d keys %v, want %v", i+1, keys, want)
		}
		for _, k := range []string{"first_seen", "last_seen"} {
			var s string
			if err := json.Unmarshal(m[k], &s); err != nil {
				t.Fatal(err)
			}
			if _, err := time.Parse(time.RFC3339, s); err != nil {
				t.Errorf("%s %q is not RFC 3339: %v", k, s, err)
			}
		}
	}

	back, err := ReadJSONLines(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ds {
		ds[i].Version = 0 // not carried in JSON
	}
	if len(back) != len(ds) {
		t.Fatalf("read %d detections back, wrote %d", len(back), len(ds))
	}
	for i := range ds {
		a, _ := json.Marshal(back[i])
		b, _ := json.Marshal(ds[i])
		if !bytes.Equal(a, b) {
			t.Errorf("detection %d changed in a JSON round trip:\n%s\n%s", i, a, b)
		}
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs; rerun with -update if intended:\n got: %s\nwant: %s", name, firstDiff(got, want), firstDiff(want, got))
	}
}

func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return fmt.Sprintf("...%q", a[max(0, i-40):min(len(a), i+80)])
}
