package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ndr-go/ndr/internal/chtest"
)

// uploadLog writes a Zeek conn.log: 10.0.0.5 uploads 20 MB every 10
// minutes for the 48 hours before the current hour.
func uploadLog(t *testing.T) string {
	t.Helper()
	end := time.Now().UTC().Truncate(time.Hour)
	var b strings.Builder
	b.WriteString(zeekHeader)
	for m := 48 * 60; m > 0; m -= 10 {
		ts := end.Add(-time.Duration(m) * time.Minute)
		fmt.Fprintf(&b, "%d.000000\tC%d\t10.0.0.5\t50000\t198.51.100.7\t443\ttcp\tssl\t1.0\t20000000\t5000\tSF\t-\t-\t0\tShADadFf\t10\t20000400\t10\t5400\t-\n", ts.Unix(), m)
	}
	path := filepath.Join(t.TempDir(), "conn.log")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// replay stores two days (learning baselines in event time as it goes),
// then `ndr retrain` fits them from ClickHouse's aggregates and stores
// versions 1 and 2.
func TestRetrainAfterReplay(t *testing.T) {
	dsn := chtest.NewDatabase(t)
	code, out, errOut := runCmd(t.Context(), "replay", "--clickhouse", dsn, uploadLog(t))
	if code != exitOK || !strings.Contains(out, "baselines: 4 event-time fits") {
		t.Fatalf("replay exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t.Context(), "retrain", "--clickhouse", dsn, "--window", "3d", "--backfill")
	if code != exitOK || !strings.Contains(out, "backfilled 0 conn rows") || !strings.Contains(out, "version 1, 1 hosts fitted") {
		t.Fatalf("retrain exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t.Context(), "retrain", "--clickhouse", dsn, "--window", "72h", "--backfill", "--local-nets", "10.0.0.0/24")
	if code != exitOK || !strings.Contains(out, "backfill already done") || !strings.Contains(out, "version 2, 1 hosts fitted (1 internal hosts seen, 1 destinations)") {
		t.Fatalf("second retrain exit %d\n%s\n%s", code, out, errOut)
	}
	st := openTestStore(t, dsn)
	vs, err := st.BaselineVersions(t.Context())
	if err != nil || len(vs) != 2 {
		t.Fatalf("versions %+v, %v", vs, err)
	}
	snap, err := st.LoadLatestBaseline(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n, _, ok := snap.Prevalence(netip.MustParseAddr("198.51.100.7")); !ok || n != 1 {
		t.Errorf("prevalence of 198.51.100.7: %d, %v", n, ok)
	}
}

func TestRetrainUsage(t *testing.T) {
	for _, args := range [][]string{
		{"retrain", "--window", "30m"},
		{"retrain", "--window", "1.5d"},
		{"retrain", "--keep", "0"},
		{"retrain", "--local-nets", "10.0.0.0/33"},
		{"retrain", "extra"},
	} {
		if code, _, errOut := runCmd(t.Context(), args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, exitUsage, errOut)
		}
	}
	f := func(in, want string) {
		t.Helper()
		var d daysDuration
		if err := d.Set(in); err != nil || d.String() != want {
			t.Errorf("daysDuration %q: %q, %v; want %q", in, d.String(), err, want)
		}
	}
	f("30d", "30d")
	f("720h", "30d")
	f("36h", "36h0m0s")
}
