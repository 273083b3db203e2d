package wire

import (
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ndr-go/ndr/ingest"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// BenchmarkDecodeBatch is the server's per-batch decode: protobuf
// unmarshal of a 5,000-event EventBatch, then DecodeBatch (mapping and
// validation) into a reused ingest.Batch.
func BenchmarkDecodeBatch(b *testing.B) {
	wire := benchBatch(b)
	v := ingest.NewValidator(ingest.DefaultLimits(), nil)
	var out ingest.Batch
	var rej []Rejection
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		msg := new(ndrv1.EventBatch)
		if err := proto.Unmarshal(wire, msg); err != nil {
			b.Fatal(err)
		}
		rej = DecodeBatch(msg, v, &out, rej[:0])
		if len(out.Conns) != benchEvents || len(rej) != 0 {
			b.Fatalf("decoded %d, rejected %d", len(out.Conns), len(rej))
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecodeFrame is the same decode as the server does it: the
// encoding straight into ingest.Conn (Frame.Unmarshal, sharing the
// stream's strings), then DecodeFrame.
func BenchmarkDecodeFrame(b *testing.B) {
	wire := benchBatch(b)
	v := ingest.NewValidator(ingest.DefaultLimits(), nil)
	var out ingest.Batch
	var f Frame
	f.UseStrings(NewStrings())
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Unmarshal(wire); err != nil {
			b.Fatal(err)
		}
		rej := DecodeFrame(&f, v, &out, nil)
		if len(out.Conns) != benchEvents || len(rej) != 0 {
			b.Fatalf("decoded %d, rejected %d", len(out.Conns), len(rej))
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "events/s")
}

const benchEvents = 5000

// benchBatch is the encoding of a 5,000-event batch.
func benchBatch(b *testing.B) []byte {
	const n = benchEvents
	in := ingest.Batch{Sensor: "zeek-a", Stream: "s", Seq: 1}
	ts := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixMicro()
	for i := range n {
		in.Conns = append(in.Conns, ingest.Conn{
			TS: ts + int64(i)*1000, UID: "CAbcdefghijklmnopq",
			OrigH: netip.AddrFrom4([4]byte{10, 10, byte(i >> 8), byte(i)}), RespH: netip.AddrFrom4([4]byte{198, 18, byte(i >> 4), 7}),
			OrigP: uint16(49152 + i%16000), RespP: 443, Proto: ingest.TCP, Service: "ssl", Duration: 1500 * time.Millisecond,
			OrigBytes: 900, RespBytes: 14000, ConnState: ingest.SF, LocalOrig: ingest.True, LocalResp: ingest.False,
			History: "ShADadFf", OrigPkts: 10, OrigIPBytes: 1400, RespPkts: 14, RespIPBytes: 14800,
		})
	}
	wire, err := proto.Marshal(EncodeBatch(&in))
	if err != nil {
		b.Fatal(err)
	}
	return wire
}
