package scenario

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2026, 2, 6, 10, 0, 0, 0, time.UTC)

// small is a spec with every scenario and a few background hosts, short
// enough for every test to generate it.
func small(seed uint64) Spec {
	s := Spec{Seed: seed, Start: t0, Duration: 2 * time.Hour, Sensor: "test", Background: DefaultBackground()}
	s.Background.Hosts = 8
	s.Lateral = []Lateral{DefaultLateral()}
	s.C2 = []Beacon{DefaultBeacon()}
	s.Exfil = []Exfil{DefaultExfil()}
	s.LowSlow = []LowSlow{DefaultLowSlow()}
	n := DefaultNTP()
	n.Hosts = 8
	s.NTP = []NTP{n}
	u := DefaultUpdateCheck()
	u.Hosts = 8
	u.Interval = 10 * time.Minute
	s.Updates = []UpdateCheck{u}
	b := DefaultBackup()
	b.TimeOfDay = 10*time.Hour + 30*time.Minute
	s.Backups = []Backup{b}
	a := DefaultAdmin()
	a.Round = 11 * time.Hour
	s.Admin = []Admin{a}
	s.CloudUploads = []CloudUpload{DefaultCloudUpload()}
	return s
}

func generate(t testing.TB, s Spec) ([]ingest.Conn, []Label) {
	t.Helper()
	conns, labels, err := Generate(s)
	if err != nil {
		t.Fatal(err)
	}
	return conns, labels
}

func write(t testing.TB, f Format, s Spec) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := WriteLog(&buf, f, s); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func labelByID(t testing.TB, labels []Label, id string) Label {
	t.Helper()
	for _, l := range labels {
		if l.ID == id {
			return l
		}
	}
	t.Fatalf("no label %q", id)
	return Label{}
}

// connsOf returns the connections from src to dst (any dst when invalid).
func connsOf(conns []ingest.Conn, src, dst netip.Addr) []ingest.Conn {
	var out []ingest.Conn
	for _, c := range conns {
		if c.OrigH == src && (!dst.IsValid() || c.RespH == dst) {
			out = append(out, c)
		}
	}
	return out
}

func TestDeterministic(t *testing.T) {
	s := small(7)
	for _, f := range []Format{FormatTSV, FormatJSON} {
		a, b := write(t, f, s), write(t, f, s)
		if !bytes.Equal(a, b) {
			t.Errorf("%v: two runs of the same spec differ", f)
		}
		if c := write(t, f, small(8)); bytes.Equal(a, c) {
			t.Errorf("%v: seeds 7 and 8 gave the same bytes", f)
		}
	}
	_, l1 := generate(t, s)
	_, l2 := generate(t, s)
	if !reflect.DeepEqual(l1, l2) {
		t.Error("labels differ between two runs")
	}
}

// TestInstancesIndependent: adding an instance must not change the others'
// traffic, so that benchmark specs can grow without reshuffling.
func TestInstancesIndependent(t *testing.T) {
	s := small(3)
	s.C2[0].Src = netip.MustParseAddr("10.10.9.9")
	s.C2[0].Dst = netip.MustParseAddr("203.0.113.99")
	before, _ := generate(t, s)
	s.C2 = append(s.C2, DefaultBeacon())
	s.Lateral = append(s.Lateral, DefaultLateral())
	after, _ := generate(t, s)
	src, dst := s.C2[0].Src, s.C2[0].Dst
	a, b := connsOf(before, src, dst), connsOf(after, src, dst)
	if len(a) == 0 || !reflect.DeepEqual(a, b) {
		t.Errorf("c2-0's %d conns changed when instances were added (now %d)", len(a), len(b))
	}
}

func TestOrderAndBounds(t *testing.T) {
	s := small(1)
	conns, labels := generate(t, s)
	start, end := s.Start.UnixMicro(), s.Start.Add(s.Duration).UnixMicro()
	for i, c := range conns {
		if c.TS < start || c.TS >= end {
			t.Fatalf("conn %d at %v is outside the run", i, c.Time())
		}
		if i > 0 && c.TS < conns[i-1].TS {
			t.Fatalf("conn %d at %v is before its predecessor %v", i, c.Time(), conns[i-1].Time())
		}
	}
	total := 0
	for _, l := range labels {
		total += l.Conns
	}
	if total != len(conns) {
		t.Errorf("labels count %d conns, the run has %d", total, len(conns))
	}
}

// TestConnInvariants checks every record is one Zeek could have written.
func TestConnInvariants(t *testing.T) {
	conns, _ := generate(t, small(2))
	uids := map[string]bool{}
	v := ingest.NewValidator(ingest.DefaultLimits(), func() time.Time { return t0.Add(48 * time.Hour) })
	for i := range conns {
		c := &conns[i]
		if err := v.Check(c); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		if len(c.UID) != 18 || c.UID[0] != 'C' || uids[c.UID] {
			t.Fatalf("conn %d: bad or repeated uid %q", i, c.UID)
		}
		uids[c.UID] = true
		hdr := uint64(tcpHdr)
		if c.Proto == ingest.UDP {
			hdr = udpHdr
		}
		if c.OrigIPBytes != c.OrigBytes+hdr*c.OrigPkts || c.RespIPBytes != c.RespBytes+hdr*c.RespPkts {
			t.Fatalf("conn %d: ip_bytes disagree with bytes and packets: %+v", i, c)
		}
		if c.OrigPkts == 0 || c.OrigPkts < segs(c.OrigBytes) || c.RespPkts < segs(c.RespBytes) {
			t.Fatalf("conn %d: too few packets for the bytes: %+v", i, c)
		}
		if c.LocalOrig != ingest.TristateOf(c.OrigH.IsPrivate()) || c.LocalResp != ingest.TristateOf(c.RespH.IsPrivate()) {
			t.Fatalf("conn %d: local flags wrong: %+v", i, c)
		}
		if c.OrigP == 0 || c.RespP == 0 {
			t.Fatalf("conn %d: zero port", i)
		}
		switch c.ConnState {
		case ingest.SF:
			if c.Proto == ingest.TCP && !strings.HasPrefix(c.History, "ShA") {
				t.Fatalf("conn %d: SF with history %q", i, c.History)
			}
			if c.Duration <= 0 {
				t.Fatalf("conn %d: SF without duration", i)
			}
		case ingest.S0, ingest.REJ, ingest.RSTO:
			if c.OrigBytes != 0 || c.RespBytes != 0 {
				t.Fatalf("conn %d: %v carries payload", i, c.ConnState)
			}
		default:
			t.Fatalf("conn %d: unexpected state %v", i, c.ConnState)
		}
	}
}

// readBack parses a written log with ingest's reader.
func readBack(t *testing.T, name string, data []byte, sensor string) ([]ingest.Conn, string) {
	t.Helper()
	v := ingest.NewValidator(ingest.DefaultLimits(), func() time.Time { return t0.Add(48 * time.Hour) })
	var rejects []string
	fr, err := ingest.NewFileReader(name, bytes.NewReader(data), ingest.ReaderOptions{
		Sensor: sensor, Validator: v,
		OnReject: func(e *ingest.LineError) { rejects = append(rejects, e.Error()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []ingest.Conn
	for {
		out, err = fr.Read(out)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(rejects) > 0 {
		t.Fatalf("%s: %d lines rejected, first: %s", name, len(rejects), rejects[0])
	}
	return out, fr.Format()
}

func TestRoundTrip(t *testing.T) {
	s := small(5)
	want, _ := generate(t, s)
	for _, tc := range []struct {
		f      Format
		format string
	}{{FormatTSV, "zeek-tsv"}, {FormatJSON, "ndjson"}} {
		t.Run(tc.f.String(), func(t *testing.T) {
			got, format := readBack(t, "gen."+tc.f.String(), write(t, tc.f, s), s.Sensor)
			if format != tc.format {
				t.Errorf("detected as %s, want %s", format, tc.format)
			}
			if len(got) != len(want) {
				t.Fatalf("read %d conns, wrote %d", len(got), len(want))
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("conn %d differs after the round trip:\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
		})
	}
}

// TestWriterEdgeCases: values the generator never makes but a writer of
// arbitrary Conns must keep readable.
func TestWriterEdgeCases(t *testing.T) {
	cs := []ingest.Conn{
		// Unset everything optional.
		{TS: t0.UnixMicro(), UID: "Cx", OrigH: netip.MustParseAddr("10.0.0.1"), RespH: netip.MustParseAddr("2001:db8::1"), OrigP: 1, RespP: 2},
		// Zero duration but bytes: must not be written as unset.
		{TS: t0.UnixMicro() + 1, UID: "Cy", OrigH: netip.MustParseAddr("10.0.0.1"), RespH: netip.MustParseAddr("10.0.0.2"), Proto: ingest.ICMP, OrigBytes: 5, ConnState: ingest.OTH, LocalOrig: ingest.True, LocalResp: ingest.False, History: "^d"},
	}
	for _, f := range []Format{FormatTSV, FormatJSON} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, f, t0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range cs {
			if err := w.Write(&cs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Write(&cs[0]); err == nil {
			t.Errorf("%v: Write after Close succeeded", f)
		}
		got, _ := readBack(t, f.String(), buf.Bytes(), "")
		if !reflect.DeepEqual(got, cs) {
			t.Errorf("%v round trip:\n got %+v\nwant %+v", f, got, cs)
		}
	}
	var empty bytes.Buffer
	w := NewTSVWriter(&empty, t0)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := readBack(t, "empty", empty.Bytes(), ""); len(got) != 0 {
		t.Errorf("empty log read %d conns", len(got))
	}
	if !strings.HasSuffix(empty.String(), "#close\t2026-02-06-10-00-00\n") {
		t.Errorf("empty log trailer: %q", empty.String())
	}
}

func TestTSVEscapes(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := string(appendTSVString(nil, in)); got != want {
			t.Errorf("appendTSVString(%q) = %q, want %q", in, got, want)
		}
	}
	f("", "-")
	f("-", `\x2d`)
	f("(empty)", `\x28empty)`)
	f("a\tb\\c\n", `a\x09b\x5cc\x0a`)
	f("ssl,rdp", "ssl,rdp")
	g := func(in, want string) {
		t.Helper()
		if got := string(appendJSONString(nil, in)); got != want {
			t.Errorf("appendJSONString(%q) = %q, want %q", in, got, want)
		}
	}
	g(`a"b\`, `"a\"b\\"`)
	g("x\x01", `"x\u0001"`)
	g("é\xff", `"é\ufffd"`)
	h := func(us int64, want string) {
		t.Helper()
		if got := string(appendMicros(nil, us)); got != want {
			t.Errorf("appendMicros(%d) = %q, want %q", us, got, want)
		}
	}
	h(0, "0.000000")
	h(1_770_372_000_000_001, "1770372000.000001")
	h(-1_500_000, "-1.500000")
}

// TestGolden pins the TSV of a small attack-only spec, so that a change in
// what the generator draws shows up in review. Refresh with
// go test ./ingest/scenario -run TestGolden -update
func TestGolden(t *testing.T) {
	s := Spec{Seed: 42, Start: t0, Duration: 20 * time.Minute, Sensor: "golden"}
	l := DefaultLateral()
	l.Offset, l.Targets, l.Logins = time.Minute, 12, 4
	b := DefaultBeacon()
	b.Interval = 2 * time.Minute
	x := DefaultExfil()
	x.Offset = 2 * time.Minute
	x.StageBytes, x.Uploads = x.StageBytes[:1], x.Uploads[:2]
	s.Lateral, s.C2, s.Exfil = []Lateral{l}, []Beacon{b}, []Exfil{x}
	var logBuf, labelBuf bytes.Buffer
	labels, err := WriteLog(&logBuf, FormatTSV, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteLabels(&labelBuf, labels); err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		name string
		got  []byte
	}{{"attacks.log.golden", logBuf.Bytes()}, {"attacks.labels.golden", labelBuf.Bytes()}} {
		path := filepath.Join("testdata", g.name)
		if *update {
			if err := os.WriteFile(path, g.got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		if !bytes.Equal(g.got, want) {
			t.Errorf("%s differs from the generated output; rerun with -update if the change is intended", g.name)
		}
	}
}

func TestLabels(t *testing.T) {
	_, labels := generate(t, small(9))
	var buf bytes.Buffer
	if err := WriteLabels(&buf, labels); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLabels(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, labels) {
		t.Errorf("labels changed in a write/read round trip")
	}
	if _, err := ReadLabels(strings.NewReader(`[{"id":"x","bogus":1}]`)); err == nil {
		t.Error("ReadLabels accepted an unknown key")
	}
	kinds := map[string]Kind{}
	attackers := map[netip.Addr]string{}
	for _, l := range labels {
		kinds[l.Scenario] = l.Kind
		if l.Kind != KindBenign {
			if l.Expect == "" || len(l.Hosts) != 1 {
				t.Errorf("%s: attack label without expectation or single host: %+v", l.ID, l)
			}
			if prev, ok := attackers[l.Hosts[0]]; ok {
				t.Errorf("%s and %s share attacker %s", prev, l.ID, l.Hosts[0])
			}
			attackers[l.Hosts[0]] = l.ID
		} else if l.Expect != "" {
			t.Errorf("%s: benign label expects %s", l.ID, l.Expect)
		}
		if l.Conns == 0 || l.First.IsZero() || l.Last.Before(l.First) {
			t.Errorf("%s: no traffic or bad times: %d conns, %v..%v", l.ID, l.Conns, l.First, l.Last)
		}
	}
	want := map[string]Kind{
		ScenarioLateral: KindLateral, ScenarioC2: KindC2, ScenarioExfil: KindExfil, ScenarioLowSlow: KindExfil,
		ScenarioNTP: KindBenign, ScenarioUpdateCheck: KindBenign, ScenarioBackup: KindBenign,
		ScenarioAdmin: KindBenign, ScenarioCloudUpload: KindBenign, ScenarioBackground: KindBenign,
	}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("scenarios and kinds:\n got %v\nwant %v", kinds, want)
	}
}

// gaps returns the seconds between consecutive connections.
func gaps(cs []ingest.Conn) []float64 {
	var out []float64
	for i := 1; i < len(cs); i++ {
		out = append(out, float64(cs[i].TS-cs[i-1].TS)/1e6)
	}
	return out
}

func meanSD(xs []float64) (float64, float64) {
	var s, ss float64
	for _, x := range xs {
		s += x
	}
	m := s / float64(len(xs))
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	return m, math.Sqrt(ss / float64(len(xs)))
}

func TestBeaconShape(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		jitter   float64
		miss     float64
		length   time.Duration
	}{
		{"10s exact", 10 * time.Second, 0, 0, 2 * time.Hour},
		{"60s 10%", time.Minute, 0.1, 0, 12 * time.Hour},
		{"5m 50%", 5 * time.Minute, 0.5, 0, 48 * time.Hour},
		{"60s 20% 30% missed", time.Minute, 0.2, 0.3, 24 * time.Hour},
		{"4h 25%", 4 * time.Hour, 0.25, 0, 30 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Spec{Seed: 11, Start: t0, Duration: tc.length}
			b := DefaultBeacon()
			b.Offset, b.Interval, b.Jitter, b.MissRate = 0, tc.interval, tc.jitter, tc.miss
			s.C2 = []Beacon{b}
			conns, labels := generate(t, s)
			l := labelByID(t, labels, "c2-0")
			if l.Conns != len(conns) || len(l.Dsts) != 1 || !l.Dsts[0].IsValid() || l.Dsts[0].IsPrivate() {
				t.Fatalf("label %+v for %d conns", l, len(conns))
			}
			for _, c := range conns {
				if c.RespH != l.Dsts[0] || c.RespP != b.Port || c.OrigH != l.Hosts[0] {
					t.Fatalf("beacon conn to the wrong place: %+v", c)
				}
			}
			iv := tc.interval.Seconds()
			scheduled := tc.length.Seconds() / iv
			g := gaps(conns)
			if tc.miss == 0 {
				lo, hi := iv*(1-tc.jitter)-1e-6, iv*(1+tc.jitter)+1e-6
				for i, x := range g {
					if x < lo || x > hi {
						t.Fatalf("gap %d is %.3fs, outside [%.3f, %.3f]", i, x, lo, hi)
					}
				}
				m, sd := meanSD(g)
				// The mean of n uniform gaps has sd iv*jitter/sqrt(3n);
				// allow four of them.
				if tol := 4*iv*tc.jitter/math.Sqrt(3*float64(len(g))) + 1e-6; math.Abs(m-iv) > tol {
					t.Errorf("mean gap %.3fs, want %.3f +- %.3f", m, iv, tol)
				}
				if want := iv * tc.jitter / math.Sqrt(3); math.Abs(sd-want) > 0.15*want+1e-6 {
					t.Errorf("gap sd %.3fs, want about %.3f (uniform jitter)", sd, want)
				}
				if math.Abs(float64(len(conns))-scheduled) > 0.05*scheduled+1 {
					t.Errorf("%d beats, want about %.0f", len(conns), scheduled)
				}
				return
			}
			kept := float64(len(conns)) / scheduled
			if math.Abs(kept-(1-tc.miss)) > 0.05 {
				t.Errorf("kept %.3f of the beats, want %.2f", kept, 1-tc.miss)
			}
			// Every gap spans a whole number of jittered intervals.
			for i, x := range g {
				k := math.Round(x / iv)
				if k < 1 || math.Abs(x-k*iv) > k*iv*tc.jitter+1e-6 {
					t.Fatalf("gap %d is %.3fs, not k intervals within jitter", i, x)
				}
			}
		})
	}
}

func TestCommandExchanges(t *testing.T) {
	s := Spec{Seed: 4, Start: t0, Duration: 24 * time.Hour}
	b := DefaultBeacon()
	b.CommandRate = 0.25
	s.C2 = []Beacon{b}
	conns, _ := generate(t, s)
	cmds := 0
	for _, c := range conns {
		switch {
		case c.RespBytes >= b.CmdRespBytes*9/10:
			cmds++
			if c.OrigBytes > b.CmdReqBytes*11/10+1 || c.RespBytes < 4*c.OrigBytes {
				t.Fatalf("command exchange is not small request, larger response: %d/%d", c.OrigBytes, c.RespBytes)
			}
		case c.RespBytes > b.RespBytes*11/10+1 || c.OrigBytes > b.ReqBytes*11/10+1:
			t.Fatalf("heartbeat sizes %d/%d out of range", c.OrigBytes, c.RespBytes)
		}
	}
	if got := float64(cmds) / float64(len(conns)); math.Abs(got-0.25) > 0.04 {
		t.Errorf("command share %.3f, want 0.25", got)
	}
}

func TestExfilShape(t *testing.T) {
	s := Spec{Seed: 6, Start: t0, Duration: time.Hour}
	s.Exfil = []Exfil{DefaultExfil()}
	conns, labels := generate(t, s)
	l := labelByID(t, labels, "exfil-0")
	var staged, out uint64
	stageFrom, dsts := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	var lastStage, firstUpload int64 = 0, math.MaxInt64
	for _, c := range conns {
		if c.OrigH != l.Hosts[0] {
			t.Fatalf("exfil conn from %s, attacker is %s", c.OrigH, l.Hosts[0])
		}
		if c.RespH.IsPrivate() {
			if c.RespP != 445 || c.Service != "smb" || c.RespBytes < 100*c.OrigBytes/2 {
				t.Fatalf("staging is not an SMB read: %+v", c)
			}
			staged += c.RespBytes
			stageFrom[c.RespH] = true
			lastStage = max(lastStage, c.TS)
			continue
		}
		if c.RespP != 443 || c.OrigBytes < 100*c.RespBytes {
			t.Fatalf("upload is not an outbound transfer over 443: %+v", c)
		}
		out += c.OrigBytes
		dsts[c.RespH] = true
		firstUpload = min(firstUpload, c.TS)
	}
	if staged != 1_100_000_000 || out != 2_200_000_000 {
		t.Errorf("staged %d and uploaded %d, want 1.1 GB and 2.2 GB", staged, out)
	}
	if len(stageFrom) != 2 || len(dsts) != 6 || len(l.Dsts) != 6 || len(l.Staging) != 2 {
		t.Errorf("%d staging servers and %d destinations (label %d, %d), want 2 and 6", len(stageFrom), len(dsts), len(l.Staging), len(l.Dsts))
	}
	if lastStage >= firstUpload {
		t.Error("uploads began before staging ended")
	}
	if span := conns[len(conns)-1].TS - conns[0].TS; span > int64(15*time.Minute/time.Microsecond) {
		t.Errorf("exfiltration spans %v, more than the reference's 15-minute window", time.Duration(span)*time.Microsecond)
	}

	// The 2 GB burst of the benchmark: one upload, no staging.
	x := DefaultExfil()
	x.StageBytes, x.StageFrom, x.Uploads = nil, nil, []uint64{2e9}
	s.Exfil = []Exfil{x}
	conns, _ = generate(t, s)
	if len(conns) != 1 || conns[0].OrigBytes != 2e9 || conns[0].Duration < 100*time.Second {
		t.Errorf("2 GB burst: %d conns, first %+v", len(conns), conns[0])
	}
}

func TestLowSlowShape(t *testing.T) {
	s := Spec{Seed: 8, Start: t0, Duration: 24 * time.Hour}
	l := DefaultLowSlow()
	l.Offset = 0
	s.LowSlow = []LowSlow{l}
	conns, _ := generate(t, s)
	for _, c := range conns {
		if c.OrigBytes != 10e6 {
			t.Fatalf("chunk of %d bytes", c.OrigBytes)
		}
	}
	m, _ := meanSD(gaps(conns))
	if math.Abs(m-600) > 12 || math.Abs(float64(len(conns))-144) > 4 {
		t.Errorf("%d chunks with mean gap %.1fs, want about 144 and 600 s", len(conns), m)
	}
}

func TestLateralShape(t *testing.T) {
	s := Spec{Seed: 10, Start: t0, Duration: time.Hour}
	s.Lateral = []Lateral{DefaultLateral()}
	conns, labels := generate(t, s)
	l := labelByID(t, labels, "lateral-0")
	probes := conns[:40]
	dsts, ports := map[netip.Addr]bool{}, map[uint16]bool{}
	for i, c := range probes {
		dsts[c.RespH] = true
		ports[c.RespP] = true
		if want := t0.Add(10*time.Minute + time.Duration(i)*time.Second); c.Time().Truncate(time.Second) != want {
			t.Errorf("probe %d at %v, want within the second %v", i, c.Time(), want)
		}
		if c.ConnState != ingest.RSTO && !c.ConnState.Failed() {
			t.Errorf("probe %d has state %v", i, c.ConnState)
		}
	}
	if len(dsts) != 40 || len(ports) != 24 || len(l.Ports) != 24 || len(l.Dsts) != 40 {
		t.Errorf("%d hosts and %d ports probed, want the reference's 40 and 24", len(dsts), len(ports))
	}
	services := map[string]bool{}
	for _, c := range conns[40:] {
		if c.ConnState != ingest.SF || !dsts[c.RespH] {
			t.Errorf("login %+v is not an established session to a probed host", c)
		}
		services[c.Service+"/"+string(rune('0'+c.RespP%10))] = true
	}
	if len(conns) != 46 || len(services) != 4 {
		t.Errorf("%d conns with %d login services, want 46 and SSH, SMB, RDP and WinRM", len(conns), len(services))
	}
}

func TestBenignShapes(t *testing.T) {
	s := small(12)
	s.Duration = 24 * time.Hour
	s.Start = time.Date(2026, 2, 6, 0, 0, 0, 0, time.UTC)
	s.Backups[0].TimeOfDay = time.Hour
	s.Admin[0].Round = 9 * time.Hour
	conns, labels := generate(t, s)
	byLabel := func(id string) (Label, []ingest.Conn) {
		l := labelByID(t, labels, id)
		var out []ingest.Conn
		for _, c := range conns {
			if slices.Contains(l.Hosts, c.OrigH) && slices.Contains(l.Dsts, c.RespH) {
				out = append(out, c)
			}
		}
		return l, out
	}

	l, ntp := byLabel("ntp-0")
	hosts := map[netip.Addr]bool{}
	for _, c := range ntp {
		hosts[c.OrigH] = true
		if c.Proto != ingest.UDP || c.RespP != 123 || c.OrigBytes != 48 || c.RespBytes != 48 {
			t.Fatalf("ntp conn %+v", c)
		}
	}
	// 8 hosts x 2 servers x 86400/1024 polls.
	if len(hosts) != 8 || math.Abs(float64(len(ntp))-8*2*84.4) > 20 || l.Conns != len(ntp) {
		t.Errorf("ntp: %d hosts, %d conns (label %d)", len(hosts), len(ntp), l.Conns)
	}

	l, backups := byLabel("backup-0")
	if len(backups) != 2 || l.Conns != 2 {
		t.Fatalf("backup: %d conns, want one per client", len(backups))
	}
	for _, c := range backups {
		if h := c.Time().Hour(); h != 1 || c.RespP != 22 || c.OrigBytes < 4e9 || !c.RespH.IsPrivate() {
			t.Errorf("backup conn at %v to port %d with %d bytes", c.Time(), c.RespP, c.OrigBytes)
		}
	}

	_, up := byLabel("cloud-upload-0")
	var total uint64
	for _, c := range up {
		total += c.OrigBytes
	}
	if len(up) != 4 || total != 400e6 || up[0].RespH.IsPrivate() {
		t.Errorf("cloud upload: %d conns, %d bytes", len(up), total)
	}

	_, adm := byLabel("admin-0")
	round := 0
	for _, c := range adm {
		if !workHours(c.TS) {
			t.Errorf("admin session at %v, outside working hours", c.Time())
		}
		if c.Time().Hour() == 9 && c.RespP == 22 {
			round++
		}
	}
	if round < 6 {
		t.Errorf("the 09:00 round reached %d servers, want all 6", round)
	}

	_, upd := byLabel("update-check-0")
	if math.Abs(float64(len(upd))-8*144) > 20 {
		t.Errorf("update checks: %d, want about %d", len(upd), 8*144)
	}

	// Background: night is quieter than day, and DNS precedes browsing.
	bg := labelByID(t, labels, "background-0")
	var night, dayN, dns int
	for _, c := range conns {
		if !slices.Contains(bg.Hosts, c.OrigH) || c.RespP != 53 {
			continue
		}
		dns++
		if h := c.Time().Hour(); h < 6 || h >= 22 {
			night++
		} else if h >= 8 && h < 18 {
			dayN++
		}
	}
	if dns == 0 || float64(night)/8 > float64(dayN)/10*0.2 {
		t.Errorf("background DNS: %d at night (8 h), %d by day (10 h)", night, dayN)
	}
}

func TestPresets(t *testing.T) {
	want := map[string][]Kind{
		"lateral": {KindLateral},
		"c2":      {KindC2},
		"exfil":   {KindExfil},
		"benign":  nil,
		"mixed":   {KindLateral, KindC2, KindExfil},
	}
	for _, name := range Presets() {
		t.Run(name, func(t *testing.T) {
			d := time.Duration(0)
			if name == "benign" || name == "mixed" {
				d = 3 * time.Hour // keep the test quick; daily jobs move into the run
			}
			s, err := Preset(name, 1, time.Time{}, d)
			if err != nil {
				t.Fatal(err)
			}
			_, labels := generate(t, s)
			kinds := map[Kind]bool{}
			for _, l := range labels {
				if l.Conns == 0 {
					t.Errorf("%s produced no traffic", l.ID)
				}
				if l.Kind != KindBenign {
					kinds[l.Kind] = true
				}
			}
			for _, k := range want[name] {
				if !kinds[k] {
					t.Errorf("no %s instance", k)
				}
			}
			if len(kinds) != len(want[name]) {
				t.Errorf("attack kinds %v, want %v", kinds, want[name])
			}
		})
	}
	if _, err := Preset("nope", 1, time.Time{}, 0); !errors.Is(err, ErrUnknownPreset) {
		t.Errorf("unknown preset: %v", err)
	}
}

func TestValidate(t *testing.T) {
	s := Spec{Background: Background{Hosts: -1}}
	s.C2 = []Beacon{{Jitter: 2, MissRate: 1}}
	s.Exfil = []Exfil{{StageBytes: []uint64{1}, Dsts: []netip.Addr{netip.MustParseAddr("2001:db8::1")}}}
	s.NTP = []NTP{{Hosts: 1, Servers: ntpServers(1), PerHost: 2, Poll: time.Minute}}
	err := s.Validate()
	if err == nil {
		t.Fatal("a bad spec passed")
	}
	for _, want := range []string{
		"start: must be set", "duration: must be positive", "background.hosts",
		"c2[0].interval", "c2[0].jitter", "c2[0].miss_rate: must be below 1", "c2[0].port",
		"exfil[0].stage_from", "exfil[0].uploads", "exfil[0].dsts: has 1 addresses for 0 uploads",
		"exfil[0].dsts[0]: 2001:db8::1: only IPv4", "exfil[0].upload_mbps", "ntp[0].per_host",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if _, _, err := Generate(s); err == nil {
		t.Error("Generate accepted a bad spec")
	}
	good := small(1)
	if err := good.Validate(); err != nil {
		t.Errorf("small spec: %v", err)
	}
}

func TestStreamStops(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	_, err := Stream(small(1), func(*ingest.Conn) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 {
		t.Errorf("Stream returned %v after %d conns, want stop after 10", err, n)
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"tsv": FormatTSV, "zeek": FormatTSV, "json": FormatJSON} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("csv"); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("ParseFormat(csv): %v", err)
	}
}
