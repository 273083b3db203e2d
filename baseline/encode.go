package baseline

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// Snapshot encoding, format 1: little-endian, fixed-width fields, in this
// order (ndr.baselines.snapshot holds it, ZSTD-compressed by ClickHouse):
//
//	magic "NDRBSNAP", format uint16 = 1
//	version uint64; fitted_at, data_from, data_to int64 µs since the epoch
//	params: uint32 length + JSON (Params)
//	internal_hosts uint64
//	population prior: prior
//	peers: uint32 count, then per peer: addr, bits uint8, prior
//	hosts: uint32 count, then per host (ascending address):
//	    addr, hours uint32, seasonal uint8, NumMetrics × metric,
//	    fan_median, fan_p99, fan_max float32, admin_mask uint16,
//	    admin_hours uint32, admin_median float32
//	destinations: uint32 count, then per destination (ascending):
//	    16-byte address (IPv4-mapped for IPv4), hosts uint32, first_seen int64 Unix s
//
//	addr   = family uint8 (4 or 6) + 16 bytes (IPv4-mapped for IPv4)
//	prior  = hosts uint32, NumMetrics × metric
//	metric = loc, scale, act, weight, k float32, active uint32,
//	         hod[24], dow[7], act_hod[24], act_dow[7] float32
//
// A new layout is a new format number; Decode reads every format it
// knows.
const (
	snapshotMagic  = "NDRBSNAP"
	snapshotFormat = 1
)

// MarshalBinary encodes the snapshot (format 1, above). The encoding is
// deterministic: equal snapshots give equal bytes.
func (s *Snapshot) MarshalBinary() ([]byte, error) {
	params, err := json.Marshal(s.params)
	if err != nil {
		return nil, fmt.Errorf("encode params: %w", err)
	}
	e := make([]byte, 0, 64+len(params)+len(s.hosts)*(40+NumMetrics*270)+len(s.dsts)*28)
	e = append(e, snapshotMagic...)
	e = binary.LittleEndian.AppendUint16(e, snapshotFormat)
	e = binary.LittleEndian.AppendUint64(e, s.version)
	for _, t := range []time.Time{s.fittedAt, s.from, s.to} {
		e = binary.LittleEndian.AppendUint64(e, uint64(t.UnixMicro()))
	}
	e = binary.LittleEndian.AppendUint32(e, uint32(len(params)))
	e = append(e, params...)
	e = binary.LittleEndian.AppendUint64(e, uint64(s.internalHosts))
	e = appendPrior(e, &s.pop)
	e = binary.LittleEndian.AppendUint32(e, uint32(len(s.peers)))
	for i := range s.peers {
		e = appendAddr(e, s.peers[i].net.Addr())
		e = append(e, uint8(s.peers[i].net.Bits()))
		e = appendPrior(e, &s.peers[i].prior)
	}
	e = binary.LittleEndian.AppendUint32(e, uint32(len(s.hosts)))
	for i := range s.hosts {
		h := &s.hosts[i]
		e = appendAddr(e, h.host)
		e = binary.LittleEndian.AppendUint32(e, h.hours)
		e = append(e, h.seasonal)
		for k := range h.m {
			e = appendMetric(e, &h.m[k])
		}
		e = appendF32(e, h.fanMed, h.fanP99, h.fanMax)
		e = binary.LittleEndian.AppendUint16(e, h.adminMask)
		e = binary.LittleEndian.AppendUint32(e, h.adminHours)
		e = appendF32(e, h.adminMed)
	}
	keys := make([][16]byte, 0, len(s.dsts))
	for k := range s.dsts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) })
	e = binary.LittleEndian.AppendUint32(e, uint32(len(keys)))
	for _, k := range keys {
		d := s.dsts[k]
		e = append(e, k[:]...)
		e = binary.LittleEndian.AppendUint32(e, d.hosts)
		e = binary.LittleEndian.AppendUint64(e, uint64(d.first))
	}
	return e, nil
}

func appendAddr(e []byte, a netip.Addr) []byte {
	fam := uint8(6)
	if a.Is4() {
		fam = 4
	}
	b := a.As16()
	return append(append(e, fam), b[:]...)
}

func appendF32(e []byte, fs ...float32) []byte {
	for _, f := range fs {
		e = binary.LittleEndian.AppendUint32(e, math.Float32bits(f))
	}
	return e
}

func appendMetric(e []byte, m *metricModel) []byte {
	e = appendF32(e, m.loc, m.scale, m.act, m.weight, m.k)
	e = binary.LittleEndian.AppendUint32(e, m.active)
	e = appendF32(e, m.hod[:]...)
	e = appendF32(e, m.dow[:]...)
	e = appendF32(e, m.actHod[:]...)
	return appendF32(e, m.actDow[:]...)
}

func appendPrior(e []byte, p *prior) []byte {
	e = binary.LittleEndian.AppendUint32(e, uint32(p.hosts))
	for k := range p.m {
		e = appendMetric(e, &p.m[k])
	}
	return e
}

// decoder reads the encoding; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("%w: truncated", ErrCorrupt)
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) u8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) f32s(fs []float32) {
	for i := range fs {
		fs[i] = math.Float32frombits(d.u32())
	}
}

// count reads a count of items of at least size bytes each and checks the
// input can hold them, so corrupt counts cannot force huge allocations.
func (d *decoder) count(size int) int {
	n := int(d.u32())
	if d.err == nil && n > len(d.b)/size {
		d.err = fmt.Errorf("%w: count %d exceeds the input", ErrCorrupt, n)
		return 0
	}
	return n
}

func (d *decoder) addr() netip.Addr {
	fam := d.u8()
	b := d.take(16)
	if b == nil {
		return netip.Addr{}
	}
	a := netip.AddrFrom16([16]byte(b))
	switch {
	case fam == 4 && a.Is4In6():
		return a.Unmap()
	case fam == 6:
		return a
	}
	if d.err == nil {
		d.err = fmt.Errorf("%w: address family %d", ErrCorrupt, fam)
	}
	return netip.Addr{}
}

func (d *decoder) metric(m *metricModel) {
	var head [5]float32
	d.f32s(head[:])
	m.loc, m.scale, m.act, m.weight, m.k = head[0], head[1], head[2], head[3], head[4]
	m.active = d.u32()
	d.f32s(m.hod[:])
	d.f32s(m.dow[:])
	d.f32s(m.actHod[:])
	d.f32s(m.actDow[:])
}

func (d *decoder) prior(p *prior) {
	p.hosts = int(d.u32())
	for k := range p.m {
		d.metric(&p.m[k])
	}
}

const metricBytes = 4*6 + 4*(24+7+24+7)

// Decode reads a snapshot written by MarshalBinary. Errors wrap
// ErrCorrupt.
func Decode(b []byte) (*Snapshot, error) {
	d := &decoder{b: b}
	if string(d.take(len(snapshotMagic))) != snapshotMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if f := d.u16(); f != snapshotFormat {
		if d.err != nil {
			return nil, d.err
		}
		return nil, fmt.Errorf("%w: unknown format %d", ErrCorrupt, f)
	}
	s := &Snapshot{version: d.u64()}
	s.fittedAt = time.UnixMicro(int64(d.u64())).UTC()
	s.from = time.UnixMicro(int64(d.u64())).UTC()
	s.to = time.UnixMicro(int64(d.u64())).UTC()
	if pj := d.take(int(d.u32())); d.err == nil {
		dec := json.NewDecoder(bytes.NewReader(pj))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s.params); err != nil {
			return nil, fmt.Errorf("%w: params: %v", ErrCorrupt, err)
		}
		if err := s.params.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
	}
	s.internalHosts = int(d.u64())
	d.prior(&s.pop)
	s.peers = make([]peerPrior, d.count(17+1+4+NumMetrics*metricBytes))
	s.peerIdx = make(map[netip.Prefix]int32, len(s.peers))
	for i := range s.peers {
		a := d.addr()
		bits := int(d.u8())
		d.prior(&s.peers[i].prior)
		p, err := a.Prefix(bits)
		if d.err == nil && (err != nil || p.Addr() != a) {
			d.err = fmt.Errorf("%w: peer prefix %s/%d", ErrCorrupt, a, bits)
		}
		s.peers[i].net = p
		s.peerIdx[p] = int32(i)
	}
	s.hosts = make([]hostModel, d.count(17+4+1+NumMetrics*metricBytes+12+2+4+4))
	s.index = make(map[netip.Addr]int32, len(s.hosts))
	for i := range s.hosts {
		h := &s.hosts[i]
		h.host = d.addr()
		h.hours = d.u32()
		h.seasonal = d.u8()
		for k := range h.m {
			d.metric(&h.m[k])
		}
		var fan [3]float32
		d.f32s(fan[:])
		h.fanMed, h.fanP99, h.fanMax = fan[0], fan[1], fan[2]
		h.adminMask = d.u16()
		h.adminHours = d.u32()
		var med [1]float32
		d.f32s(med[:])
		h.adminMed = med[0]
		if _, dup := s.index[h.host]; d.err == nil && (dup || !h.host.IsValid()) {
			d.err = fmt.Errorf("%w: host %s repeated or invalid", ErrCorrupt, h.host)
		}
		s.index[h.host] = int32(i)
	}
	n := d.count(16 + 4 + 8)
	s.dsts = make(map[[16]byte]dstEntry, n)
	for range n {
		k := d.take(16)
		e := dstEntry{hosts: d.u32(), first: int64(d.u64())}
		if d.err == nil {
			s.dsts[[16]byte(k)] = e
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return s, nil
}

// Equal reports whether two snapshots hold the same models, priors,
// prevalence and metadata.
func (s *Snapshot) Equal(o *Snapshot) bool {
	a, err1 := s.MarshalBinary()
	b, err2 := o.MarshalBinary()
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}
