package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/store"
	"github.com/ndr-go/ndr/scoring"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func env(extra map[string]string) func(string) string {
	return func(k string) string { return extra[k] }
}

// runCmd runs an ndr command in-process and returns its exit code and output.
func runCmd(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut syncBuffer
	code := run(ctx, args, strings.NewReader(""), &out, &errOut, env(nil))
	return code, out.String(), errOut.String()
}

const zeekHeader = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t2026-03-02-09-00-00\n" +
	"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n" +
	"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n"

// writeConnLog writes n valid rows and the given bad rows (inserted every
// n/len(bad) rows) and returns the path and the bad rows' line numbers.
func writeConnLog(t *testing.T, n int, bad []string) (string, []int) {
	t.Helper()
	var b strings.Builder
	b.WriteString(zeekHeader)
	line := strings.Count(zeekHeader, "\n")
	var badLines []int
	every := n / (len(bad) + 1)
	for i := range n {
		if len(bad) > 0 && i > 0 && i%every == 0 && len(badLines) < len(bad) {
			b.WriteString(bad[len(badLines)] + "\n")
			line++
			badLines = append(badLines, line)
		}
		fmt.Fprintf(&b, "%d.%06d\tCe2e%07d\t10.1.%d.%d\t%d\t203.0.113.%d\t443\ttcp\tssl\t0.5\t%d\t%d\tSF\tT\tF\t0\tShADadFf\t5\t600\t6\t9000\t(empty)\n",
			1772442000+i/100, i%100*10000, i, i/250%250, i%250+1, 40000+i%20000, i%200+1, 100+i, 8000+i)
		line++
	}
	b.WriteString("#close\t2026-03-02-10-00-00\n")
	path := filepath.Join(t.TempDir(), "conn.log")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, badLines
}

var badRows = []string{
	"1772442000.1\tCbad1\tnot-an-ip\t1\t203.0.113.1\t443\ttcp\tssl\t0.5\t1\t1\tSF\tT\tF\t0\tS\t1\t1\t1\t1\t(empty)",
	"1772442000.1\tCbad2\t10.1.1.1\t1\t203.0.113.1\t99999\ttcp\tssl\t0.5\t1\t1\tSF\tT\tF\t0\tS\t1\t1\t1\t1\t(empty)",
	"1772442000.1\tCbad3\t10.1.1.1\t1\t203.0.113.1\t443\ttcp\tssl\tnan\t1\t1\tSF\tT\tF\t0\tS\t1\t1\t1\t1\t(empty)",
	"253402300799.0\tCbad4\t10.1.1.1\t1\t203.0.113.1\t443\ttcp\tssl\t0.5\t1\t1\tSF\tT\tF\t0\tS\t1\t1\t1\t1\t(empty)",
}

// TestServeSendStoresEveryValidRowOnce is the end-to-end check: a
// file sent through a real `ndr serve` lands every valid row in ndr.conn
// exactly once and reports every bad row by file and line.
func TestServeSendStoresEveryValidRowOnce(t *testing.T) {
	const valid = 20_000
	path, badLines := writeConnLog(t, valid, badRows)
	dsn := chtest.NewDatabase(t)

	ctx, cancel := context.WithCancel(t.Context())
	var serveOut, serveErr syncBuffer
	served := make(chan int, 1)
	go func() {
		served <- run(ctx, []string{"serve", "--grpc-addr", "127.0.0.1:0", "--clickhouse", dsn, "--flush-interval", "200ms", "--data-dir", t.TempDir()},
			strings.NewReader(""), &serveOut, &serveErr, env(nil))
	}()
	addr := waitForAddr(t, &serveOut, served)

	code, out, errOut := runCmd(t.Context(), "send", "--addr", addr, "--batch-size", "1000", "--progress", "0", path)
	if code != exitRejected {
		t.Fatalf("send exit %d, want %d (rejections)\nstdout:\n%s\nstderr:\n%s", code, exitRejected, out, errOut)
	}
	for _, ln := range badLines {
		if want := fmt.Sprintf("%s:%d:", path, ln); !strings.Contains(errOut, want) {
			t.Errorf("bad line %d not reported as %q; stderr:\n%s", ln, want, errOut)
		}
	}
	for _, field := range []string{"id.orig_h", "id.resp_p", "duration", "ts"} {
		if !strings.Contains(errOut, field) {
			t.Errorf("rejection reasons do not name field %s; stderr:\n%s", field, errOut)
		}
	}
	if !strings.Contains(out, fmt.Sprintf("stored %d", valid)) || !strings.Contains(out, "bad lines 4") {
		t.Errorf("summary does not say %d stored and 4 bad lines:\n%s", valid, out)
	}

	// An ack means the batch is in serve's spool; stopping serve drains the
	// spool into ClickHouse.
	cancel()
	select {
	case code := <-served:
		if code != exitOK {
			t.Fatalf("serve exit %d\n%s", code, serveErr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not stop")
	}
	st := openTestStore(t, dsn)
	var rows, uids uint64
	if err := st.QueryRow(t.Context(), "SELECT count(), uniqExact(uid) FROM conn").Scan(&rows, &uids); err != nil {
		t.Fatal(err)
	}
	if rows != valid || uids != valid {
		t.Fatalf("ndr.conn holds %d rows with %d distinct uids, want %d of each", rows, uids, valid)
	}
	var bad uint64
	if err := st.QueryRow(t.Context(), "SELECT count() FROM conn WHERE uid LIKE 'Cbad%'").Scan(&bad); err != nil || bad != 0 {
		t.Fatalf("bad rows stored: %d (%v)", bad, err)
	}
}

var addrRE = regexp.MustCompile(`gRPC on (127\.0\.0\.1:\d+)`)

func waitForAddr(t *testing.T, out *syncBuffer, exited <-chan int) string {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case code := <-exited:
			t.Fatalf("serve exited with %d before listening:\n%s", code, out.String())
		case <-deadline:
			t.Fatalf("serve did not report its address:\n%s", out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func openTestStore(t *testing.T, dsn string) *store.Store {
	t.Helper()
	cfg := store.Default()
	cfg.DSN = dsn
	st, err := store.Open(t.Context(), cfg, chtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestReplayNoStore(t *testing.T) {
	path, _ := writeConnLog(t, 3000, badRows[:1])
	code, out, errOut := runCmd(t.Context(), "replay", "--no-store", path)
	if code != exitRejected {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exitRejected, out, errOut)
	}
	if !strings.Contains(out, "replayed 3000 events") || !strings.Contains(out, "1 bad lines") {
		t.Fatalf("summary:\n%s", out)
	}
}

func TestReplayStoresReferenceSamples(t *testing.T) {
	dsn := chtest.NewDatabase(t)
	code, out, errOut := runCmd(t.Context(), "replay", "--clickhouse", dsn, "../../testdata/reference", "../../testdata/zeek/conn.sample.log")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	st := openTestStore(t, dsn)
	var n uint64
	if err := st.QueryRow(t.Context(), "SELECT count() FROM conn WHERE sensor = 'replay'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	var sample int
	b, _ := os.ReadFile("../../testdata/zeek/conn.sample.log")
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			sample++
		}
	}
	if want := uint64(40 + 10 + sample); n != want {
		t.Fatalf("stored %d rows, want %d", n, want)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{nil, exitUsage},
		{[]string{"nope"}, exitUsage},
		{[]string{"send"}, exitUsage},
		{[]string{"send", "--batch-size", "x", "f"}, exitUsage},
		{[]string{"replay", "--no-store", "/does/not/exist"}, exitError},
		{[]string{"serve", "--tls-cert", "a.pem"}, exitUsage},
		{[]string{"version"}, exitOK},
	} {
		if code, _, errOut := runCmd(t.Context(), tc.args...); code != tc.code {
			t.Errorf("ndr %v: exit %d, want %d\n%s", tc.args, code, tc.code, errOut)
		}
	}
}

func TestReplaySkipsOtherZeekLogs(t *testing.T) {
	dir := t.TempDir()
	conn, _ := writeConnLog(t, 100, nil)
	b, _ := os.ReadFile(conn)
	os.WriteFile(filepath.Join(dir, "conn.log"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "dns.log"), []byte(strings.Replace(zeekHeader, "#path\tconn", "#path\tdns", 1)+"1.0\tC1\n"), 0o644)
	code, out, errOut := runCmd(t.Context(), "replay", "--no-store", dir)
	if code != exitOK || !strings.Contains(out, "replayed 100 events from 2 files") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "dns.log") {
		t.Fatalf("skipped dns.log not reported:\n%s", errOut)
	}
}

func TestGenIsDeterministicAndReadable(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	for _, out := range []string{a, b} {
		if code, _, errOut := runCmd(t.Context(), "gen", "--preset", "lateral", "--seed", "7", "--out", out, "--labels", out+".labels"); code != exitOK {
			t.Fatalf("gen exit %d: %s", code, errOut)
		}
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if len(ba) == 0 || !bytes.Equal(ba, bb) {
		t.Fatalf("same seed gave different output (%d vs %d bytes)", len(ba), len(bb))
	}
	if code, out, errOut := runCmd(t.Context(), "replay", "--no-store", a); code != exitOK {
		t.Fatalf("replay of generated log: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, _ := runCmd(t.Context(), "gen", "--preset", "nope"); code != exitUsage {
		t.Fatalf("unknown preset: exit %d, want %d", code, exitUsage)
	}
}

// TestServeMatchesReplay streams a generated scenario through `ndr serve`
// and checks the two promises: the same detections as `ndr replay`
// of the same file, and rows in ndr.detections that match the JSON lines.
func TestServeMatchesReplay(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mixed.log")
	if code, _, errOut := runCmd(t.Context(), "gen", "--preset", "mixed", "--duration", "3h", "--seed", "3", "--out", log); code != exitOK {
		t.Fatalf("gen: %s", errOut)
	}
	replayOut := filepath.Join(dir, "replay.jsonl")
	if code, out, errOut := runCmd(t.Context(), "replay", "--no-store", "--out", replayOut, log); code != exitOK {
		t.Fatalf("replay exit %d\n%s\n%s", code, out, errOut)
	}
	want := readDetections(t, replayOut)
	if len(want) < 3 {
		t.Fatalf("replay found %d detections; the scenario holds lateral, C2 and exfiltration", len(want))
	}

	dsn := chtest.NewDatabase(t)
	serveOut := filepath.Join(dir, "serve.jsonl")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var sOut, sErr syncBuffer
	served := make(chan int, 1)
	go func() {
		served <- run(ctx, []string{"serve", "--grpc-addr", "127.0.0.1:0", "--clickhouse", dsn, "--flush-interval", "200ms", "--out", serveOut, "--data-dir", t.TempDir()},
			strings.NewReader(""), &sOut, &sErr, env(nil))
	}()
	addr := waitForAddr(t, &sOut, served)
	if code, out, errOut := runCmd(t.Context(), "send", "--addr", addr, "--progress", "0", "--batch-size", "500", log); code != exitOK {
		t.Fatalf("send exit %d\n%s\n%s", code, out, errOut)
	}
	cancel() // shutdown closes every window, as the end of a replay does
	if code := <-served; code != exitOK {
		t.Fatalf("serve exit %d\n%s", code, sErr.String())
	}

	// serve's --out holds every version; the last line of each id is current.
	latest := map[string]scoring.Detection{}
	for _, d := range readDetections(t, serveOut) {
		latest[d.ID] = d
	}
	if len(latest) != len(want) {
		t.Fatalf("serve made %d detections, replay %d", len(latest), len(want))
	}
	st := openTestStore(t, dsn)
	for _, w := range want {
		got, ok := latest[w.ID]
		if !ok {
			t.Errorf("replay's %s %s %s missing from serve", w.ID, w.Type, w.Src)
			continue
		}
		if got.Type != w.Type || got.Src != w.Src || got.Severity != w.Severity || got.FirstSeen != w.FirstSeen || got.LastSeen != w.LastSeen || got.Count != w.Count {
			t.Errorf("%s differs:\nserve  %+v\nreplay %+v", w.ID, got, w)
		}
		line, _ := json.Marshal(got)
		var fields map[string]json.RawMessage
		json.Unmarshal(line, &fields)
		var typ, src, severity, signals, evidence string
		var count uint32
		qctx := store.WithParams(t.Context(), store.Params{"id": w.ID})
		if err := st.QueryRow(qctx, "SELECT type, src_ip, toString(severity), count, signals, evidence FROM detections_latest WHERE detection_id = {id:String}").Scan(&typ, &src, &severity, &count, &signals, &evidence); err != nil {
			t.Errorf("%s: %v", w.ID, err)
			continue
		}
		if typ != got.Type || src != got.Src.String() || severity != got.Severity.String() || int(count) != got.Count ||
			signals != string(fields["signals"]) || evidence != string(fields["evidence"]) {
			t.Errorf("%s: ndr.detections row differs from its JSON line", w.ID)
		}
	}
}

func readDetections(t *testing.T, name string) []scoring.Detection {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ds, err := scoring.ReadJSONLines(f)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestReplayReferenceFigures: the reference samples replayed from their raw
// events give the reference's detections with its figures: 10.0.0.5 reached
// 40 destinations on 24 ports, 10.100.50.25 staged 1.1 GB and sent 2.2 GB to
// 6 destinations, and the benign hosts stay quiet.
func TestReplayReferenceFigures(t *testing.T) {
	out := filepath.Join(t.TempDir(), "detections.jsonl")
	code, stdout, errOut := runCmd(t.Context(), "replay", "--no-store", "--out", out,
		"../../testdata/reference/01-lateral-movement.ndjson", "../../testdata/reference/07-large-volume-exfiltration.json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, errOut)
	}
	// By the reference's rules: Layer 2's scorers may add their own
	// detections of the same types (EXFIL-002, EXFIL-003).
	byType := map[string]scoring.Detection{}
	for _, d := range readDetections(t, out) {
		if d.RuleID == "LM-001" || d.RuleID == "EXFIL-001" {
			byType[d.Type] = d
		}
		if s := d.Src.String(); s == "10.100.60.40" || s == "10.100.70.15" {
			t.Errorf("detection on a benign host: %s %s", d.ID, s)
		}
	}
	lm := byType["LATERAL_MOVEMENT"].Evidence.Summary
	if byType["LATERAL_MOVEMENT"].Src.String() != "10.0.0.5" || lm.Connections != 40 || lm.DistinctDestinations != 40 || lm.DistinctPorts != 24 {
		t.Errorf("LATERAL_MOVEMENT %+v", byType["LATERAL_MOVEMENT"])
	}
	ex := byType["DATA_EXFILTRATION"].Evidence.Summary
	if byType["DATA_EXFILTRATION"].Src.String() != "10.100.50.25" || ex.BytesStaged != 1_100_000_000 || ex.BytesOut != 2_200_000_000 || ex.DistinctDestinations != 6 {
		t.Errorf("DATA_EXFILTRATION %+v", byType["DATA_EXFILTRATION"])
	}
}

// TestClickHouseWait: serve and replay started before their ClickHouse is
// reachable retry until it is (here: a proxy that opens its port a second
// late), and give up after --clickhouse-wait when it never is.
func TestClickHouseWait(t *testing.T) {
	dsn := chtest.NewDatabase(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	late := l.Addr().String()
	l.Close()
	go func() {
		time.Sleep(time.Second)
		l, err := net.Listen("tcp", late)
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { l.Close() })
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", u.Host)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	path, _ := writeConnLog(t, 100, nil)
	lateDSN := strings.Replace(dsn, u.Host, late, 1)
	code, out, errOut := runCmd(t.Context(), "replay", "--clickhouse", lateDSN, "--clickhouse-wait", "30s", path)
	if code != exitOK || !strings.Contains(errOut, "clickhouse unreachable, retrying") || !strings.Contains(out, "replayed 100 events") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}

	start := time.Now()
	code, _, errOut = runCmd(t.Context(), "replay", "--clickhouse", "clickhouse://127.0.0.1:1/ndr", "--clickhouse-wait", "1s", path)
	if code != exitError || !strings.Contains(errOut, "open clickhouse") || time.Since(start) > 20*time.Second {
		t.Fatalf("unreachable ClickHouse: exit %d after %v\n%s", code, time.Since(start), errOut)
	}
}
