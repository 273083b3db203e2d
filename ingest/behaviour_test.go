package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// TestRoundTrip writes synthetic records as Zeek TSV and Zeek JSON and reads
// them back field for field, through readers that return the input in
// awkward pieces so that buffer compaction and refills are exercised.
func TestRoundTrip(t *testing.T) {
	want := synthConns(3000)
	for i := range want {
		want[i].Sensor = "s1"
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"tsv", zeekTSV(want)},
		{"json", zeekJSON(want)},
		{"tsv.gz", gzipBytes(zeekTSV(want))},
	} {
		for _, wrap := range []struct {
			name string
			r    func(io.Reader) io.Reader
		}{
			{"whole", func(r io.Reader) io.Reader { return r }},
			{"onebyte", iotest.OneByteReader},
			{"half", iotest.HalfReader},
			{"dataerr", iotest.DataErrReader},
		} {
			t.Run(tc.name+"/"+wrap.name, func(t *testing.T) {
				got, rejects, _, err := readAll(t, "x", wrap.r(bytes.NewReader(tc.data)), ReaderOptions{Sensor: "s1"})
				if err != nil || len(rejects) > 0 {
					t.Fatalf("err %v, rejects %v", err, rejects)
				}
				if len(got) != len(want) {
					t.Fatalf("read %d records, want %d", len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("record %d:\n got %s\nwant %s", i, render(&got[i]), render(&want[i]))
					}
				}
			})
		}
	}
}

// TestStringsDoNotAlias keeps every returned record while the reader
// reuses its buffer, then checks them against a fresh read.
func TestStringsDoNotAlias(t *testing.T) {
	data := zeekTSV(synthConns(2000))
	fr, err := NewFileReader("x", iotest.HalfReader(bytes.NewReader(data)), ReaderOptions{Validator: testValidator()})
	if err != nil {
		t.Fatal(err)
	}
	var kept []Conn
	buf := make([]Conn, 0, 7)
	for {
		buf, err = fr.Read(buf[:0])
		kept = append(kept, buf...)
		// Scribble over the consumed part of the reader's buffer, as a
		// later refill would.
		for i := range fr.src.buf[:fr.src.pos] {
			fr.src.buf[i] = 'X'
		}
		if err != nil {
			break
		}
	}
	want, _, _, _ := readAll(t, "x", bytes.NewReader(data), ReaderOptions{})
	if len(kept) != len(want) {
		t.Fatalf("%d records, want %d", len(kept), len(want))
	}
	for i := range want {
		if kept[i].UID != want[i].UID || kept[i].Service != want[i].Service || kept[i].History != want[i].History {
			t.Fatalf("record %d changed after the reader moved on: %s", i, render(&kept[i]))
		}
	}
}

func TestReadBatching(t *testing.T) {
	data := zeekTSV(synthConns(1000))
	fr, err := NewFileReader("x", bytes.NewReader(data), ReaderOptions{Validator: testValidator()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := fr.Read(nil)
	if err != nil || len(got) != defaultReadBatch {
		t.Fatalf("Read(nil) = %d records, %v; want %d", len(got), err, defaultReadBatch)
	}
	buf := make([]Conn, 2, 12)
	buf, err = fr.Read(buf)
	if err != nil || len(buf) != 12 {
		t.Fatalf("Read appended up to len %d, %v; want 12", len(buf), err)
	}
	total := 256 + 10
	for {
		buf, err = fr.Read(buf[:0])
		total += len(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if total != 1000 {
		t.Fatalf("read %d records, want 1000", total)
	}
	if _, err := fr.Read(buf[:0]); err != io.EOF {
		t.Fatalf("Read after the end = %v, want io.EOF", err)
	}
	if s := fr.Stats(); s.Events != 1000 || s.Rejected != 0 || s.Lines != 1000+9 || s.Bytes != int64(len(data)) {
		t.Fatalf("stats %+v", s)
	}
}

// TestRejectsKeepNeighbours checks that bad lines are reported with
// file:line and field while the lines around them are read.
func TestRejectsKeepNeighbours(t *testing.T) {
	tsv := "#separator \\x09\n#fields\tts\tid.orig_h\tid.resp_h\tid.resp_p\n" +
		"1704103200\t10.0.0.1\t10.0.0.2\t80\n" +
		"1704103201\t10.0.0.1\t10.0.0.2\t70000\n" +
		"1704103202\t10.0.0.1\t10.0.0.2\t443\n"
	js := `{"ts":1704103200,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"}` + "\n" +
		`{"ts":1704103201,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","duration":-1}` + "\n" +
		`{"ts":1704103202,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"}` + "\n"
	arr := "[\n" + `{"ts":1704103200,"src_ip":"10.0.0.1","dest_ip":"10.0.0.2"},` + "\n" +
		`{"ts":1704103201,"src_ip":"10.0.0.1","dest_ip":"10.0.0.2","dest_port":-3},` + "\n" +
		`{"ts":1704103202,"src_ip":"10.0.0.1","dest_ip":"10.0.0.2"}` + "\n]"
	for _, tt := range []struct {
		name, in, wantErr, field string
		line, elem               int
	}{
		{"tsv", tsv, `t.log:4: id.resp_p: invalid port "70000"`, "id.resp_p", 4, 0},
		{"json", js, `t.log:2: duration: negative (-1s)`, "duration", 2, 0},
		{"array", arr, `t.log:3: element 2: dest_port: invalid port "-3"`, "dest_port", 3, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, rejects, fr, err := readAll(t, "t.log", strings.NewReader(tt.in), ReaderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0].TS != 1704103200e6 || got[1].TS != 1704103202e6 {
				t.Fatalf("neighbours not read: %d records", len(got))
			}
			if len(rejects) != 1 {
				t.Fatalf("%d rejects, want 1", len(rejects))
			}
			e := rejects[0]
			if e.Error() != tt.wantErr || e.Line != tt.line || e.Elem != tt.elem || e.File != "t.log" {
				t.Errorf("reject = %q (line %d elem %d), want %q", e, e.Line, e.Elem, tt.wantErr)
			}
			if FieldOf(e) != tt.field {
				t.Errorf("FieldOf = %q, want %q", FieldOf(e), tt.field)
			}
			var fe *FieldError
			if !errors.As(error(e), &fe) {
				t.Error("LineError does not unwrap to a FieldError")
			}
			if s := fr.Stats(); s.Rejected != 1 || s.Events != 2 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestOversizedLines(t *testing.T) {
	long := strings.Repeat("x", 5000)
	good := `{"ts":1704103200,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"}`
	for _, tt := range []struct {
		name, in string
		max      int
		line     int
	}{
		{"ndjson", good + "\n" + `{"uid":"` + long + `"}` + "\n" + good + "\n", 1000, 2},
		{"ndjson-last-no-newline", good + "\n" + good + "\n" + long, 1000, 3},
		{"tsv", "#fields\tts\tid.orig_h\tid.resp_h\n1704103200\t10.0.0.1\t10.0.0.2\n" + long + "\n1704103200\t10.0.0.1\t10.0.0.2\n", 1000, 3},
		{"array", "[" + good + ",\n" + `{"uid":"` + long + `"},` + "\n" + good + "]", 1000, 2},
		{"exact-limit", good + "\n" + good + "\n", len(good), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, wrap := range []func(io.Reader) io.Reader{func(r io.Reader) io.Reader { return r }, iotest.OneByteReader} {
				got, rejects, _, err := readAll(t, "f", wrap(strings.NewReader(tt.in)), ReaderOptions{MaxLineBytes: tt.max})
				if err != nil {
					t.Fatal(err)
				}
				wantRejects := 0
				if tt.line > 0 {
					wantRejects = 1
				}
				if len(got) != 2 || len(rejects) != wantRejects {
					t.Fatalf("%d records, rejects %v", len(got), rejects)
				}
				if wantRejects == 1 && (!errors.Is(rejects[0], ErrLineTooLong) || rejects[0].Line != tt.line) {
					t.Fatalf("reject %v, want ErrLineTooLong at line %d", rejects[0], tt.line)
				}
			}
		})
	}
}

// TestLongLineMemory feeds a 20 MB line and checks the buffer stayed
// within the limit.
func TestLongLineMemory(t *testing.T) {
	in := io.MultiReader(strings.NewReader(`{"uid":"`), io.LimitReader(repeatReader('a'), 20<<20),
		strings.NewReader("\"}\n"+`{"ts":1704103200,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"}`+"\n"))
	got, rejects, fr, err := readAll(t, "big", in, ReaderOptions{})
	if err != nil || len(got) != 1 || len(rejects) != 1 {
		t.Fatalf("%d records, %d rejects, %v", len(got), len(rejects), err)
	}
	if n := cap(fr.src.buf); n > max(minBufSize, DefaultMaxLineBytes+1) {
		t.Fatalf("buffer grew to %d bytes", n)
	}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// TestLineLimitGrowsBuffer checks that lines longer than the initial
// buffer but within a raised limit are read whole.
func TestLineLimitGrowsBuffer(t *testing.T) {
	uid := strings.Repeat("u", 200)
	pad := strings.Repeat(" ", 600<<10)
	line := `{"ts":1704103200,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","uid":"` + uid + `"` + pad + "}\n"
	v := NewValidator(Limits{MinTime: time.Unix(0, 0), MaxDuration: time.Hour, MaxBytes: 1, MaxPkts: 1, MaxStringLen: 1000}, func() time.Time { return testNow })
	got, rejects, _, err := readAll(t, "f", strings.NewReader(line+line), ReaderOptions{MaxLineBytes: 1 << 20, Validator: v})
	if err != nil || len(got) != 2 || len(rejects) != 0 || got[1].UID != uid {
		t.Fatalf("%d records, rejects %v, %v", len(got), rejects, err)
	}
}

func TestTruncatedGzip(t *testing.T) {
	data := zeekTSV(synthConns(5000))
	gz := gzipBytes(data)
	for _, cut := range []int{len(gz) / 3, len(gz) / 2, len(gz) - 10, len(gz) - 1} {
		got, _, _, err := readAll(t, "conn.log.gz", bytes.NewReader(gz[:cut]), ReaderOptions{})
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut at %d: err = %v, want io.ErrUnexpectedEOF", cut, err)
		}
		if !strings.Contains(err.Error(), "conn.log.gz at line") || !strings.Contains(err.Error(), fmt.Sprintf("(%d events read)", len(got))) {
			t.Errorf("error %q does not say how far the file was read", err)
		}
		if cut <= len(gz)/2 && len(got) >= 5000 {
			t.Errorf("cut at %d of %d: %d records", cut, len(gz), len(got))
		}
	}
	if _, err := NewFileReader("bad.gz", bytes.NewReader([]byte{0x1f, 0x8b, 1, 2, 3}), ReaderOptions{}); err == nil {
		t.Error("broken gzip header accepted")
	}
}

var errBoom = errors.New("disk on fire")

func TestReadError(t *testing.T) {
	data := zeekTSV(synthConns(100))
	r := io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotest.ErrReader(errBoom))
	got, _, _, err := readAll(t, "x", r, ReaderOptions{})
	if !errors.Is(err, errBoom) || len(got) == 0 {
		t.Fatalf("%d records, err %v", len(got), err)
	}
	// A reader that never makes progress must not hang Read.
	_, _, _, err = readAll(t, "x", zeroReader{}, ReaderOptions{})
	if !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestDetect(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "empty",
		"\n\n  ":             "empty",
		"#separator \\x09\n": "zeek-tsv",
		"#fields\tts\n":      "zeek-tsv",
		"[]":                 "json-array",
		" \n [ {} ]":         "json-array",
		"{}":                 "ndjson",
		"\xef\xbb\xbf{}":     "ndjson",
		"\xef\xbb\xbf[]":     "json-array",
		"garbage":            "ndjson",
		string(gzipBytes([]byte("#fields\tts\n"))): "zeek-tsv",
		string(gzipBytes([]byte("[{}]"))):          "json-array",
	} {
		fr, err := NewFileReader("x", strings.NewReader(in), ReaderOptions{})
		if err != nil || fr.Format() != want {
			t.Errorf("format of %q = %v, %v; want %s", in, fr.Format(), err, want)
		}
	}
}

func TestSensorAndDefaultValidator(t *testing.T) {
	future := time.Now().Add(48 * time.Hour).Unix()
	in := fmt.Sprintf("{\"ts\":%d,\"id.orig_h\":\"10.0.0.1\",\"id.resp_h\":\"10.0.0.2\"}\n{\"ts\":1704103200,\"id.orig_h\":\"10.0.0.1\",\"id.resp_h\":\"10.0.0.2\"}\n", future)
	fr, err := NewFileReader("x", strings.NewReader(in), ReaderOptions{Sensor: "edge-7"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := fr.Read(nil)
	if err != io.EOF && err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Sensor != "edge-7" || fr.Stats().Rejected != 1 {
		t.Fatalf("got %d records (%+v), stats %+v", len(got), got, fr.Stats())
	}
}

// TestManyColumns covers headers too wide for the fast TSV path.
func TestManyColumns(t *testing.T) {
	var hdr, row strings.Builder
	hdr.WriteString("#fields\tts\tid.orig_h\tid.resp_h")
	row.WriteString("1704103200.000001\t10.0.0.1\t10.0.0.2")
	for i := range 80 {
		fmt.Fprintf(&hdr, "\textra%d", i)
		row.WriteString("\tv")
	}
	in := hdr.String() + "\n" + row.String() + "\n" + row.String() + "\tone-too-many\n"
	got, rejects, _, err := readAll(t, "x", strings.NewReader(in), ReaderOptions{})
	if err != nil || len(got) != 1 || got[0].TS != 1704103200000001 || len(rejects) != 1 || !errors.Is(rejects[0], ErrSyntax) {
		t.Fatalf("%d records, rejects %v, %v", len(got), rejects, err)
	}
}

func TestExpandPaths(t *testing.T) {
	dir := t.TempDir()
	gz := gzipBytes([]byte("#fields\tts\tid.orig_h\tid.resp_h\n1704103200\t10.0.0.1\t10.0.0.2\n"))
	plain := []byte("#fields\tts\tid.orig_h\tid.resp_h\n1704106800\t10.0.0.1\t10.0.0.3\n")
	files := map[string][]byte{
		"2024-01-01/conn.10:00:00-11:00:00.log.gz": gz,
		"2024-01-01/conn.11:00:00-12:00:00.log":    plain, // rotated but not compressed
		"2024-01-01/.hidden.log":                   plain,
		"2024-01-01/.git/objects":                  plain,
		"2024-01-02/conn.2024-01-02-10-00-00.log":  plain,
		"top.json": []byte(`{"ts":1704103200,"src_ip":"10.0.0.1","dest_ip":"10.0.0.2"}`),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "top.json"), filepath.Join(dir, "2024-01-02", "link.json")); err != nil {
		t.Fatal(err)
	}
	j := func(p ...string) string { return filepath.Join(append([]string{dir}, p...)...) }

	got, err := ExpandPaths([]string{j("top.json"), dir, j("2024-01-01", "conn.*.log*"), "-"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-",
		j("2024-01-01", "conn.10:00:00-11:00:00.log.gz"), j("2024-01-01", "conn.11:00:00-12:00:00.log"),
		j("2024-01-02", "conn.2024-01-02-10-00-00.log"), j("2024-01-02", "link.json"), j("top.json")}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("ExpandPaths =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, name := range got[1:] {
		fr, c, err := OpenFile(name, ReaderOptions{Validator: testValidator()})
		if err != nil {
			t.Fatal(err)
		}
		conns, err := fr.Read(nil)
		c.Close()
		if (err != nil && err != io.EOF) || len(conns) != 1 {
			t.Errorf("%s: %d records, %v", name, len(conns), err)
		}
	}

	for _, bad := range []string{j("missing.log"), j("*.nomatch"), j("2024-01-0[")} {
		if _, err := ExpandPaths([]string{j("top.json"), bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ExpandPaths(%q) error = %v, want one naming it", bad, err)
		}
	}
	empty := j("empty")
	os.Mkdir(empty, 0o755)
	if _, err := ExpandPaths([]string{empty}); !errors.Is(err, ErrNoFiles) {
		t.Errorf("empty directory: err = %v, want ErrNoFiles", err)
	}
	if _, _, err := OpenFile(j("missing.log"), ReaderOptions{}); err == nil {
		t.Error("OpenFile of a missing file succeeded")
	}
	if _, _, err := OpenFile(dir, ReaderOptions{}); err == nil {
		t.Error("OpenFile of a directory succeeded")
	}
}

func TestOpenStdin(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"ts":1704103200,"src_ip":"10.0.0.1","dest_ip":"10.0.0.2","dest_port":445}` + "\n")
	f.Seek(0, io.SeekStart)
	old := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = old }()
	fr, c, err := OpenFile("-", ReaderOptions{Validator: testValidator()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := fr.Read(nil)
	if (err != nil && err != io.EOF) || len(got) != 1 || got[0].RespP != 445 {
		t.Fatalf("%d records, %v", len(got), err)
	}
}

// TestDemoSample checks that the shared demo sample reads cleanly and that
// its TSV and JSON forms hold the same records.
func TestDemoSample(t *testing.T) {
	read := func(name string) []Conn {
		fr, c, err := OpenFile(name, ReaderOptions{Validator: testValidator()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var all []Conn
		buf := make([]Conn, 0, 64)
		for {
			buf, err = fr.Read(buf[:0])
			all = append(all, buf...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if s := fr.Stats(); s.Rejected != 0 {
			t.Fatalf("%s: %d lines rejected", name, s.Rejected)
		}
		return all
	}
	tsv := read("../testdata/zeek/conn.sample.log")
	js := read("../testdata/zeek/conn.sample.json")
	if len(tsv) < 200 || len(tsv) != len(js) {
		t.Fatalf("%d TSV records, %d JSON records", len(tsv), len(js))
	}
	for i := range tsv {
		if tsv[i] != js[i] {
			t.Fatalf("record %d differs:\n tsv %s\njson %s", i, render(&tsv[i]), render(&js[i]))
		}
	}
}

// TestSeedSamples pins the facts of the reference samples that later
// stages depend on (see shared/seed-samples/README.md).
func TestSeedSamples(t *testing.T) {
	read := func(name string) []Conn {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got, rejects, _, err := readAll(t, name, f, ReaderOptions{})
		if err != nil || len(rejects) > 0 {
			t.Fatalf("%s: %v, rejects %v", name, err, rejects)
		}
		return got
	}
	lateral := read("testdata/seed/01-lateral-movement.json")
	dsts, ports := map[string]bool{}, map[uint16]bool{}
	for _, c := range lateral {
		if c.OrigH.String() != "10.0.0.5" {
			t.Errorf("lateral source %s", c.OrigH)
		}
		dsts[c.RespH.String()] = true
		ports[c.RespP] = true
	}
	if len(lateral) != 40 || len(dsts) != 40 || len(ports) != 24 {
		t.Errorf("lateral: %d events, %d destinations, %d ports; want 40, 40, 24", len(lateral), len(dsts), len(ports))
	}
	if first, last := lateral[0].Time(), lateral[39].Time(); first != time.Date(2025, 1, 29, 10, 15, 1, 0, time.UTC) || last.Sub(first) != 39*time.Second {
		t.Errorf("lateral spans %s to %s", first, last)
	}

	exfil := read("testdata/seed/07-large-volume-exfiltration.json")
	var out, staged uint64
	for _, c := range exfil {
		if c.OrigH.String() != "10.100.50.25" {
			continue
		}
		out += c.OrigBytes
		staged += c.RespBytes
		if c.OrigBytes > 0 && c.Service != "https" || c.RespBytes > 0 && c.Service != "smb" {
			t.Errorf("exfil record %s", render(&c))
		}
	}
	if len(exfil) != 10 || out != 2_200_000_000 || staged != 1_100_000_000 {
		t.Errorf("exfil: %d events, %d bytes out, %d staged; want 10, 2.2 GB, 1.1 GB", len(exfil), out, staged)
	}
}
