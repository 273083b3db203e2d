package store

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

// BenchmarkConnBufferAdd is the ConnWriter's append: 1,000-record batches
// copied into insert columns up to a 100,000-row flush, then reset, as
// each INSERT does. No ClickHouse: BenchmarkConnWriter covers the INSERT.
func BenchmarkConnBufferAdd(b *testing.B) {
	batch := &ingest.Batch{Sensor: "zeek-a", Stream: "s"}
	ts := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixMicro()
	for i := range 1000 {
		batch.Conns = append(batch.Conns, ingest.Conn{
			TS: ts + int64(i)*1000, UID: "CAbcdefghijklmnopq",
			OrigH: netip.AddrFrom4([4]byte{10, 10, byte(i >> 8), byte(i)}), RespH: netip.AddrFrom4([4]byte{198, 18, byte(i >> 4), 7}),
			OrigP: uint16(49152 + i), RespP: 443, Proto: ingest.TCP, Service: "ssl", Duration: 1500 * time.Millisecond,
			OrigBytes: 900, RespBytes: 14000, ConnState: ingest.SF, LocalOrig: ingest.True, LocalResp: ingest.False,
			History: "ShADadFf", OrigPkts: 10, OrigIPBytes: 1400, RespPkts: 14, RespIPBytes: 14800, Sensor: "zeek-a",
		})
	}
	buf := newConnBuffer()
	b.ReportAllocs()
	for b.Loop() {
		for range 100 {
			batch.Seq++
			buf.add(batch, nil, 100_000)
		}
		if len(buf.columns()) == 0 || buf.rows() != 100_000 {
			b.Fatalf("%d rows buffered", buf.rows())
		}
		buf.reset()
	}
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "rows/s")
}
