package hunt_test

import (
	"math"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/internal/hunt"
	"github.com/ndr-go/ndr/notebooks"
	"github.com/ndr-go/ndr/scoring"
)

func loadLibrary(t testing.TB) *hunt.Library {
	t.Helper()
	lib, err := hunt.Load(notebooks.Queries(), "queries")
	if err != nil {
		t.Fatalf("load the library: %v", err)
	}
	return lib
}

// run runs a library query with params (as a user types them).
func (s *seeded) run(t *testing.T, lib *hunt.Library, name string, params map[string]string) *hunt.Result {
	t.Helper()
	q, err := lib.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := hunt.Bind(q, params)
	if err != nil {
		t.Fatal(err)
	}
	res, err := hunt.Run(t.Context(), s.st, q, p)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// rowsOf turns a result into maps by column name, for readable checks.
func rowsOf(r *hunt.Result) []map[string]any {
	out := make([]map[string]any, len(r.Rows))
	for i, row := range r.Rows {
		m := map[string]any{}
		for j, c := range r.Columns {
			m[c] = row[j]
		}
		out[i] = m
	}
	return out
}

func num(t *testing.T, v any) float64 {
	t.Helper()
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	}
	t.Fatalf("%v (%T) is not a number", v, v)
	return 0
}

func str(v any) string { return hunt.Text(v) }

// TestLibrary runs every library query against a database the real
// pipeline filled from a labelled day, and checks what each one finds
// against the generator's ground truth.
func TestLibrary(t *testing.T) {
	lib := loadLibrary(t)
	s := seed(t, hunterDay(t))
	c2, lowSlow, exfil, lateral := s.labels["c2-0"], s.labels["low-slow-0"], s.labels["exfil-0"], s.labels["lateral-0"]
	c2Src, c2Dst := c2.Hosts[0], c2.Dsts[0]
	c2Port := strconv.Itoa(int(c2.Ports[0]))

	// pairConns are the generated connections of one pair, in time order.
	pairConns := func(src, dst netip.Addr, port uint16) []ingest.Conn {
		var out []ingest.Conn
		for _, c := range s.conns {
			if c.OrigH == src && c.RespH == dst && (port == 0 || c.RespP == port) {
				out = append(out, c)
			}
		}
		return out
	}

	checks := map[string]func(t *testing.T){
		// Defaults: the 24 h before the newest connection, i.e. the day.
		"beacon-candidates": func(t *testing.T) {
			rows := rowsOf(s.run(t, lib, "beacon-candidates", nil))
			if len(rows) < 3 {
				t.Fatalf("%d rows, want the two beacons and look-alikes", len(rows))
			}
			top := []string{str(rows[0]["src"]) + ">" + str(rows[0]["dst"]), str(rows[1]["src"]) + ">" + str(rows[1]["dst"])}
			slices.Sort(top)
			want := []string{c2Src.String() + ">" + c2Dst.String(), lowSlow.Hosts[0].String() + ">" + lowSlow.Dsts[0].String()}
			slices.Sort(want)
			if !slices.Equal(top, want) {
				t.Fatalf("top two candidates %v, want the C2 beacon and the low-and-slow upload %v", top, want)
			}
			for _, r := range rows {
				if str(r["src"]) != c2Src.String() || str(r["dst"]) != c2Dst.String() {
					continue
				}
				if m := num(t, r["interval_median_s"]); math.Abs(m-60) > 2 {
					t.Errorf("C2 median interval %.1f s, want 60 +- 2", m)
				}
				if got := int(num(t, r["conns"])); got != len(pairConns(c2Src, c2Dst, c2.Ports[0])) {
					t.Errorf("C2 conns %d, want %d", got, len(pairConns(c2Src, c2Dst, c2.Ports[0])))
				}
				if got := int(num(t, r["dst_sources"])); got != 2 {
					t.Errorf("C2 server contacted by %d internal hosts, want 2 (the second beacon)", got)
				}
			}
			floor := math.Min(num(t, rows[0]["score"]), num(t, rows[1]["score"]))
			ntp := 0
			for _, r := range rows[2:] {
				if num(t, r["port"]) == 123 {
					ntp++
					if num(t, r["score"]) >= floor {
						t.Errorf("NTP pair %v>%v scores %v, not below the beacons (%v)", r["src"], r["dst"], r["score"], floor)
					}
				}
			}
			if ntp == 0 {
				t.Error("no NTP look-alike among the candidates: the test lost its benign periodic traffic")
			}
		},
		"pair-timeline": func(t *testing.T) {
			want := pairConns(c2Src, c2Dst, c2.Ports[0])
			rows := rowsOf(s.run(t, lib, "pair-timeline", map[string]string{"src": c2Src.String(), "dst": c2Dst.String(), "port": c2Port}))
			if len(rows) != len(want) {
				t.Fatalf("%d rows, want the pair's %d connections", len(rows), len(want))
			}
			if rows[0]["gap_s"] != nil {
				t.Errorf("first gap %v, want NULL", rows[0]["gap_s"])
			}
			for i, r := range rows {
				if str(r["uid"]) != want[i].UID {
					t.Fatalf("row %d uid %v, want %s (time order)", i, r["uid"], want[i].UID)
				}
				if i > 0 {
					gap := float64(want[i].TS-want[i-1].TS) / 1e6
					if math.Abs(num(t, r["gap_s"])-gap) > 0.001 {
						t.Fatalf("row %d gap %v, want %.3f", i, r["gap_s"], gap)
					}
				}
			}
		},
		"pair-intervals": func(t *testing.T) {
			n := len(pairConns(c2Src, c2Dst, c2.Ports[0]))
			rows := rowsOf(s.run(t, lib, "pair-intervals", map[string]string{"src": c2Src.String(), "dst": c2Dst.String(), "port": c2Port}))
			total, peak, peakStart := 0.0, 0.0, 0.0
			for _, r := range rows {
				g := num(t, r["gaps"])
				total += g
				if g > peak {
					peak, peakStart = g, num(t, r["bin_start_s"])
				}
				if w := num(t, r["bin_end_s"]) - num(t, r["bin_start_s"]); w != 3 {
					t.Errorf("bin width %v, want 3 (a twentieth of the 60 s median)", w)
				}
			}
			if int(total) != n-1 {
				t.Errorf("%v gaps in the histogram, want %d", total, n-1)
			}
			// 10 % jitter: every gap within [54, 66] s, commands aside.
			if peakStart < 54 || peakStart >= 66 {
				t.Errorf("tallest bin starts at %v s, want within the beacon's 54-66 s", peakStart)
			}
		},
		"upload-anomalies": func(t *testing.T) {
			rows := rowsOf(s.run(t, lib, "upload-anomalies", nil))
			if len(rows) == 0 {
				t.Fatal("no upload anomalies")
			}
			// Both uploads of the day lead: the exfiltration against its
			// host's own hours, the low-and-slow upload against the
			// population while its host has little history.
			attackers := []string{exfil.Hosts[0].String(), lowSlow.Hosts[0].String()}
			if !slices.Contains(attackers, str(rows[0]["host"])) {
				t.Errorf("top anomaly %v, want one of the uploads %v", rows[0], attackers)
			}
			exfilHour := exfil.First.Truncate(time.Hour)
			found := false
			for i, r := range rows {
				if num(t, r["z"]) < 3.5 || num(t, r["bytes_out_external"]) < 1e7 {
					t.Errorf("row %v below the default cuts (z 3.5, 10 MB)", r)
				}
				if str(r["host"]) != exfil.Hosts[0].String() || !r["hour"].(time.Time).Equal(exfilHour) {
					continue
				}
				found = true
				if num(t, r["bytes_out_external"]) < 2e9 || str(r["baseline"]) != "host" || num(t, r["bytes_out_external"]) < num(t, r["band_high_bytes"]) {
					t.Errorf("exfiltration hour %v: want >= 2 GB, above the band of the host's own baseline", r)
				}
				for _, above := range rows[:i] {
					if !slices.Contains(attackers, str(above["host"])) {
						t.Errorf("benign host %v ranks above the exfiltration", above)
					}
				}
			}
			if !found {
				t.Errorf("the exfiltration by %s at %s is not among the anomalies %v", exfil.Hosts[0], exfilHour, rows)
			}
			// The band series of one host: every active hour, no cuts.
			band := rowsOf(s.run(t, lib, "upload-anomalies", map[string]string{
				"host": exfil.Hosts[0].String(), "min_z": "-1000", "min_bytes": "0", "limit": "1000"}))
			if len(band) < 12 {
				t.Fatalf("%d hours for %s, want most of the day", len(band), exfil.Hosts[0])
			}
			// Filtering by host changes no score: the population baseline
			// stays every host's.
			all := rowsOf(s.run(t, lib, "upload-anomalies", map[string]string{"min_z": "-1000", "min_bytes": "0", "limit": "100000"}))
			zOf := map[string]float64{}
			for _, r := range all {
				zOf[str(r["host"])+"@"+str(r["hour"])] = num(t, r["z"])
			}
			population := 0
			for _, r := range band {
				if str(r["host"]) != exfil.Hosts[0].String() {
					t.Fatalf("host filter let %v through", r["host"])
				}
				if lo, med, hi := num(t, r["band_low_bytes"]), num(t, r["baseline_median_bytes"]), num(t, r["band_high_bytes"]); lo > med || med > hi {
					t.Errorf("band %v <= %v <= %v out of order: %v", lo, med, hi, r)
				}
				if z, ok := zOf[str(r["host"])+"@"+str(r["hour"])]; !ok || z != num(t, r["z"]) {
					t.Errorf("%v at %v: z %v with the host filter, %v without", r["host"], r["hour"], r["z"], z)
				}
				if str(r["baseline"]) == "population" {
					population++
				}
			}
			if population == 0 {
				t.Error("no early hour of the exfiltration host was compared with the population")
			}
		},
		"internal-fanout": func(t *testing.T) {
			rows := rowsOf(s.run(t, lib, "internal-fanout", nil))
			if len(rows) == 0 || str(rows[0]["src"]) != lateral.Hosts[0].String() {
				t.Fatalf("first row %v, want the lateral-movement host %s", rows, lateral.Hosts[0])
			}
			if got := num(t, rows[0]["hosts"]); got < float64(len(lateral.Dsts)) {
				t.Errorf("lateral host reached %v internal hosts, want at least its %d targets", got, len(lateral.Dsts))
			}
			if got := num(t, rows[0]["ports"]); got < float64(len(lateral.Ports)) {
				t.Errorf("lateral host used %v ports, want at least %d", got, len(lateral.Ports))
			}
		},
		"rare-destinations": func(t *testing.T) {
			rows := rowsOf(s.run(t, lib, "rare-destinations", map[string]string{"limit": "1000"}))
			byDst := map[string]map[string]any{}
			for _, r := range rows {
				byDst[str(r["dst"])] = r
				if num(t, r["sources"]) > 2 {
					t.Errorf("%v has %v sources, above max_sources 2", r["dst"], r["sources"])
				}
			}
			for _, d := range exfil.Dsts {
				r, ok := byDst[d.String()]
				if !ok {
					t.Errorf("exfiltration drop %s missing", d)
					continue
				}
				if num(t, r["sources"]) != 1 || num(t, r["is_new"]) != 1 || str(r["source_list"]) != exfil.Hosts[0].String() {
					t.Errorf("drop %s: %v, want one source (%s), new", d, r, exfil.Hosts[0])
				}
			}
			if r, ok := byDst[c2Dst.String()]; !ok || num(t, r["sources"]) != 2 {
				t.Errorf("C2 server %s: %v, want it with its 2 sources", c2Dst, r)
			}
			// The largest uploads lead among single-source destinations.
			if str(rows[0]["dst"]) != exfil.Dsts[0].String() && str(rows[0]["dst"]) != lowSlow.Dsts[0].String() {
				t.Errorf("first row %v, want the largest upload's drop", rows[0]["dst"])
			}
		},
		"detection-connections": func(t *testing.T) {
			if len(s.detections) == 0 {
				t.Fatal("the pipeline stored no detections")
			}
			for _, d := range s.detections {
				var want []string
				for _, c := range s.conns {
					if c.OrigH == d.Src && slices.Contains(d.Dsts, c.RespH) && c.TS >= d.FirstSeen && c.TS <= d.LastSeen {
						want = append(want, c.UID)
					}
				}
				rows := rowsOf(s.run(t, lib, "detection-connections", map[string]string{"detection_id": d.ID}))
				got := make([]string, len(rows))
				for i, r := range rows {
					got[i] = str(r["uid"])
				}
				slices.Sort(want)
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("%s (%s): %d connections, want exactly its %d", d.ID, d.Type, len(got), len(want))
				}
				all := s.run(t, lib, "detection-connections", map[string]string{"detection_id": d.ID, "all_destinations": "1"})
				if len(all.Rows) < len(rows) {
					t.Errorf("%s: all_destinations gave %d rows, fewer than %d", d.ID, len(all.Rows), len(rows))
				}
			}
			if r := s.run(t, lib, "detection-connections", map[string]string{"detection_id": "NO-SUCH-1"}); len(r.Rows) != 0 {
				t.Errorf("unknown detection: %d rows, want none", len(r.Rows))
			}
		},
		"detection-contacts": func(t *testing.T) {
			var d *scoring.Detection
			for i := range s.detections {
				if s.detections[i].Type == "C2_BEACONING" && s.detections[i].Src == c2Src {
					d = &s.detections[i]
					break
				}
			}
			if d == nil {
				t.Fatal("no C2 detection for the beacon")
			}
			rows := rowsOf(s.run(t, lib, "detection-contacts", map[string]string{"detection_id": d.ID}))
			if len(rows) != 2 {
				t.Fatalf("%d hosts contacted %v, want the beacon and the second beacon: %v", len(rows), d.Dsts, rows)
			}
			if str(rows[0]["host"]) != secondBeaconSrc.String() || num(t, rows[0]["is_detection_source"]) != 0 {
				t.Errorf("first row %v, want the other host %s", rows[0], secondBeaconSrc)
			}
			if str(rows[1]["host"]) != c2Src.String() || num(t, rows[1]["is_detection_source"]) != 1 {
				t.Errorf("second row %v, want the detection's source %s", rows[1], c2Src)
			}
			if got, want := int(num(t, rows[0]["conns"])), len(pairConns(secondBeaconSrc, c2Dst, 0)); got != want {
				t.Errorf("second beacon: %d connections, want %d", got, want)
			}
		},
	}
	for _, name := range lib.Names() {
		check, ok := checks[name]
		if !ok {
			t.Errorf("library query %s has no check in TestLibrary: add one", name)
			continue
		}
		t.Run(name, check)
	}
	for name := range checks {
		if _, err := lib.Get(name); err != nil {
			t.Errorf("TestLibrary checks %s, which the library lacks", name)
		}
	}
}
