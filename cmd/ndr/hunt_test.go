package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/scoring"
)

// TestHuntAndDetections replays the reference samples and the Zeek sample
// (whose 10.0.0.23 beacons to 203.0.113.99:8443 every 60 s) and reads them
// back with `ndr hunt` and `ndr detections`.
func TestHuntAndDetections(t *testing.T) {
	dsn := chtest.NewDatabase(t)
	if code, _, errOut := runCmd(t.Context(), "replay", "--clickhouse", dsn, "../../testdata/reference", "../../testdata/zeek/conn.sample.log"); code != exitOK {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}

	code, out, errOut := runCmd(t.Context(), "hunt", "--clickhouse", dsn, "beacon-candidates", "--param", "limit=3", "--format", "json")
	if code != exitOK {
		t.Fatalf("hunt: exit %d: %s", code, errOut)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first); err != nil {
		t.Fatalf("first JSON line: %v\n%s", err, out)
	}
	if first["src"] != "10.0.0.23" || first["dst"] != "203.0.113.99" || first["port"] != float64(8443) {
		t.Errorf("top beacon candidate %v, want 10.0.0.23 -> 203.0.113.99:8443", first)
	}
	if m, _ := first["interval_median_s"].(float64); m < 58 || m > 62 {
		t.Errorf("median interval %v, want about 60 s", first["interval_median_s"])
	}

	// Flags after the name, CSV, a typed parameter.
	code, out, errOut = runCmd(t.Context(), "hunt", "pair-timeline", "--clickhouse", dsn,
		"--param", "src=10.0.0.23", "--param", "dst=203.0.113.99", "--param", "port=8443", "--format", "csv")
	if code != exitOK {
		t.Fatalf("pair-timeline: exit %d: %s", code, errOut)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 61 || recs[0][0] != "ts" || recs[0][1] != "gap_s" || recs[1][1] != "" {
		t.Errorf("pair-timeline: %d records (want a header and the 60 beacons), header %v, first gap %q", len(recs), recs[0], recs[1][1])
	}

	code, out, _ = runCmd(t.Context(), "hunt", "--clickhouse", dsn, "internal-fanout", "--param", "from=2025-01-29", "--param", "to=2025-01-30")
	if code != exitOK || !strings.HasPrefix(out, "src ") || !strings.Contains(strings.SplitN(out, "\n", 3)[1], "10.0.0.5 ") {
		t.Errorf("internal-fanout table: exit %d\n%s", code, out)
	}

	code, out, _ = runCmd(t.Context(), "hunt", "--list")
	for _, name := range []string{"beacon-candidates", "pair-timeline", "pair-intervals", "upload-anomalies", "internal-fanout", "rare-destinations", "detection-connections", "detection-contacts"} {
		if code != exitOK || !strings.Contains(out, "\n"+name+"\n") && !strings.HasPrefix(out, name+"\n") {
			t.Errorf("hunt --list lacks %s", name)
		}
	}

	// Detections: the reference's lateral movement and exfiltration.
	code, out, errOut = runCmd(t.Context(), "detections", "--clickhouse", dsn, "--format", "json")
	if code != exitOK {
		t.Fatalf("detections: exit %d: %s", code, errOut)
	}
	ds, err := scoring.ReadJSONLines(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, d := range ds {
		types[d.Type] = d.ID
	}
	if types["LATERAL_MOVEMENT"] == "" || types["DATA_EXFILTRATION"] == "" {
		t.Fatalf("detections %v, want the reference's lateral movement and exfiltration", types)
	}
	code, out, _ = runCmd(t.Context(), "detections", "--clickhouse", dsn, "--type", "lateral_movement", "--min-severity", "high", "--host", "10.0.0.5")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 2 || !strings.HasPrefix(lines[0], "first_seen") || !strings.Contains(lines[1], types["LATERAL_MOVEMENT"]) {
		t.Errorf("detections table: exit %d\n%s", code, out)
	}

	// Drill down from the detection to its connections.
	code, out, errOut = runCmd(t.Context(), "hunt", "--clickhouse", dsn, "detection-connections", "--param", "detection_id="+types["LATERAL_MOVEMENT"], "--format", "json")
	if code != exitOK {
		t.Fatalf("detection-connections: exit %d: %s", code, errOut)
	}
	n := 0
	for sc := bufio.NewScanner(strings.NewReader(out)); sc.Scan(); n++ {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil || row["src"] != "10.0.0.5" {
			t.Fatalf("row %q: %v", sc.Text(), err)
		}
	}
	if n == 0 {
		t.Error("no connections behind the lateral-movement detection")
	}
}

func TestHuntUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"hunt"}, "name a query"},
		{[]string{"hunt", "no-such-query"}, `unknown query "no-such-query"`},
		{[]string{"hunt", "beacon-candidates", "--param", "bogus=1"}, `unknown parameter "bogus"`},
		{[]string{"hunt", "beacon-candidates", "--param", "min_conns=-3"}, "bad parameter value for min_conns"},
		{[]string{"hunt", "pair-timeline", "--param", "src=10.0.0.1"}, "missing parameter dst"},
		{[]string{"hunt", "beacon-candidates", "--param", "limit"}, "want NAME=VALUE"},
		{[]string{"hunt", "beacon-candidates", "--format", "xml"}, "want table, csv or json"},
		{[]string{"hunt", "beacon-candidates", "extra"}, "unexpected arguments"},
		{[]string{"detections", "--min-severity", "severe"}, "--min-severity"},
		{[]string{"detections", "--from", "2026-02-07", "--to", "2026-02-06"}, "is not before"},
		{[]string{"detections", "--host", "nobody"}, "--host"},
	} {
		code, _, errOut := runCmd(t.Context(), tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, exitUsage, tc.want)
		}
	}
}
