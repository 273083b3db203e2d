package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

// errCorrupt marks a record payload that does not decode; recovery treats
// it like a bad checksum.
var errCorrupt = errors.New("spool: corrupt record")

// encodeBatch appends b's compact binary form to dst. Timestamps are
// delta-encoded against the previous record, counters are varints, and a
// record's sensor is written only when it differs from the batch's.
func encodeBatch(dst []byte, b *ingest.Batch) []byte {
	dst = appendString(dst, b.Sensor)
	dst = appendString(dst, b.Stream)
	dst = binary.AppendUvarint(dst, b.Seq)
	dst = binary.AppendUvarint(dst, uint64(len(b.Conns)))
	var prev int64
	for i := range b.Conns {
		c := &b.Conns[i]
		dst = binary.AppendVarint(dst, c.TS-prev)
		prev = c.TS
		dst = appendString(dst, c.UID)
		dst = appendAddr(dst, c.OrigH)
		dst = appendAddr(dst, c.RespH)
		dst = binary.AppendUvarint(dst, uint64(c.OrigP))
		dst = binary.AppendUvarint(dst, uint64(c.RespP))
		dst = append(dst, byte(c.Proto), byte(c.ConnState), byte(c.LocalOrig), byte(c.LocalResp))
		dst = appendString(dst, c.Service)
		dst = binary.AppendUvarint(dst, uint64(c.Duration/time.Microsecond))
		for _, v := range [...]uint64{c.OrigBytes, c.RespBytes, c.MissedBytes, c.OrigPkts, c.OrigIPBytes, c.RespPkts, c.RespIPBytes} {
			dst = binary.AppendUvarint(dst, v)
		}
		dst = appendString(dst, c.History)
		if c.Sensor == b.Sensor {
			dst = append(dst, 0)
		} else {
			dst = append(dst, 1)
			dst = appendString(dst, c.Sensor)
		}
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendAddr(dst []byte, a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return append(append(dst, 4), b[:]...)
	}
	if !a.IsValid() {
		return append(dst, 0)
	}
	b := a.As16()
	return append(append(dst, 16), b[:]...)
}

// decoder reads what encodeBatch wrote; every read is bounds-checked, since
// a spool file is input too (a disk can lie).
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) string(in *interner) string {
	b := d.bytes(d.uvarint())
	if in != nil {
		return in.get(b)
	}
	return string(b)
}

func (d *decoder) byte() byte {
	b := d.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (d *decoder) addr() netip.Addr {
	switch d.byte() {
	case 0:
		return netip.Addr{}
	case 4:
		if b := d.bytes(4); b != nil {
			return netip.AddrFrom4([4]byte(b))
		}
	case 16:
		if b := d.bytes(16); b != nil {
			return netip.AddrFrom16([16]byte(b))
		}
	default:
		d.fail()
	}
	return netip.Addr{}
}

// interner shares the few distinct service, history and sensor strings of
// a decoded batch instead of allocating each.
type interner map[string]string

func (in *interner) get(b []byte) string {
	if s, ok := (*in)[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(*in) < 4096 {
		(*in)[s] = s
	}
	return s
}

// decodeBatch decodes a batch record's payload.
func decodeBatch(p []byte) (*ingest.Batch, error) {
	d := &decoder{b: p}
	in := interner{}
	b := &ingest.Batch{Sensor: d.string(&in), Stream: d.string(&in), Seq: d.uvarint()}
	n := d.uvarint()
	// Each record takes at least 20 bytes: refuse counts the payload cannot hold.
	if d.err != nil || n > uint64(len(d.b))/20+1 {
		return nil, fmt.Errorf("%w: %d records in %d bytes", errCorrupt, n, len(p))
	}
	b.Conns = make([]ingest.Conn, n)
	var prev int64
	for i := range b.Conns {
		c := &b.Conns[i]
		prev += d.varint()
		c.TS = prev
		c.UID = d.string(nil)
		c.OrigH, c.RespH = d.addr(), d.addr()
		c.OrigP, c.RespP = port(d), port(d)
		c.Proto, c.ConnState = ingest.Transport(d.byte()), ingest.ConnState(d.byte())
		c.LocalOrig, c.LocalResp = ingest.Tristate(d.byte()), ingest.Tristate(d.byte())
		c.Service = d.string(&in)
		us := d.uvarint()
		if us > math.MaxInt64/uint64(time.Microsecond) {
			d.fail()
		}
		c.Duration = time.Duration(us) * time.Microsecond
		for _, v := range [...]*uint64{&c.OrigBytes, &c.RespBytes, &c.MissedBytes, &c.OrigPkts, &c.OrigIPBytes, &c.RespPkts, &c.RespIPBytes} {
			*v = d.uvarint()
		}
		c.History = d.string(&in)
		switch d.byte() {
		case 0:
			c.Sensor = b.Sensor
		case 1:
			c.Sensor = d.string(&in)
		default:
			d.fail()
		}
		if d.err != nil {
			return nil, fmt.Errorf("%w: record %d of batch %d", d.err, i, b.Seq)
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	return b, nil
}

func port(d *decoder) uint16 {
	v := d.uvarint()
	if v > math.MaxUint16 {
		d.fail()
	}
	return uint16(v)
}
