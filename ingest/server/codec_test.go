package server

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/wire"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// TestCodecKeepsRefusedEventBytes: through gRPC, batches decode with
// wire.Frame, and a refused event reaches the RejectSink as the bytes the
// sender sent, unknown fields included; the other services keep working
// with the proto codec.
func TestCodecKeepsRefusedEventBytes(t *testing.T) {
	c := ingest.Conn{
		TS: testNow().Add(-time.Hour).UnixMicro(), UID: "Cgood", OrigH: netip.MustParseAddr("10.0.0.1"),
		RespH: netip.MustParseAddr("10.0.0.2"), OrigP: 1234, RespP: 80, Proto: ingest.TCP, ConnState: ingest.SF,
	}
	msg := wire.EncodeBatch(&ingest.Batch{Sensor: "zeek-1", Stream: "codec", Seq: 1, Conns: []ingest.Conn{c, c, c}})
	bad := msg.Events[1]
	bad.RespP = 70000
	bad.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), []byte("future field")))
	want, err := proto.Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	sink, rejects := &memSink{}, &memRejects{}
	cli, conn, _ := startWith(t, DefaultConfig(), sink, WithRejectSink(rejects))

	a, err := streamOne(t.Context(), cli, msg)
	if err != nil {
		t.Fatal(err)
	}
	msg.Seq = 2
	b, err := cli.Push(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	for _, ack := range []*ndrv1.BatchAck{a, b} {
		if ack.GetAccepted() != 2 || len(ack.GetRejections()) != 1 || ack.GetRejections()[0].GetIndex() != 1 ||
			ack.GetRejections()[0].GetField() != "id.resp_p" {
			t.Fatalf("ack %v, want 2 accepted and event 1 refused for id.resp_p", ack)
		}
	}
	if sink.stored() != 4 {
		t.Fatalf("stored %d, want 4", sink.stored())
	}
	rs := rejects.all()
	if len(rs) != 2 {
		t.Fatalf("%d refused events kept, want 2", len(rs))
	}
	for _, r := range rs {
		if !bytes.Equal(r.Event, want) || r.Size != len(want) || r.Index != 1 {
			t.Fatalf("refused event kept as %x (size %d, index %d), want %x", r.Event, r.Size, r.Index, want)
		}
	}
	h, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: ndrv1.IngestService_ServiceDesc.ServiceName})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
}
