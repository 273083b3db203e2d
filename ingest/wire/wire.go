// Package wire maps between the gRPC wire messages of proto/ndr/v1 and
// ingest.Conn. It is the only place where the two shapes meet: everything
// after the gRPC edge sees ingest.Conn, everything on the wire is ndrv1.
//
// Mapping checks what the Go types cannot express (address length, port
// range, enum range) and returns *ingest.FieldError naming the Zeek field,
// so a rejection reads the same whether it came from a file or a sensor.
package wire

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/ndr-go/ndr/ingest"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// ToConn fills c from ev. defaultSensor is used when the event carries no
// sensor id. It checks wire-level shape only; limits are the Validator's job.
func ToConn(ev *ndrv1.ConnEvent, defaultSensor string, c *ingest.Conn) error {
	f := fields{
		ts: ev.GetTsUs(), uid: ev.GetUid(), origH: ev.GetOrigH(), respH: ev.GetRespH(),
		origP: ev.GetOrigP(), respP: ev.GetRespP(), proto: int32(ev.GetProto()), service: ev.GetService(),
		duration: ev.GetDurationUs(), origBytes: ev.GetOrigBytes(), respBytes: ev.GetRespBytes(),
		state: int32(ev.GetConnState()), localOrig: tristate(ev.LocalOrig), localResp: tristate(ev.LocalResp),
		missedBytes: ev.GetMissedBytes(), history: ev.GetHistory(), origPkts: ev.GetOrigPkts(),
		origIPBytes: ev.GetOrigIpBytes(), respPkts: ev.GetRespPkts(), respIPBytes: ev.GetRespIpBytes(),
		sensor: ev.GetSensorId(),
	}
	return f.toConn(defaultSensor, c)
}

// fields are a ConnEvent's values as decoded, before mapping: what ToConn
// reads from a generated message and Frame from the encoding.
type fields struct {
	ts, duration                                 int64
	uid, service, history, sensor                string
	origH, respH                                 []byte
	origP, respP                                 uint32
	proto, state                                 int32
	origBytes, respBytes, missedBytes            uint64
	origPkts, origIPBytes, respPkts, respIPBytes uint64
	localOrig, localResp                         ingest.Tristate
}

func (f *fields) toConn(defaultSensor string, c *ingest.Conn) error {
	orig, err := addr("id.orig_h", f.origH)
	if err != nil {
		return err
	}
	resp, err := addr("id.resp_h", f.respH)
	if err != nil {
		return err
	}
	if f.origP > 65535 {
		return &ingest.FieldError{Field: "id.orig_p", Reason: fmt.Sprintf("%d is not a port", f.origP)}
	}
	if f.respP > 65535 {
		return &ingest.FieldError{Field: "id.resp_p", Reason: fmt.Sprintf("%d is not a port", f.respP)}
	}
	proto := ndrv1.Transport(f.proto)
	if proto < 0 || proto > ndrv1.Transport_TRANSPORT_ICMP {
		return &ingest.FieldError{Field: "proto", Reason: fmt.Sprintf("unknown transport %d", proto)}
	}
	state := ndrv1.ConnState(f.state)
	if state < 0 || state > ndrv1.ConnState_CONN_STATE_OTH {
		return &ingest.FieldError{Field: "conn_state", Reason: fmt.Sprintf("unknown state %d", state)}
	}
	d := f.duration
	if d < 0 {
		return &ingest.FieldError{Field: "duration", Reason: fmt.Sprintf("negative (%d us)", d)}
	}
	if d > int64(1<<62)/int64(time.Microsecond) {
		return &ingest.FieldError{Field: "duration", Reason: fmt.Sprintf("%d us overflows", d)}
	}
	sensor := f.sensor
	if sensor == "" {
		sensor = defaultSensor
	}
	*c = ingest.Conn{
		TS:          f.ts,
		UID:         f.uid,
		OrigH:       orig,
		RespH:       resp,
		OrigP:       uint16(f.origP),
		RespP:       uint16(f.respP),
		Proto:       ingest.Transport(proto), // enum values match by construction
		Service:     f.service,
		Duration:    time.Duration(d) * time.Microsecond,
		OrigBytes:   f.origBytes,
		RespBytes:   f.respBytes,
		ConnState:   ingest.ConnState(state),
		LocalOrig:   f.localOrig,
		LocalResp:   f.localResp,
		MissedBytes: f.missedBytes,
		History:     f.history,
		OrigPkts:    f.origPkts,
		OrigIPBytes: f.origIPBytes,
		RespPkts:    f.respPkts,
		RespIPBytes: f.respIPBytes,
		Sensor:      sensor,
	}
	return nil
}

// FromConn fills ev from c. The sensor id is left empty when it equals
// batchSensor, since the batch carries it.
func FromConn(c *ingest.Conn, batchSensor string, ev *ndrv1.ConnEvent) {
	*ev = ndrv1.ConnEvent{
		TsUs:        c.TS,
		Uid:         c.UID,
		OrigH:       addrBytes(c.OrigH),
		OrigP:       uint32(c.OrigP),
		RespH:       addrBytes(c.RespH),
		RespP:       uint32(c.RespP),
		Proto:       ndrv1.Transport(c.Proto),
		Service:     c.Service,
		DurationUs:  c.Duration.Microseconds(),
		OrigBytes:   c.OrigBytes,
		RespBytes:   c.RespBytes,
		ConnState:   ndrv1.ConnState(c.ConnState),
		LocalOrig:   optBool(c.LocalOrig),
		LocalResp:   optBool(c.LocalResp),
		MissedBytes: c.MissedBytes,
		History:     c.History,
		OrigPkts:    c.OrigPkts,
		OrigIpBytes: c.OrigIPBytes,
		RespPkts:    c.RespPkts,
		RespIpBytes: c.RespIPBytes,
	}
	if c.Sensor != batchSensor {
		ev.SensorId = c.Sensor
	}
}

// Rejection is an event refused from a batch.
type Rejection struct {
	Index int
	Err   error // carries an *ingest.FieldError
}

// DecodeBatch maps and validates every event of in into out.Conns (reusing
// its capacity) and returns the events it refused. Valid events are never
// dropped because a neighbour is bad.
func DecodeBatch(in *ndrv1.EventBatch, v *ingest.Validator, out *ingest.Batch, rejected []Rejection) []Rejection {
	out.Sensor = in.GetSensorId()
	out.Stream = in.GetStreamId()
	out.Seq = in.GetSeq()
	conns := out.Conns[:0]
	if cap(conns) < len(in.GetEvents()) {
		conns = make([]ingest.Conn, 0, len(in.GetEvents()))
	}
	for i, ev := range in.GetEvents() {
		conns = conns[:len(conns)+1]
		c := &conns[len(conns)-1]
		err := ToConn(ev, out.Sensor, c)
		if err == nil {
			err = v.Check(c)
		}
		if err != nil {
			conns = conns[:len(conns)-1]
			rejected = append(rejected, Rejection{Index: i, Err: err})
		}
	}
	out.Conns = conns
	return rejected
}

// EncodeBatch builds the wire form of b.
func EncodeBatch(b *ingest.Batch) *ndrv1.EventBatch {
	evs := make([]ndrv1.ConnEvent, len(b.Conns))
	ptrs := make([]*ndrv1.ConnEvent, len(b.Conns))
	for i := range b.Conns {
		FromConn(&b.Conns[i], b.Sensor, &evs[i])
		ptrs[i] = &evs[i]
	}
	return &ndrv1.EventBatch{Seq: b.Seq, StreamId: b.Stream, SensorId: b.Sensor, Events: ptrs}
}

func addr(field string, b []byte) (netip.Addr, error) {
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b)), nil
	case 16:
		return netip.AddrFrom16([16]byte(b)).Unmap(), nil
	case 0:
		return netip.Addr{}, &ingest.FieldError{Field: field, Reason: "missing"}
	}
	return netip.Addr{}, &ingest.FieldError{Field: field, Reason: fmt.Sprintf("%d bytes is neither IPv4 (4) nor IPv6 (16)", len(b))}
}

func addrBytes(a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return b[:]
	}
	b := a.As16()
	return b[:]
}

func tristate(b *bool) ingest.Tristate {
	if b == nil {
		return ingest.Unknown
	}
	return ingest.TristateOf(*b)
}

func optBool(t ingest.Tristate) *bool {
	switch t {
	case ingest.True:
		v := true
		return &v
	case ingest.False:
		v := false
		return &v
	}
	return nil
}
