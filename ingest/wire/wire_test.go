package wire

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ndr-go/ndr/ingest"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

var fixedNow = func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) }

func sampleConn() ingest.Conn {
	return ingest.Conn{
		TS: 1769854500123456, UID: "CAbc12", OrigH: netip.MustParseAddr("10.0.0.5"), RespH: netip.MustParseAddr("2001:db8::7"),
		OrigP: 51234, RespP: 443, Proto: ingest.TCP, Service: "ssl", Duration: 1500 * time.Millisecond,
		OrigBytes: 1200, RespBytes: 64000, ConnState: ingest.SF, LocalOrig: ingest.True, LocalResp: ingest.Unknown,
		MissedBytes: 3, History: "ShADadFf", OrigPkts: 10, OrigIPBytes: 1800, RespPkts: 50, RespIPBytes: 66000, Sensor: "zeek-a",
	}
}

func TestRoundTrip(t *testing.T) {
	c := sampleConn()
	other := c
	other.Sensor = "zeek-b"
	other.OrigH = netip.MustParseAddr("192.168.1.1")
	other.LocalOrig = ingest.False
	in := ingest.Batch{Sensor: "zeek-a", Stream: "s1", Seq: 7, Conns: []ingest.Conn{c, other}}
	msg := EncodeBatch(&in)
	if msg.Events[0].SensorId != "" || msg.Events[1].SensorId != "zeek-b" {
		t.Fatalf("sensor ids on the wire: %q %q", msg.Events[0].SensorId, msg.Events[1].SensorId)
	}
	raw, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var back ndrv1.EventBatch
	if err := proto.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	var out ingest.Batch
	rej := DecodeBatch(&back, ingest.NewValidator(ingest.DefaultLimits(), fixedNow), &out, nil)
	if len(rej) != 0 {
		t.Fatalf("rejections: %v", rej[0].Err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestDecodeRejectsBadEventsAndKeepsGoodOnes(t *testing.T) {
	good := sampleConn()
	bad := func(mut func(*ndrv1.ConnEvent)) *ndrv1.ConnEvent {
		var ev ndrv1.ConnEvent
		FromConn(&good, "", &ev)
		mut(&ev)
		return &ev
	}
	var okEv ndrv1.ConnEvent
	FromConn(&good, "", &okEv)
	cases := []struct {
		ev    *ndrv1.ConnEvent
		field string
	}{
		{bad(func(e *ndrv1.ConnEvent) { e.OrigH = []byte{1, 2, 3} }), "id.orig_h"},
		{bad(func(e *ndrv1.ConnEvent) { e.RespH = nil }), "id.resp_h"},
		{bad(func(e *ndrv1.ConnEvent) { e.RespP = 70000 }), "id.resp_p"},
		{bad(func(e *ndrv1.ConnEvent) { e.OrigP = 1 << 31 }), "id.orig_p"},
		{bad(func(e *ndrv1.ConnEvent) { e.Proto = 99 }), "proto"},
		{bad(func(e *ndrv1.ConnEvent) { e.ConnState = -1 }), "conn_state"},
		{bad(func(e *ndrv1.ConnEvent) { e.DurationUs = -5 }), "duration"},
		{bad(func(e *ndrv1.ConnEvent) { e.DurationUs = 1 << 62 }), "duration"},
		{bad(func(e *ndrv1.ConnEvent) { e.TsUs = 253402300799000000 }), "ts"}, // 9999-12-31
		{bad(func(e *ndrv1.ConnEvent) { e.TsUs = -1 }), "ts"},
		{bad(func(e *ndrv1.ConnEvent) { e.OrigBytes = 1 << 63 }), "orig_bytes"},
		{bad(func(e *ndrv1.ConnEvent) { e.History = string(make([]byte, 4096)) }), "history"},
		{bad(func(e *ndrv1.ConnEvent) { e.SensorId = string(make([]byte, 300)) }), "sensor_id"},
	}
	in := &ndrv1.EventBatch{Seq: 1, StreamId: "s"}
	for _, tc := range cases {
		in.Events = append(in.Events, &okEv, tc.ev)
	}
	var out ingest.Batch
	rej := DecodeBatch(in, ingest.NewValidator(ingest.DefaultLimits(), fixedNow), &out, nil)
	if len(out.Conns) != len(cases) {
		t.Errorf("kept %d good events, want %d", len(out.Conns), len(cases))
	}
	if len(rej) != len(cases) {
		t.Fatalf("got %d rejections, want %d", len(rej), len(cases))
	}
	for i, tc := range cases {
		if rej[i].Index != 2*i+1 {
			t.Errorf("case %d: index %d, want %d", i, rej[i].Index, 2*i+1)
		}
		if got := ingest.FieldOf(rej[i].Err); got != tc.field {
			t.Errorf("case %d: field %q (%v), want %q", i, got, rej[i].Err, tc.field)
		}
	}
}

func TestIPv4MappedIsUnmapped(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:10.1.2.3").As16()
	var c ingest.Conn
	ev := &ndrv1.ConnEvent{TsUs: 1, OrigH: mapped[:], RespH: []byte{8, 8, 8, 8}}
	if err := ToConn(ev, "s", &c); err != nil {
		t.Fatal(err)
	}
	if !c.OrigH.Is4() || c.OrigH.String() != "10.1.2.3" {
		t.Fatalf("orig = %v, want 10.1.2.3 as IPv4", c.OrigH)
	}
}

// FuzzDecodeBatch feeds arbitrary bytes through protobuf decoding and the
// mapping: nothing may panic, and every accepted event must pass validation
// and survive a round trip unchanged.
func FuzzDecodeBatch(f *testing.F) {
	c := sampleConn()
	seed, _ := proto.Marshal(EncodeBatch(&ingest.Batch{Sensor: "s", Stream: "x", Seq: 1, Conns: []ingest.Conn{c, c}}))
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x22, 0x03, 0x1a, 0x01, 0x01})
	v := ingest.NewValidator(ingest.DefaultLimits(), fixedNow)
	f.Fuzz(func(t *testing.T, data []byte) {
		var in ndrv1.EventBatch
		if proto.Unmarshal(data, &in) != nil {
			return
		}
		var out ingest.Batch
		rej := DecodeBatch(&in, v, &out, nil)
		if len(rej)+len(out.Conns) != len(in.Events) {
			t.Fatalf("%d accepted + %d rejected != %d events", len(out.Conns), len(rej), len(in.Events))
		}
		for i := range out.Conns {
			if err := v.Check(&out.Conns[i]); err != nil {
				t.Fatalf("accepted event fails validation: %v", err)
			}
		}
		var again ingest.Batch
		if rej := DecodeBatch(EncodeBatch(&out), v, &again, nil); len(rej) != 0 {
			t.Fatalf("re-encoded batch rejected: %v", rej[0].Err)
		}
		if !reflect.DeepEqual(out.Conns, again.Conns) && len(out.Conns) > 0 {
			t.Fatalf("round trip changed events")
		}
	})
}
