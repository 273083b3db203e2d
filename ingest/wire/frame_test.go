package wire

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ndr-go/ndr/ingest"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// frameSeeds are encodings that reach every branch of Frame.Unmarshal:
// valid batches, unknown fields of every wire type, known fields with the
// wrong wire type, repeated scalars, bad UTF-8, truncations, groups.
func frameSeeds(t testing.TB) [][]byte {
	c := sampleConn()
	other := c
	other.Sensor, other.LocalOrig, other.OrigH = "zeek-b", ingest.False, netip.MustParseAddr("192.168.1.1")
	good, err := proto.Marshal(EncodeBatch(&ingest.Batch{Sensor: "zeek-a", Stream: "s1", Seq: 7, Conns: []ingest.Conn{c, other}}))
	if err != nil {
		t.Fatal(err)
	}
	ev := func(mut func(*ndrv1.ConnEvent)) []byte {
		var e ndrv1.ConnEvent
		FromConn(&c, "", &e)
		mut(&e)
		b, err := proto.Marshal(&ndrv1.EventBatch{Seq: 1, StreamId: "s", Events: []*ndrv1.ConnEvent{&e}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var inner []byte // a ConnEvent with odd fields
	inner = protowire.AppendTag(inner, 1, protowire.VarintType)
	inner = protowire.AppendVarint(inner, 1769854500123456)
	inner = protowire.AppendTag(inner, 3, protowire.BytesType)
	inner = protowire.AppendBytes(inner, []byte{10, 0, 0, 1})
	inner = protowire.AppendTag(inner, 5, protowire.BytesType)
	inner = protowire.AppendBytes(inner, []byte{10, 0, 0, 2})
	inner = protowire.AppendTag(inner, 2, protowire.VarintType) // uid as varint: unknown
	inner = protowire.AppendVarint(inner, 5)
	inner = protowire.AppendTag(inner, 4, protowire.Fixed32Type) // orig_p as fixed32: unknown
	inner = protowire.AppendFixed32(inner, 80)
	inner = protowire.AppendTag(inner, 4, protowire.VarintType)
	inner = protowire.AppendVarint(inner, 1<<40+80) // truncated to 32 bits
	inner = protowire.AppendTag(inner, 7, protowire.VarintType)
	inner = protowire.AppendVarint(inner, 1<<32+2) // enum truncated to int32
	inner = protowire.AppendTag(inner, 13, protowire.VarintType)
	inner = protowire.AppendVarint(inner, 7) // bool: nonzero
	inner = protowire.AppendTag(inner, 99, protowire.StartGroupType)
	inner = protowire.AppendTag(inner, 1, protowire.Fixed64Type)
	inner = protowire.AppendFixed64(inner, 3)
	inner = protowire.AppendTag(inner, 99, protowire.EndGroupType)
	inner = protowire.AppendTag(inner, 16, protowire.BytesType)
	inner = protowire.AppendString(inner, "Sh")
	inner = protowire.AppendTag(inner, 16, protowire.BytesType)
	inner = protowire.AppendString(inner, "ShAD") // last wins
	var odd []byte
	odd = protowire.AppendTag(odd, 1, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 3)
	odd = protowire.AppendTag(odd, 4, protowire.BytesType)
	odd = protowire.AppendBytes(odd, inner)
	odd = protowire.AppendTag(odd, 3, protowire.BytesType) // sensor after the events
	odd = protowire.AppendString(odd, "late")
	odd = protowire.AppendTag(odd, 1, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 4)                    // last wins
	odd = protowire.AppendTag(odd, 4, protowire.VarintType) // events as varint: unknown
	odd = protowire.AppendVarint(odd, 1)
	odd = protowire.AppendTag(odd, 1000, protowire.Fixed32Type)
	odd = protowire.AppendFixed32(odd, 1)
	seeds := [][]byte{
		nil, good, odd, good[:len(good)-3], odd[:len(odd)-1],
		withField(t, 2, "\xff\xfe"),
		withField(t, 8, "ss\xc3"),
		withField(t, 21, "\x80"),
		withField(t, 16, "ShAD"),
		ev(func(e *ndrv1.ConnEvent) { e.OrigH = []byte{1, 2, 3} }),
		ev(func(e *ndrv1.ConnEvent) { e.RespP = 70000 }),
		ev(func(e *ndrv1.ConnEvent) { e.DurationUs = -1 }),
		ev(func(e *ndrv1.ConnEvent) { e.ConnState = 14 }),
		ev(func(e *ndrv1.ConnEvent) { e.Proto = -1 }),
		ev(func(e *ndrv1.ConnEvent) { e.TsUs = 1 }),                                // refused by the validator
		append(append([]byte{}, good...), 0x0c),                                    // end group outside a group
		append(append([]byte{}, good...), 0x07),                                    // wire type 7
		append(append([]byte{}, good...), 0x00, 0x00),                              // field number 0
		append(protowire.AppendTag(nil, 2, protowire.BytesType), 0x02, 0xc3, 0x28), // bad UTF-8 stream id
	}
	return seeds
}

// checkFrame asserts that Frame.Unmarshal and DecodeFrame agree with
// proto.Unmarshal followed by ToConn and DecodeBatch on data.
func checkFrame(t *testing.T, data []byte) {
	var msg ndrv1.EventBatch
	perr := proto.Unmarshal(data, &msg)
	var f Frame
	f.UseStrings(NewStrings())
	ferr := f.Unmarshal(data)
	if (perr == nil) != (ferr == nil) {
		t.Fatalf("proto.Unmarshal: %v, Frame.Unmarshal: %v", perr, ferr)
	}
	if perr != nil {
		if strings.Contains(perr.Error(), "UTF-8") != errors.Is(ferr, errUTF8) {
			t.Fatalf("proto.Unmarshal: %v, Frame.Unmarshal: %v", perr, ferr)
		}
		return
	}
	if f.Seq != msg.GetSeq() || f.StreamID != msg.GetStreamId() || f.SensorID != msg.GetSensorId() || f.Len() != len(msg.GetEvents()) {
		t.Fatalf("header: frame %d %q %q %d events, proto %d %q %q %d", f.Seq, f.StreamID, f.SensorID, f.Len(),
			msg.GetSeq(), msg.GetStreamId(), msg.GetSensorId(), len(msg.GetEvents()))
	}
	bad := f.Bad
	for i, ev := range msg.GetEvents() {
		var want ingest.Conn
		werr := ToConn(ev, "", &want)
		var ferr error
		if len(bad) > 0 && bad[0].Index == i {
			ferr, bad = bad[0].Err, bad[1:]
		}
		switch {
		case (werr == nil) != (ferr == nil):
			t.Fatalf("event %d: ToConn %v, Frame %v", i, werr, ferr)
		case werr != nil:
			if werr.Error() != ferr.Error() || f.Conns[i].Sensor != ev.GetSensorId() {
				t.Fatalf("event %d: ToConn %v, Frame %v (sensor %q)", i, werr, ferr, f.Conns[i].Sensor)
			}
		case !reflect.DeepEqual(want, f.Conns[i]):
			t.Fatalf("event %d:\nframe %+v\n  want %+v", i, f.Conns[i], want)
		}
		var back ndrv1.ConnEvent
		if err := proto.Unmarshal(f.Event(i), &back); err != nil || !proto.Equal(&back, ev) {
			t.Fatalf("event %d: its encoding decodes to %v (%v), want %v", i, &back, err, ev)
		}
	}
	if len(bad) != 0 {
		t.Fatalf("%d refusals past the last event", len(bad))
	}
	v := ingest.NewValidator(ingest.DefaultLimits(), fixedNow)
	var want, got ingest.Batch
	wrej := DecodeBatch(&msg, v, &want, nil)
	grej := DecodeFrame(&f, v, &got, nil)
	if len(want.Conns) == 0 {
		want.Conns = nil
	}
	if len(got.Conns) == 0 {
		got.Conns = nil
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("DecodeFrame:\n got %+v\nwant %+v", got, want)
	}
	if len(wrej) != len(grej) {
		t.Fatalf("DecodeFrame refused %d, DecodeBatch %d", len(grej), len(wrej))
	}
	for i := range wrej {
		if wrej[i].Index != grej[i].Index || wrej[i].Err.Error() != grej[i].Err.Error() {
			t.Fatalf("refusal %d: %d %v, want %d %v", i, grej[i].Index, grej[i].Err, wrej[i].Index, wrej[i].Err)
		}
	}
}

func TestFrameSeeds(t *testing.T) {
	for _, s := range frameSeeds(t) {
		checkFrame(t, s)
	}
}

// FuzzFrame is the differential test of the hand-written decoder against
// the generated code: go test -fuzz FuzzFrame ./ingest/wire
func FuzzFrame(f *testing.F) {
	for _, s := range frameSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(checkFrame)
}

func TestDecodeFramePre(t *testing.T) {
	c := sampleConn()
	bad := c
	bad.OrigP = 1
	msg := EncodeBatch(&ingest.Batch{Sensor: "zeek-a", Stream: "s", Seq: 1, Conns: []ingest.Conn{c, c, c}})
	msg.Events[2].OrigH = []byte{1}
	raw, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var f Frame
	if err := f.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	pre := []Rejection{{Index: 1, Err: errors.New("foreign")}, {Index: 2, Err: errors.New("foreign too")}}
	var out ingest.Batch
	rej := DecodeFrame(&f, ingest.NewValidator(ingest.DefaultLimits(), fixedNow), &out, pre)
	if len(out.Conns) != 1 || len(rej) != 2 || rej[0].Err.Error() != "foreign" || rej[1].Err.Error() != "foreign too" {
		t.Fatalf("kept %d, refused %v", len(out.Conns), rej)
	}
}

func TestFrameSharesStrings(t *testing.T) {
	c := sampleConn()
	raw, err := proto.Marshal(EncodeBatch(&ingest.Batch{Sensor: "zeek-a", Stream: "s", Seq: 1, Conns: []ingest.Conn{c, c}}))
	if err != nil {
		t.Fatal(err)
	}
	var f Frame
	f.UseStrings(NewStrings())
	if err := f.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	if unsafeData(f.Conns[0].History) != unsafeData(f.Conns[1].History) || unsafeData(f.Conns[0].Service) != unsafeData(f.Conns[1].Service) {
		t.Fatal("service and history decoded twice")
	}
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }

// withField is a one-event batch whose event ends with field num set to v,
// which need not be UTF-8 (proto.Marshal would refuse it).
func withField(t testing.TB, num protowire.Number, v string) []byte {
	var e ndrv1.ConnEvent
	c := sampleConn()
	FromConn(&c, "", &e)
	b, err := proto.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendString(b, v)
	var out []byte
	out = protowire.AppendTag(out, 4, protowire.BytesType)
	return protowire.AppendBytes(out, b)
}
