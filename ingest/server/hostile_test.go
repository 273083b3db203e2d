package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/wire"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// memRejects is an in-memory RejectSink.
type memRejects struct {
	mu   sync.Mutex
	rows []Rejected
	fail error
}

func (m *memRejects) WriteRejected(_ context.Context, rs []Rejected, done func(error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		go done(m.fail)
		return nil
	}
	m.rows = append(m.rows, rs...)
	go done(nil)
	return nil
}

func (m *memRejects) all() []Rejected {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Rejected(nil), m.rows...)
}

// TestHostileValuesRejectedPerEvent sends one batch in which every other
// event carries one hostile value, and checks that each is refused alone
// with the field at fault, that its neighbours are stored, that IPv6 and
// link-local addresses are accepted as they are, and that every refused
// event reaches the RejectSink whole.
func TestHostileValuesRejectedPerEvent(t *testing.T) {
	good := func(i int) *ndrv1.ConnEvent {
		b := ingest.Batch{Sensor: "zeek-1", Conns: []ingest.Conn{conn(i)}}
		ev := wire.EncodeBatch(&b).Events[0]
		ev.Uid = fmt.Sprintf("G%03d", i)
		return ev
	}
	addr16 := func(s string) []byte { a := netip.MustParseAddr(s).As16(); return a[:] }
	cases := []struct {
		name  string
		edit  func(*ndrv1.ConnEvent)
		field string // "" means accepted
	}{
		{"ts far past", func(e *ndrv1.ConnEvent) { e.TsUs = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro() }, "ts"},
		{"ts negative", func(e *ndrv1.ConnEvent) { e.TsUs = math.MinInt64 }, "ts"},
		{"ts far future", func(e *ndrv1.ConnEvent) { e.TsUs = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro() }, "ts"},
		{"ts max", func(e *ndrv1.ConnEvent) { e.TsUs = math.MaxInt64 }, "ts"},
		{"negative duration", func(e *ndrv1.ConnEvent) { e.DurationUs = -1 }, "duration"},
		{"overflowing duration", func(e *ndrv1.ConnEvent) { e.DurationUs = math.MaxInt64 }, "duration"},
		{"duration over limit", func(e *ndrv1.ConnEvent) { e.DurationUs = (31 * 24 * time.Hour).Microseconds() }, "duration"},
		{"huge orig_bytes", func(e *ndrv1.ConnEvent) { e.OrigBytes = math.MaxUint64 }, "orig_bytes"},
		{"huge resp_bytes", func(e *ndrv1.ConnEvent) { e.RespBytes = math.MaxUint64 }, "resp_bytes"},
		{"huge missed_bytes", func(e *ndrv1.ConnEvent) { e.MissedBytes = math.MaxUint64 }, "missed_bytes"},
		{"huge resp_pkts", func(e *ndrv1.ConnEvent) { e.RespPkts = math.MaxUint64 }, "resp_pkts"},
		{"huge orig_ip_bytes", func(e *ndrv1.ConnEvent) { e.OrigIpBytes = math.MaxUint64 }, "orig_ip_bytes"},
		{"oversized uid", func(e *ndrv1.ConnEvent) { e.Uid = strings.Repeat("C", 100_000) }, "uid"},
		{"oversized service", func(e *ndrv1.ConnEvent) { e.Service = strings.Repeat("s", 257) }, "service"},
		{"oversized history", func(e *ndrv1.ConnEvent) { e.History = strings.Repeat("h", 1000) }, "history"},
		{"oversized event sensor", func(e *ndrv1.ConnEvent) { e.SensorId = strings.Repeat("z", 300) }, "sensor_id"},
		{"uid with terminal escape", func(e *ndrv1.ConnEvent) { e.Uid = "C\x1b]0;pwned\x07" }, "uid"},
		{"service with newline", func(e *ndrv1.ConnEvent) { e.Service = "dns\nssl" }, "service"},
		{"history with NUL", func(e *ndrv1.ConnEvent) { e.History = "S\x00h" }, "history"},
		{"history with C1 CSI", func(e *ndrv1.ConnEvent) { e.History = "S\u009bh" }, "history"},
		{"event sensor with DEL", func(e *ndrv1.ConnEvent) { e.SensorId = "zeek\x7f" }, "sensor_id"},
		{"3-byte address", func(e *ndrv1.ConnEvent) { e.OrigH = []byte{10, 0, 0} }, "id.orig_h"},
		{"missing responder", func(e *ndrv1.ConnEvent) { e.RespH = nil }, "id.resp_h"},
		{"port over 65535", func(e *ndrv1.ConnEvent) { e.RespP = 70000 }, "id.resp_p"},
		{"unknown transport", func(e *ndrv1.ConnEvent) { e.Proto = 99 }, "proto"},
		{"negative state", func(e *ndrv1.ConnEvent) { e.ConnState = -1 }, "conn_state"},
		{"IPv6", func(e *ndrv1.ConnEvent) { e.OrigH, e.RespH = addr16("2001:db8::5"), addr16("2001:db8:ffff::1") }, ""},
		{"link-local", func(e *ndrv1.ConnEvent) { e.OrigH, e.RespH = addr16("fe80::1"), addr16("fe80::abcd:1") }, ""},
		{"IPv4-mapped", func(e *ndrv1.ConnEvent) { e.RespH = addr16("::ffff:192.0.2.7") }, ""},
		{"unicode service", func(e *ndrv1.ConnEvent) { e.Service = "smb-ü" }, ""},
	}
	msg := &ndrv1.EventBatch{Seq: 1, StreamId: "hostile", SensorId: "zeek-1"}
	wantField := map[int]string{}
	for i, tc := range cases {
		msg.Events = append(msg.Events, good(2*i)) // a good neighbour
		ev := good(2*i + 1)
		ev.Uid = fmt.Sprintf("H%03d", 2*i+1)
		tc.edit(ev)
		if tc.field != "" {
			wantField[len(msg.Events)] = tc.field
		}
		msg.Events = append(msg.Events, ev)
	}
	msg.Events = append(msg.Events, good(2*len(cases)))

	cfg := DefaultConfig()
	cfg.MaxRejectedBytes = 1024
	sink, rejects := &memSink{}, &memRejects{}
	cli, _, _ := startWith(t, cfg, sink, WithRejectSink(rejects))
	a, err := cli.Push(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]string{}
	for _, r := range a.GetRejections() {
		got[int(r.GetIndex())] = r.GetField()
		if !strings.HasPrefix(r.GetReason(), r.GetField()+": ") {
			t.Errorf("event %d: reason %q does not start with its field", r.GetIndex(), r.GetReason())
		}
		if len(r.GetReason()) > 300 {
			t.Errorf("event %d: reason of %d bytes echoes the input", r.GetIndex(), len(r.GetReason()))
		}
	}
	for i, tc := range cases {
		idx := 2*i + 1
		if got[idx] != wantField[idx] {
			t.Errorf("%s (event %d): rejected field %q, want %q", tc.name, idx, got[idx], wantField[idx])
		}
	}
	if want := len(msg.Events) - len(wantField); int(a.GetAccepted()) != want || sink.stored() != want {
		t.Fatalf("accepted %d, stored %d, want %d (every neighbour and every acceptable value)", a.GetAccepted(), sink.stored(), want)
	}
	stored := map[string]ingest.Conn{}
	sink.mu.Lock()
	for _, c := range sink.conns {
		stored[c.UID] = c
	}
	sink.mu.Unlock()
	for i := range cases {
		if _, ok := stored[good(2*i).Uid]; !ok {
			t.Errorf("good neighbour %d of %s not stored", 2*i, cases[i].name)
		}
	}
	for _, c := range sink.conns {
		switch c.OrigH.String() {
		case "2001:db8::5":
			if c.RespH.String() != "2001:db8:ffff::1" {
				t.Errorf("IPv6 responder stored as %s", c.RespH)
			}
		case "fe80::1":
			if c.RespH.String() != "fe80::abcd:1" || c.RespH.Zone() != "" {
				t.Errorf("link-local responder stored as %s", c.RespH)
			}
		}
		if c.RespH.String() == "::ffff:192.0.2.7" {
			t.Errorf("IPv4-mapped responder not unmapped: %s", c.RespH)
		}
	}

	// Every refused event went to the RejectSink, as sent.
	rows := rejects.all()
	if len(rows) != len(wantField) {
		t.Fatalf("%d rows in the reject sink, want %d", len(rows), len(wantField))
	}
	for _, r := range rows {
		if r.Sensor != "zeek-1" || r.Stream != "hostile" || r.Seq != 1 || r.Field != wantField[r.Index] || !r.ReceivedAt.Equal(testNow()) {
			t.Errorf("reject row %+v", r)
		}
		want, _ := proto.Marshal(msg.Events[r.Index])
		if r.Size != len(want) || !bytes.Equal(r.Event, want[:min(len(want), cfg.MaxRejectedBytes)]) {
			t.Errorf("event %d kept as %d of %d bytes, want the encoding cut at %d", r.Index, len(r.Event), r.Size, cfg.MaxRejectedBytes)
		}
		if len(r.Event) == r.Size { // whole: it decodes to what was sent
			var ev ndrv1.ConnEvent
			if err := proto.Unmarshal(r.Event, &ev); err != nil || !proto.Equal(&ev, msg.Events[r.Index]) {
				t.Errorf("event %d does not decode to what was sent: %v", r.Index, err)
			}
		}
	}
}

// TestRejectSinkFailureFailsTheBatch: refused events are part of the batch;
// if they cannot be kept, the batch is not acknowledged, and the sender
// resends it.
func TestRejectSinkFailureFailsTheBatch(t *testing.T) {
	rejects := &memRejects{fail: errors.New("clickhouse down")}
	cli, _, _ := startWith(t, DefaultConfig(), &memSink{}, WithRejectSink(rejects))
	b := batch(1, 3)
	b.Events[1].RespP = 1 << 20
	if _, err := cli.Push(t.Context(), b); status.Code(err) != codes.Unavailable {
		t.Fatalf("push: %v, want Unavailable", err)
	}
	rejects.mu.Lock()
	rejects.fail = nil
	rejects.mu.Unlock()
	a, err := cli.Push(t.Context(), b)
	if err != nil || a.GetDuplicate() || len(rejects.all()) != 1 {
		t.Fatalf("resend: %v %v, %d rejected rows", a, err, len(rejects.all()))
	}
}

// rawCodec sends pre-encoded bytes, so a test can put on the wire what
// protobuf-go refuses to encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (rawCodec) Unmarshal(b []byte, v any) error { return proto.Unmarshal(b, v.(proto.Message)) }
func (rawCodec) Name() string                    { return "proto" }

// TestInvalidUTF8EndsTheStream: a string field that is not UTF-8 makes
// the whole message undecodable (proto3), so no event can be singled out.
// gRPC itself ends the stream, with Internal "failed to unmarshal" (it
// writes that status before the service sees the error, so the service
// cannot choose another code). Nothing is stored and the server goes on.
// protobuf-go senders cannot even encode such a message; ingest/client
// drops those records before sending, each reported like a rejection.
func TestInvalidUTF8EndsTheStream(t *testing.T) {
	sink := &memSink{}
	cli, cc, _ := startWith(t, DefaultConfig(), sink)
	ev := protowire.AppendTag(nil, 2, protowire.BytesType) // uid
	ev = protowire.AppendBytes(ev, []byte("C\xff\xfe"))
	msg := protowire.AppendTag(nil, 1, protowire.VarintType)
	msg = protowire.AppendVarint(msg, 1)
	msg = protowire.AppendTag(msg, 4, protowire.BytesType)
	msg = protowire.AppendBytes(msg, ev)

	desc := &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}
	st, err := cc.NewStream(t.Context(), desc, ndrv1.IngestService_Stream_FullMethodName, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(msg); err != nil {
		t.Fatal(err)
	}
	var ack ndrv1.BatchAck
	err = st.RecvMsg(&ack)
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("stream: %v, want Internal naming UTF-8", err)
	}
	if sink.stored() != 0 {
		t.Fatal("stored something")
	}
	if _, err := cli.Push(t.Context(), batch(1, 2)); err != nil || sink.stored() != 2 {
		t.Fatalf("next call: %v, stored %d", err, sink.stored())
	}
}
