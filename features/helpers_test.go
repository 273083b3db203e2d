package features

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/ndr-go/ndr/ingest"
)

// collector is an Emitter that copies every output into plain Go values,
// so tests can inspect them after the engine released the records.
type collector struct {
	outs    []collected
	signals []Signal
	// keep, when set, retains the records (the test must release them).
	keep    bool
	records []arrow.Record
}

type collected struct {
	end       int64
	watermark int64
	hosts     []map[string]string
	pairs     []map[string]string
	nSignals  int
	windows   []WindowBounds
}

func (c *collector) Emit(_ context.Context, out *WindowOutput) error {
	if out.Hosts == nil || out.Pairs == nil {
		return fmt.Errorf("nil record in output ending %d", out.End)
	}
	c.outs = append(c.outs, collected{
		end: out.End, watermark: out.Watermark,
		hosts: rowsOf(out.Hosts), pairs: rowsOf(out.Pairs), nSignals: len(out.Signals), windows: out.Windows,
	})
	c.signals = append(c.signals, out.Signals...)
	if c.keep {
		out.Hosts.Retain()
		out.Pairs.Retain()
		c.records = append(c.records, out.Hosts, out.Pairs)
	}
	return nil
}

// rowsOf renders each row as column name -> ValueStr.
func rowsOf(r arrow.Record) []map[string]string {
	rows := make([]map[string]string, r.NumRows())
	for i := range rows {
		m := make(map[string]string, r.NumCols())
		for j, col := range r.Columns() {
			name := r.Schema().Field(j).Name
			if col.IsNull(i) {
				m[name] = "null"
				continue
			}
			if fsb, ok := col.(*array.FixedSizeBinary); ok {
				m[name] = netip.AddrFrom16([16]byte(fsb.Value(i))).Unmap().String()
				continue
			}
			m[name] = col.ValueStr(i)
		}
		rows[i] = m
	}
	return rows
}

// transcript renders every output as text lines, for comparing runs.
func (c *collector) transcript() []string {
	var out []string
	for _, o := range c.outs {
		out = append(out, fmt.Sprintf("tick %s", time.UnixMicro(o.end).UTC().Format(time.RFC3339)))
		for _, rows := range [][]map[string]string{o.hosts, o.pairs} {
			for _, r := range rows {
				out = append(out, renderRow(r))
			}
		}
	}
	for _, s := range c.signals {
		out = append(out, fmt.Sprintf("%+v", s))
	}
	return out
}

func renderRow(r map[string]string) string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sortStrings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s ", k, r[k])
	}
	return b.String()
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func (c *collector) of(typ SignalType, src string) []Signal {
	var out []Signal
	for _, s := range c.signals {
		if s.Type == typ && s.Src.String() == src {
			out = append(out, s)
		}
	}
	return out
}

func (c *collector) types(src string) map[SignalType]bool {
	m := map[SignalType]bool{}
	for _, s := range c.signals {
		if s.Src.String() == src {
			m[s.Type] = true
		}
	}
	return m
}

func (c *collector) release() {
	for _, r := range c.records {
		r.Release()
	}
	c.records = nil
}

// run feeds conns to a fresh engine with a checked allocator and flushes;
// the allocator must end at zero.
func run(t testing.TB, cfg Config, conns []ingest.Conn) (*collector, Stats) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	c := &collector{}
	e, err := NewEngine(cfg, c, nil, mem)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Process(context.Background(), conns); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tt, ok := t.(*testing.T); ok {
		mem.AssertSize(tt, 0)
	} else if n := mem.CurrentAlloc(); n != 0 {
		t.Fatalf("allocator holds %d bytes after Flush", n)
	}
	return c, e.Stats()
}

// readFile reads a reference sample with ingest's reader, validating
// against a fixed clock.
func readFile(t testing.TB, path string) []ingest.Conn {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	now := func() time.Time { return time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC) }
	r, err := ingest.NewFileReader(path, f, ingest.ReaderOptions{
		Sensor:    "test",
		Validator: ingest.NewValidator(ingest.DefaultLimits(), now),
		OnReject:  func(le *ingest.LineError) { t.Errorf("rejected: %v", le) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []ingest.Conn
	for {
		out, err = r.Read(out)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// conn builds a connection for tests.
func conn(ts time.Time, src, dst string, port uint16, out, in uint64) ingest.Conn {
	return ingest.Conn{
		TS: ts.UnixMicro(), OrigH: netip.MustParseAddr(src), RespH: netip.MustParseAddr(dst),
		OrigP: 50000, RespP: port, Proto: ingest.TCP, OrigBytes: out, RespBytes: in,
	}
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func us(v int64) string { return time.UnixMicro(v).UTC().Format("15:04:05") }
