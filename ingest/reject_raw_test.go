package ingest

import (
	"strings"
	"testing"
)

// TestLineErrorRaw: a rejected line comes with its bytes as read, so that
// it can be kept (ndr.rejected) instead of only reported.
func TestLineErrorRaw(t *testing.T) {
	bad := `{"ts":1772442000.5,"uid":"Cbad","id.orig_h":"10.0.0.1","id.orig_p":1,"id.resp_h":"not-an-ip","id.resp_p":443,"proto":"tcp"}`
	good := `{"ts":1772442000.5,"uid":"Cok","id.orig_h":"10.0.0.1","id.orig_p":1,"id.resp_h":"10.0.0.2","id.resp_p":443,"proto":"tcp"}`
	long := `{"ts":1772442000.5,"uid":"` + strings.Repeat("x", 5000) + `"}`
	in := good + "\n" + bad + "\r\n" + long + "\n" + good + "\n"
	conns, rejects, _, err := readAll(t, "f.json", strings.NewReader(in), ReaderOptions{MaxLineBytes: 4096})
	if err != nil || len(conns) != 2 || len(rejects) != 2 {
		t.Fatalf("%d records, %d rejects, %v", len(conns), len(rejects), err)
	}
	if r := rejects[0]; r.Line != 2 || strings.TrimSuffix(string(r.Raw), "\r") != bad {
		t.Errorf("reject at line %d holds %q, want the line as read", r.Line, r.Raw)
	}
	if r := rejects[1]; r.Line != 3 || r.Raw != nil {
		t.Errorf("over-long line: line %d, raw of %d bytes, want none", r.Line, len(r.Raw))
	}
}
