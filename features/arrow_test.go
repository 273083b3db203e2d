package features

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// The schemas as the DDL team will mirror them: name, Arrow type,
// nullable. A change here must bump SchemaVersion.
var (
	wantHostFields = `window_start timestamp[us, tz=UTC] false
window_end timestamp[us, tz=UTC] false
window dictionary<values=utf8, indices=int8, ordered=false> false
host fixed_size_binary[16] false
connections uint32 false
failed_connections uint32 false
state_known_connections uint32 false
failed_ratio float64 true
distinct_ports uint32 false
distinct_internal_hosts uint32 false
privileged_ports uint32 false
privileged_services uint32 false
privileged_hosts uint32 false
max_hosts_one_port uint32 false
max_hosts_port uint16 true
bytes_out uint64 false
bytes_in uint64 false
bytes_out_external uint64 false
staging_transfers uint32 false
staging_bytes uint64 false
large_external_destinations uint32 false
large_external_bytes uint64 false
first_seen timestamp[us, tz=UTC] false
last_seen timestamp[us, tz=UTC] false
sets_saturated bool false
connections_z float64 true
connections_baseline uint8 true
bytes_out_external_z float64 true
bytes_out_external_baseline uint8 true`
	wantPairFields = `window_start timestamp[us, tz=UTC] false
window_end timestamp[us, tz=UTC] false
window dictionary<values=utf8, indices=int8, ordered=false> false
src fixed_size_binary[16] false
dst fixed_size_binary[16] false
dst_port uint16 false
dst_internal bool false
connections uint32 false
gap_mean_s float64 true
gap_sd_s float64 true
gap_cv float64 true
bytes_out uint64 false
bytes_in uint64 false
dst_internal_sources uint32 false
dst_internal_sources_capped bool false
first_seen timestamp[us, tz=UTC] false
last_seen timestamp[us, tz=UTC] false`
)

func fieldsOf(s *arrow.Schema) string {
	var b strings.Builder
	for i, f := range s.Fields() {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s %s %v", f.Name, f.Type, f.Nullable)
	}
	return b.String()
}

func TestSchemas(t *testing.T) {
	for _, tc := range []struct {
		schema *arrow.Schema
		name   string
		fields string
	}{
		{HostSchema(), HostSchemaName, wantHostFields},
		{PairSchema(), PairSchemaName, wantPairFields},
	} {
		if got := fieldsOf(tc.schema); got != tc.fields {
			t.Errorf("%s fields:\n%s\nwant:\n%s", tc.name, got, tc.fields)
		}
		md := tc.schema.Metadata()
		if v, ok := md.GetValue(MetaSchema); !ok || v != tc.name {
			t.Errorf("%s: %s = %q", tc.name, MetaSchema, v)
		}
		if v, ok := md.GetValue(MetaSchemaVersion); !ok || v != "1" {
			t.Errorf("%s: %s = %q", tc.name, MetaSchemaVersion, v)
		}
	}
}

// TestRecords checks the emitted records against their schemas and known
// values, with records retained past Emit and released by the test: the
// checked allocator must end at zero.
func TestRecords(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	c := &collector{keep: true}
	defer c.release()
	e, err := NewEngine(DefaultConfig(), c, nil, mem)
	if err != nil {
		t.Fatal(err)
	}
	conns := readFile(t, "testdata/reference/07-large-volume-exfiltration.json")
	start := at("2026-02-06T10:30:00Z")
	for i := range 6 { // and a beacon, for pair rows
		conns = append(conns, conn(start.Add(time.Duration(i)*time.Minute), "10.100.50.25", "203.0.113.99", 8443, 235, 1420))
	}
	if err := e.Process(context.Background(), conns); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(c.records) == 0 {
		t.Fatal("no records")
	}
	for i, r := range c.records {
		want := HostSchema()
		if i%2 == 1 {
			want = PairSchema()
		}
		if !r.Schema().Equal(want) || !r.Schema().Metadata().Equal(want.Metadata()) {
			t.Fatalf("record %d schema %s", i, r.Schema())
		}
		for j, col := range r.Columns() {
			if col.Len() != int(r.NumRows()) {
				t.Fatalf("record %d column %d: %d values for %d rows", i, j, col.Len(), r.NumRows())
			}
		}
	}

	// The 5-minute host row [10:20, 10:25) of 10.100.50.25.
	var found bool
	exfil := keyOf(netip.MustParseAddr("10.100.50.25"))
	for i := 0; i < len(c.records); i += 2 {
		r := c.records[i]
		host := r.Column(hcHost).(*array.FixedSizeBinary)
		win := r.Column(hcWindow).(*array.Dictionary)
		names := win.Dictionary().(*array.String)
		for row := range int(r.NumRows()) {
			if string(host.Value(row)) != string(exfil[:]) ||
				names.Value(win.GetValueIndex(row)) != "5m0s" ||
				r.Column(hcStart).(*array.Timestamp).Value(row) != arrow.Timestamp(at("2026-02-06T10:20:00Z").UnixMicro()) {
				continue
			}
			found = true
			if got := r.Column(hcBytesOutExt).(*array.Uint64).Value(row); got != 2_050_000_000 {
				t.Errorf("bytes_out_external %d", got)
			}
			if got := r.Column(hcConns).(*array.Uint32).Value(row); got != 5 {
				t.Errorf("connections %d", got)
			}
			if got := r.Column(hcLarge).(*array.Uint32).Value(row); got != 5 {
				t.Errorf("large_external_destinations %d", got)
			}
			z := r.Column(hcBytesZ).(*array.Float64)
			if z.IsNull(row) || z.Value(row) != 80 {
				t.Errorf("bytes_out_external_z %v", z.ValueStr(row))
			}
			if r.Column(hcBytesBase).(*array.Uint8).Value(row) != 0 {
				t.Error("bytes_out_external_baseline: want 0 (prior)")
			}
			if !r.Column(hcConnZ).IsNull(row) {
				t.Error("connections_z set on a row that is not CONNECTION_SPIKE's window")
			}
			if !r.Column(hcMaxPort).IsNull(row) {
				t.Error("max_hosts_port set without internal destinations")
			}
			if !r.Column(hcFailedRatio).IsNull(row) {
				t.Error("failed_ratio set without a known conn_state")
			}
		}
	}
	if !found {
		t.Error("no 5-minute row [10:20, 10:25) for 10.100.50.25")
	}

	// A beacon row: six connections a minute apart, gaps 60 s, CV 0.
	found = false
	for i := 1; i < len(c.records); i += 2 {
		r := c.records[i]
		win := r.Column(pcWindow).(*array.Dictionary)
		names := win.Dictionary().(*array.String)
		for row := range int(r.NumRows()) {
			if names.Value(win.GetValueIndex(row)) != "10m0s" || r.Column(pcConns).(*array.Uint32).Value(row) != 6 {
				continue
			}
			found = true
			if got := r.Column(pcGapMean).(*array.Float64).Value(row); got != 60 {
				t.Errorf("gap_mean_s %g", got)
			}
			if got := r.Column(pcGapCV).(*array.Float64).Value(row); got != 0 {
				t.Errorf("gap_cv %g", got)
			}
			if got := r.Column(pcSources).(*array.Uint32).Value(row); got != 1 {
				t.Errorf("dst_internal_sources %d", got)
			}
			if got := r.Column(pcPort).(*array.Uint16).Value(row); got != 8443 {
				t.Errorf("dst_port %d", got)
			}
			if got := r.Column(pcBytesIn).(*array.Uint64).Value(row); got != 6*1420 {
				t.Errorf("bytes_in %d", got)
			}
		}
	}
	if !found {
		t.Error("no 10-minute pair row with the six beacon connections")
	}
}

// TestRecordsReleasedWithoutRetain: an emitter that keeps nothing leaves
// the allocator at zero after Flush, however many windows were emitted.
func TestRecordsReleasedWithoutRetain(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	n := 0
	e, err := NewEngine(DefaultConfig(), EmitterFunc(func(_ context.Context, out *WindowOutput) error {
		n++
		if out.Hosts.NumRows() == 0 && out.Pairs.NumRows() == 0 && len(out.Signals) == 0 {
			return fmt.Errorf("empty output emitted at %d", out.End)
		}
		return nil
	}), nil, mem)
	if err != nil {
		t.Fatal(err)
	}
	conns := streamWithAttacks(3, 2000)
	if err := e.Process(context.Background(), conns); err != nil {
		t.Fatal(err)
	}
	if mem.CurrentAlloc() == 0 {
		t.Error("no Arrow memory in use mid-stream: is the allocator used at all?")
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("nothing emitted")
	}
}
