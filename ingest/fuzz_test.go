package ingest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// The fuzz targets feed arbitrary bytes to the readers and assert what must
// hold for any input: no panic, no hang, every record passes the
// Validator, its strings are printable, and positions are sane. Each
// target forces one format by prefixing the input so that the fuzzer
// spends its time inside that parser.

func addSeeds(f *testing.F, globs ...string) {
	for _, g := range globs {
		names, _ := filepath.Glob(g)
		for _, n := range names {
			if b, err := os.ReadFile(n); err == nil && len(b) < 64<<10 {
				f.Add(b)
			}
		}
	}
}

func checkReader(t *testing.T, data []byte) {
	v := testValidator()
	opts := ReaderOptions{Validator: v, Sensor: "fz", MaxLineBytes: 4096}
	var rejects int
	opts.OnReject = func(e *LineError) {
		rejects++
		if e.Line < 1 || e.Err == nil || e.File != "fuzz" {
			t.Fatalf("bad LineError %+v", e)
		}
		_ = e.Error()
	}
	for _, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.HalfReader,
	} {
		rejects = 0
		fr, err := NewFileReader("fuzz", wrap(bytes.NewReader(data)), opts)
		if err != nil {
			return // a broken gzip header
		}
		buf := make([]Conn, 0, 5)
		events := 0
		for range len(data) + 10 {
			buf, err = fr.Read(buf[:0])
			for i := range buf {
				c := &buf[i]
				if err := v.Check(c); err != nil {
					t.Fatalf("emitted an invalid record: %v: %s", err, render(c))
				}
				for _, s := range []string{c.UID, c.Service, c.History} {
					if !printable([]byte(s)) {
						t.Fatalf("emitted an unprintable string %q", s)
					}
				}
				if c.OrigH.Is4In6() || c.RespH.Is4In6() {
					t.Fatalf("emitted an IPv4-mapped address: %s", render(c))
				}
				if c.Sensor != "fz" {
					t.Fatalf("sensor %q", c.Sensor)
				}
			}
			events += len(buf)
			if err != nil {
				break
			}
		}
		if err == nil {
			t.Fatal("Read did not finish")
		}
		if err != io.EOF && errors.Is(err, io.EOF) {
			t.Fatalf("file error wraps io.EOF: %v", err)
		}
		s := fr.Stats()
		if s.Events != events || s.Rejected != rejects {
			t.Fatalf("stats %+v, counted %d events %d rejects", s, events, rejects)
		}
	}
}

func FuzzZeekTSV(f *testing.F) {
	addSeeds(f, "testdata/golden/tsv-*.log", "testdata/golden/dns-not-conn.log")
	f.Add([]byte("#separator \\x7c\n#fields|ts|id.orig_h|id.resp_h\n1704103200|10.0.0.1|10.0.0.2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !bytes.HasPrefix(data, []byte("#")) {
			data = append([]byte("#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tduration\torig_bytes\thistory\n"), data...)
		}
		checkReader(t, data)
	})
}

func FuzzZeekJSON(f *testing.F) {
	addSeeds(f, "testdata/golden/zeek.json", "testdata/golden/bom-crlf-noeol.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if i := bytes.IndexFunc(data, func(r rune) bool { return r != ' ' && r != '\n' && r != '\t' && r != '\r' }); i >= 0 && (data[i] == '#' || data[i] == '[') {
			data = append([]byte("{}\n"), data...)
		}
		checkReader(t, data)
	})
}

func FuzzSimpleJSON(f *testing.F) {
	addSeeds(f, "testdata/seed/*.json", "testdata/golden/simple*.json*", "testdata/golden/*array*.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReader(t, data)
	})
}

// FuzzGzip reads compressed inputs, truncated wherever the fuzzer likes.
func FuzzGzip(f *testing.F) {
	for _, s := range []string{"testdata/golden/tsv-standard.log", "testdata/golden/zeek.json"} {
		b, _ := os.ReadFile(s)
		gz := gzipBytes(b)
		f.Add(gz, uint16(len(gz)))
		f.Add(gz, uint16(len(gz)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		if int(cut) < len(data) {
			data = data[:cut]
		}
		checkReader(t, data)
	})
}
