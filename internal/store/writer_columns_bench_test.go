package store

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"

	"github.com/ndr-go/ndr/ingest"
)

// connTypes are ndr.conn's column types in connColumns order (0001_conn.sql).
var connTypes = []column.Type{"DateTime64(6, 'UTC')", "String", "IPv6", "UInt16", "IPv6", "UInt16",
	"LowCardinality(String)", "LowCardinality(String)", "Float64", "UInt64", "UInt64", "LowCardinality(String)",
	"Nullable(Bool)", "Nullable(Bool)", "UInt64", "LowCardinality(String)", "UInt64", "UInt64", "UInt64", "UInt64", "LowCardinality(String)"}

// BenchmarkConnColumnsAppend is the client side of a ConnWriter INSERT
// without a server: clickhouse-go converting one 100,000-row buffer's
// columns into its own (batch.Column(i).Append), which was most of the
// INSERT's share of serve's CPU.
func BenchmarkConnColumnsAppend(b *testing.B) {
	batch := &ingest.Batch{Sensor: "zeek-a", Stream: "s"}
	ts := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixMicro()
	svc := []string{"ssl", "dns", "http", "", "ntp"}
	for i := range 1000 {
		batch.Conns = append(batch.Conns, ingest.Conn{
			TS: ts + int64(i)*1000, UID: "CAbcdefghijklmnopq",
			OrigH: netip.AddrFrom4([4]byte{10, 10, byte(i >> 8), byte(i)}), RespH: netip.AddrFrom4([4]byte{198, 18, byte(i >> 4), 7}),
			OrigP: uint16(49152 + i), RespP: 443, Proto: ingest.TCP, Service: svc[i%5], Duration: 1500 * time.Millisecond,
			OrigBytes: 900, RespBytes: 14000, ConnState: ingest.SF, LocalOrig: ingest.True, LocalResp: ingest.False,
			History: "ShADadFf", OrigPkts: 10, OrigIPBytes: 1400, RespPkts: 14, RespIPBytes: 14800, Sensor: "zeek-a",
		})
	}
	buf := newConnBuffer()
	for range 100 {
		batch.Seq++
		buf.add(batch, nil, 100_000)
	}
	cols := buf.columns()
	b.ReportAllocs()
	for b.Loop() {
		for i, t := range connTypes {
			c, err := t.Column("x", &column.ServerContext{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Append(cols[i]); err != nil {
				b.Fatal(i, err)
			}
		}
	}
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "rows/s")
}
