package wire

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ndr-go/ndr/ingest"
)

// Decoding errors. They stand for proto.Unmarshal's, and name the same
// causes, since gRPC reports them to the sender.
var (
	errWireFormat = errors.New("wire: proto: cannot parse invalid wire-format data")
	errUTF8       = errors.New("wire: proto: string field contains invalid UTF-8")
)

// Frame is an ndr.v1.EventBatch decoded from its encoding straight into
// ingest.Conn values, without a generated message per event. The server
// decodes every batch this way: proto.Unmarshal followed by ToConn costs
// about eight allocations per event, Unmarshal about one (the uid).
//
// Unmarshal accepts exactly the encodings proto.Unmarshal accepts into
// ndrv1.EventBatch (unknown fields, repeated scalars where the last wins,
// known fields of the wrong wire type kept as unknown, UTF-8 checked in
// every string) and maps each event as ToConn does; FuzzFrame checks both.
//
// A Frame aliases the bytes it was decoded from (see Event) until the next
// Unmarshal. Its Conns are fresh on every Unmarshal, so they may be handed
// on.
type Frame struct {
	Seq      uint64
	StreamID string
	SensorID string
	// Conns holds the events in order. Conn.Sensor is the event's own
	// sensor_id ("" when absent). A Conn whose index is in Bad holds only
	// that.
	Conns []ingest.Conn
	// Bad lists the events ToConn would refuse, in order of index.
	Bad []Rejection

	spans   []span // the encoding of each event, in data
	data    []byte
	strings *Strings
}

type span struct{ start, end uint32 }

// Len returns the number of events.
func (f *Frame) Len() int { return len(f.Conns) }

// Event returns the encoding of event i, unknown fields included. It
// aliases the bytes given to Unmarshal: copy it to keep it.
func (f *Frame) Event(i int) []byte { s := f.spans[i]; return f.data[s.start:s.end] }

// UseStrings makes Unmarshal share the strings of s (nil: allocate every
// string). s belongs to one goroutine at a time, like the Frame.
func (f *Frame) UseStrings(s *Strings) { f.strings = s }

// Unmarshal decodes data into f, replacing what f held. On error f holds
// nothing useful, and the whole message is refused, as proto.Unmarshal
// refuses it.
func (f *Frame) Unmarshal(data []byte) error {
	if len(data) > 1<<32-1 { // spans are 32-bit; gRPC's limit is far lower
		return errWireFormat
	}
	f.Seq, f.StreamID, f.SensorID = 0, "", ""
	f.Conns, f.Bad, f.spans, f.data = nil, f.Bad[:0], f.spans[:0], data
	// Count the events first, so Conns is allocated once at its size.
	n := countEvents(data)
	f.Conns = make([]ingest.Conn, 0, n)
	if cap(f.spans) < n {
		f.spans = make([]span, 0, n)
	}
	b := data
	for len(b) > 0 {
		num, typ, m := consumeTag(b)
		if m < 0 {
			return errWireFormat
		}
		b = b[m:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			f.Seq, m = protowire.ConsumeVarint(b)
		case num == 2 && typ == protowire.BytesType:
			f.StreamID, m = f.consumeString(b, false)
		case num == 3 && typ == protowire.BytesType:
			f.SensorID, m = f.consumeString(b, false)
		case num == 4 && typ == protowire.BytesType:
			var ev []byte
			ev, m = protowire.ConsumeBytes(b)
			if m < 0 {
				return errWireFormat
			}
			start := uint32(len(data) - len(b) + m - len(ev))
			f.spans = append(f.spans, span{start, start + uint32(len(ev))})
			f.Conns = append(f.Conns, ingest.Conn{})
			var fl fields
			if err := f.decodeEvent(ev, &fl); err != nil {
				return err
			}
			i := len(f.Conns) - 1
			if err := fl.toConn("", &f.Conns[i]); err != nil {
				f.Bad = append(f.Bad, Rejection{Index: i, Err: err})
				f.Conns[i].Sensor = fl.sensor
			}
		default:
			m = consumeUnknown(num, typ, b)
		}
		if m < 0 {
			return consumeErr(m)
		}
		b = b[m:]
	}
	return nil
}

// errCodeUTF8 is consumeString's "not UTF-8", apart from protowire's codes.
const errCodeUTF8 = -100

// consumeErr is the error of a negative consume result.
func consumeErr(m int) error {
	if m == errCodeUTF8 {
		return errUTF8
	}
	return errWireFormat
}

// consumeTag is protowire.ConsumeTag with proto.Unmarshal's checks: a
// field number in range and no end-group tag outside a group.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, n
	}
	num := v >> 3
	if num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
		return 0, 0, -1
	}
	typ := protowire.Type(v & 7)
	if typ == protowire.EndGroupType {
		return 0, 0, -1
	}
	return protowire.Number(num), typ, n
}

// consumeUnknown skips a field that is not in the schema, or is there with
// another wire type (proto.Unmarshal keeps both as unknown fields).
func consumeUnknown(num protowire.Number, typ protowire.Type, b []byte) int {
	return protowire.ConsumeFieldValue(num, typ, b)
}

// countEvents counts the events field occurrences up to the first
// malformed field; the decoding loop finds that one, after any error
// before it, as proto.Unmarshal would.
func countEvents(b []byte) int {
	n := 0
	for len(b) > 0 {
		num, typ, m := consumeTag(b)
		if m < 0 {
			return n
		}
		b = b[m:]
		if num == 4 && typ == protowire.BytesType {
			n++
		}
		m = protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return n
		}
		b = b[m:]
	}
	return n
}

func (f *Frame) consumeString(b []byte, intern bool) (string, int) {
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return "", n
	}
	if intern && f.strings != nil {
		if s, ok := f.strings.m[string(v)]; ok { // no allocation: a lookup
			return s, n
		}
	}
	if !utf8.Valid(v) {
		return "", errCodeUTF8
	}
	if len(v) == 0 {
		return "", n
	}
	s := string(v)
	if intern && f.strings != nil {
		f.strings.add(s)
	}
	return s, n
}

// decodeEvent decodes one ConnEvent's encoding into fl.
func (f *Frame) decodeEvent(b []byte, fl *fields) error {
	for len(b) > 0 {
		num, typ, m := consumeTag(b)
		if m < 0 {
			return errWireFormat
		}
		b = b[m:]
		if typ == protowire.VarintType && num != 2 && num != 3 && num != 5 && num != 8 && num != 16 && num != 21 && num <= 21 {
			var v uint64
			v, m = protowire.ConsumeVarint(b)
			if m < 0 {
				return errWireFormat
			}
			switch num {
			case 1:
				fl.ts = int64(v)
			case 4:
				fl.origP = uint32(v)
			case 6:
				fl.respP = uint32(v)
			case 7:
				fl.proto = int32(v)
			case 9:
				fl.duration = int64(v)
			case 10:
				fl.origBytes = v
			case 11:
				fl.respBytes = v
			case 12:
				fl.state = int32(v)
			case 13:
				fl.localOrig = ingest.TristateOf(protowire.DecodeBool(v))
			case 14:
				fl.localResp = ingest.TristateOf(protowire.DecodeBool(v))
			case 15:
				fl.missedBytes = v
			case 17:
				fl.origPkts = v
			case 18:
				fl.origIPBytes = v
			case 19:
				fl.respPkts = v
			case 20:
				fl.respIPBytes = v
			}
			b = b[m:]
			continue
		}
		if typ == protowire.BytesType {
			switch num {
			case 2:
				fl.uid, m = f.consumeString(b, false)
			case 3:
				fl.origH, m = protowire.ConsumeBytes(b)
			case 5:
				fl.respH, m = protowire.ConsumeBytes(b)
			case 8:
				fl.service, m = f.consumeString(b, true)
			case 16:
				fl.history, m = f.consumeString(b, true)
			case 21:
				fl.sensor, m = f.consumeString(b, true)
			default:
				m = consumeUnknown(num, typ, b)
			}
		} else {
			m = consumeUnknown(num, typ, b)
		}
		if m < 0 {
			return consumeErr(m)
		}
		b = b[m:]
	}
	return nil
}

// Strings shares the strings that repeat from event to event (service,
// history, sensor id) so that decoding does not allocate them each time.
// It keeps at most maxStrings short strings. Not safe for concurrent use.
type Strings struct{ m map[string]string }

const (
	maxStrings   = 4096
	maxStringLen = 64
)

// NewStrings returns an empty Strings.
func NewStrings() *Strings { return &Strings{m: make(map[string]string)} }

func (s *Strings) add(v string) {
	if len(v) <= maxStringLen && len(s.m) < maxStrings {
		s.m[v] = v
	}
}

// DecodeFrame is DecodeBatch for a Frame: it validates f's events, moves
// the valid ones into out.Conns (f.Conns's array: f gives them up) with
// the batch's sensor id where they have none, and returns the refused ones
// in order of index. pre are refusals the caller decided before decoding
// (in order of index); those events are refused for that reason alone.
func DecodeFrame(f *Frame, v *ingest.Validator, out *ingest.Batch, pre []Rejection) []Rejection {
	out.Sensor, out.Stream, out.Seq = f.SensorID, f.StreamID, f.Seq
	var rejected []Rejection
	conns := f.Conns[:0]
	bad, p := f.Bad, pre
	for i := range f.Conns {
		c := &f.Conns[i]
		var err error
		switch {
		case len(p) > 0 && p[0].Index == i:
			err, p = p[0].Err, p[1:]
			if len(bad) > 0 && bad[0].Index == i {
				bad = bad[1:]
			}
		case len(bad) > 0 && bad[0].Index == i:
			err, bad = bad[0].Err, bad[1:]
		default:
			if c.Sensor == "" {
				c.Sensor = f.SensorID
			}
			err = v.Check(c)
		}
		if err != nil {
			rejected = append(rejected, Rejection{Index: i, Err: err})
			continue
		}
		if len(conns) == i { // nothing refused so far: already in place
			conns = conns[:i+1]
		} else {
			conns = append(conns, *c) // len(conns) < i: safe in place
		}
	}
	out.Conns = conns
	f.Conns = nil
	return rejected
}
