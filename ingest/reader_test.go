package ingest

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// testNow is the fixed clock of the tests' validator, so that future-time
// limits decide the same way on every run.
var testNow = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func testValidator() *Validator {
	return NewValidator(DefaultLimits(), func() time.Time { return testNow })
}

// readAll reads a whole input with a small buffer, so that batching is
// exercised, and returns the records, the rejections and the final error.
func readAll(t testing.TB, name string, r io.Reader, opts ReaderOptions) ([]Conn, []*LineError, *FileReader, error) {
	t.Helper()
	var rejects []*LineError
	opts.OnReject = func(e *LineError) { rejects = append(rejects, e) }
	if opts.Validator == nil {
		opts.Validator = testValidator()
	}
	fr, err := NewFileReader(name, r, opts)
	if err != nil {
		return nil, rejects, nil, err
	}
	var all []Conn
	buf := make([]Conn, 0, 3)
	for {
		buf, err = fr.Read(buf[:0])
		all = append(all, buf...)
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return all, rejects, fr, err
		}
	}
}

// render prints a Conn with every field, one line, for golden files.
func render(c *Conn) string {
	return fmt.Sprintf("ts=%s uid=%q orig=%s resp=%s proto=%s service=%q dur=%s ob=%d rb=%d state=%s lo=%s lr=%s missed=%d hist=%q opk=%d oipb=%d rpk=%d ripb=%d sensor=%q",
		c.Time().Format("2006-01-02T15:04:05.000000Z"), c.UID,
		netipPort(c.OrigH.String(), c.OrigP), netipPort(c.RespH.String(), c.RespP),
		c.Proto, c.Service, c.Duration, c.OrigBytes, c.RespBytes, c.ConnState, c.LocalOrig, c.LocalResp,
		c.MissedBytes, c.History, c.OrigPkts, c.OrigIPBytes, c.RespPkts, c.RespIPBytes, c.Sensor)
}

func netipPort(a string, p uint16) string {
	if strings.Contains(a, ":") {
		return fmt.Sprintf("[%s]:%d", a, p)
	}
	return fmt.Sprintf("%s:%d", a, p)
}

// TestGolden reads every input in testdata/golden and compares the records,
// rejections, file error and counts with the .golden file beside it.
// Refresh with: go test ./ingest/ -run TestGolden -update
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*")
	if err != nil {
		t.Fatal(err)
	}
	seeds, _ := filepath.Glob("testdata/seed/*.json")
	inputs = append(inputs, seeds...)
	n := 0
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden") {
			continue
		}
		n++
		t.Run(filepath.Base(in), func(t *testing.T) {
			got := goldenOutput(t, in)
			want := filepath.Join("testdata/golden", filepath.Base(in)+".golden")
			if *update {
				if err := os.WriteFile(want, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(b) {
				t.Errorf("output differs from %s (run with -update after checking the diff):\n%s", want, diffLines(string(b), got))
			}
		})
	}
	if n < 10 {
		t.Fatalf("only %d golden inputs found", n)
	}
}

func goldenOutput(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	name := filepath.ToSlash(path)
	conns, rejects, fr, err := readAll(t, name, f, ReaderOptions{Sensor: "s1"})
	var sb strings.Builder
	if fr != nil {
		fmt.Fprintf(&sb, "format %s\n", fr.Format())
	}
	for i := range conns {
		sb.WriteString(render(&conns[i]))
		sb.WriteByte('\n')
	}
	for _, e := range rejects {
		fmt.Fprintf(&sb, "reject %s [field %q]\n", e, FieldOf(e))
	}
	if err != nil {
		fmt.Fprintf(&sb, "error %s\n", err)
	}
	if fr != nil {
		s := fr.Stats()
		fmt.Fprintf(&sb, "stats lines=%d events=%d rejected=%d bytes=%d\n", s.Lines, s.Events, s.Rejected, s.Bytes)
	}
	return sb.String()
}

// diffLines shows the first differing lines; enough to see what changed.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var sb strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			fmt.Fprintf(&sb, "line %d:\n- %s\n+ %s\n", i+1, a, b)
		}
	}
	return sb.String()
}
