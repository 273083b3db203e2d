package scenario

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

// Generate returns the whole run in event-time order with its labels. Use
// Stream for runs too large to hold.
func Generate(spec Spec) ([]ingest.Conn, []Label, error) {
	var conns []ingest.Conn
	labels, err := Stream(spec, func(c *ingest.Conn) error {
		conns = append(conns, *c)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return conns, labels, nil
}

// Stream generates the run and calls fn with every connection in order of
// TS (ties in a fixed order). The Conn is only valid during the call; fn
// copies it to keep it. The first error fn returns stops generation and is
// returned. The labels' counts and times cover the connections passed to
// fn.
func Stream(spec Spec, fn func(*ingest.Conn) error) ([]Label, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	p := build(&spec)
	e := &emitter{start: spec.Start.UnixMicro(), end: spec.Start.Add(spec.Duration).UnixMicro(), sensor: spec.Sensor}
	e.pend.less = func(a, b *pending) bool {
		return a.c.TS < b.c.TS || a.c.TS == b.c.TS && a.seq < b.seq
	}
	srcs := heap[srcEntry]{less: func(a, b *srcEntry) bool {
		return a.ts < b.ts || a.ts == b.ts && a.idx < b.idx
	}}
	for i, s := range p.sources {
		if ts, ok := s.src.next(); ok && ts < e.end {
			srcs.push(srcEntry{ts: ts, idx: i, lbl: s.lbl, src: s.src})
		}
	}
	for {
		// A connection may leave only once no source can still produce
		// an earlier one: every session starts at or after its source's
		// next(), and sources are visited in order of next().
		for srcs.len() > 0 {
			top := &srcs.s[0]
			if e.pend.len() > 0 && top.ts > e.pend.s[0].c.TS {
				break
			}
			e.lbl = top.lbl
			top.src.run(e)
			if ts, ok := top.src.next(); ok && ts < e.end {
				top.ts = ts
				srcs.fix0()
			} else {
				srcs.pop()
			}
		}
		if e.pend.len() == 0 {
			break
		}
		pc := e.pend.pop()
		p.labels[pc.lbl].count(&pc.c)
		if err := fn(&pc.c); err != nil {
			return nil, err
		}
	}
	out := make([]Label, len(p.labels))
	for i := range p.labels {
		out[i] = p.labels[i].finish()
	}
	for _, c := range p.chains {
		l := &out[c.lbl]
		for _, i := range c.parts {
			part := out[i]
			if part.Conns > 0 && (l.Conns == 0 || part.First.Before(l.First)) {
				l.First = part.First
			}
			if part.Last.After(l.Last) {
				l.Last = part.Last
			}
			l.Conns += part.Conns
			l.OrigBytes += part.OrigBytes
			l.RespBytes += part.RespBytes
			l.Dsts = appendNew(l.Dsts, part.Dsts...)
			l.Ports = appendNew(l.Ports, part.Ports...)
			l.Staging = appendNew(l.Staging, part.Staging...)
		}
	}
	return out, nil
}

// source is one scenario instance's traffic (or one host's share of it)
// as a sequence of sessions with non-decreasing start times.
type source interface {
	// next is the start of the next session; ok is false when none remain.
	next() (ts int64, ok bool)
	// run emits the next session's connections, none starting before
	// next(), and advances.
	run(e *emitter)
}

type srcEntry struct {
	ts  int64
	idx int
	lbl int
	src source
}

type pending struct {
	c   ingest.Conn
	seq uint64
	lbl int
}

// labelState accumulates a label's counts as its connections leave.
type labelState struct {
	Label
	first, last int64
}

func (l *labelState) count(c *ingest.Conn) {
	if l.Conns == 0 || c.TS < l.first {
		l.first = c.TS
	}
	if c.TS > l.last {
		l.last = c.TS
	}
	l.Conns++
	l.OrigBytes += c.OrigBytes
	l.RespBytes += c.RespBytes
}

func (l *labelState) finish() Label {
	out := l.Label
	if out.Conns > 0 {
		out.First = time.UnixMicro(l.first).UTC()
		out.Last = time.UnixMicro(l.last).UTC()
	}
	return out
}

// newRand returns an instance's own PCG stream, keyed by the spec's seed
// and the instance id, so that instances do not perturb each other.
func newRand(seed uint64, id string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(id))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// emitter receives the connections sources produce and holds them until
// their turn.
type emitter struct {
	start, end int64
	sensor     string
	lbl        int // label of the source being run
	seq        uint64
	pend       heap[pending]
}

// add queues c unless it starts outside the run.
func (e *emitter) add(c ingest.Conn) {
	if c.TS < e.start || c.TS >= e.end {
		return
	}
	c.Sensor = e.sensor
	e.seq++
	e.pend.push(pending{c: c, seq: e.seq, lbl: e.lbl})
}

// Packet arithmetic shared by the connection builders. The invariant
// tests rely on: ip_bytes = payload bytes + header x packets.
const (
	mss    = 1448 // TCP payload per full segment on a 1500-byte path
	tcpHdr = 52   // IPv4 20 + TCP 20 + timestamp option 12
	udpHdr = 28   // IPv4 20 + UDP 8
)

func segs(b uint64) uint64 { return (b + mss - 1) / mss }

func base(r *rand.Rand, ts int64, src, dst netip.Addr, sport, dport uint16, proto ingest.Transport) ingest.Conn {
	return ingest.Conn{
		TS: ts, UID: uid(r),
		OrigH: src, RespH: dst, OrigP: sport, RespP: dport, Proto: proto,
		LocalOrig: ingest.TristateOf(src.IsPrivate()),
		LocalResp: ingest.TristateOf(dst.IsPrivate()),
	}
}

// tcp emits an established, normally closed (SF) TCP connection.
func (e *emitter) tcp(r *rand.Rand, ts int64, src, dst netip.Addr, dport uint16, service string, ob, rb uint64, dur time.Duration) {
	c := base(r, ts, src, dst, ephemeral(r), dport, ingest.TCP)
	c.Service = service
	c.ConnState = ingest.SF
	c.Duration = dur.Truncate(time.Microsecond)
	c.OrigBytes, c.RespBytes = ob, rb
	od, rd := segs(ob), segs(rb)
	// SYN, handshake ACK and FIN, the data, and a delayed ACK for every
	// second segment received; the responder also ACKs the FIN.
	c.OrigPkts = 3 + od + rd/2
	c.RespPkts = 3 + rd + od/2
	c.OrigIPBytes = ob + tcpHdr*c.OrigPkts
	c.RespIPBytes = rb + tcpHdr*c.RespPkts
	h := "ShA"
	if ob > 0 {
		h += "D"
	}
	if rb > 0 {
		h += "ad"
	} else {
		h += "a"
	}
	c.History = h + "Ff"
	e.add(c)
}

// probe emits a connection attempt that got no session: open (the
// scanner completes the handshake and resets, RSTO), refused (REJ) or
// filtered (S0, sometimes with one SYN retransmission).
func (e *emitter) probe(r *rand.Rand, ts int64, src, dst netip.Addr, dport uint16, state ingest.ConnState) {
	c := base(r, ts, src, dst, ephemeral(r), dport, ingest.TCP)
	c.ConnState = state
	switch state {
	case ingest.RSTO:
		c.History = "ShAR"
		c.OrigPkts, c.RespPkts = 3, 1
		c.Duration = time.Duration(200+r.IntN(2000)) * time.Microsecond
	case ingest.REJ:
		c.History = "Sr"
		c.OrigPkts, c.RespPkts = 1, 1
		c.Duration = time.Duration(100+r.IntN(900)) * time.Microsecond
	default: // S0
		c.History = "S"
		c.OrigPkts = 1
		if r.IntN(2) == 0 {
			c.OrigPkts = 2
			c.Duration = time.Second + time.Duration(r.IntN(5000))*time.Microsecond
		}
	}
	c.OrigIPBytes = tcpHdr * c.OrigPkts
	c.RespIPBytes = tcpHdr * c.RespPkts
	e.add(c)
}

// udp emits a request/response exchange over UDP, which Zeek reports as
// SF with history Dd.
func (e *emitter) udp(r *rand.Rand, ts int64, src, dst netip.Addr, sport, dport uint16, service string, ob, rb uint64, dur time.Duration) {
	c := base(r, ts, src, dst, sport, dport, ingest.UDP)
	c.Service = service
	c.ConnState = ingest.SF
	c.History = "Dd"
	c.Duration = dur.Truncate(time.Microsecond)
	c.OrigBytes, c.RespBytes = ob, rb
	c.OrigPkts, c.RespPkts = 1, 1
	c.OrigIPBytes = ob + udpHdr
	c.RespIPBytes = rb + udpHdr
	e.add(c)
}

func ephemeral(r *rand.Rand) uint16 { return uint16(49152 + r.IntN(16384)) }

// uid returns a Zeek-style connection uid: "C" and 17 base62 characters.
func uid(r *rand.Rand) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b [18]byte
	b[0] = 'C'
	x, y := r.Uint64(), r.Uint64()
	for i := 1; i < 11; i++ {
		b[i] = digits[x%62]
		x /= 62
	}
	for i := 11; i < 18; i++ {
		b[i] = digits[y%62]
		y /= 62
	}
	return string(b[:])
}

// around returns mean x (1 + u), u uniform in [-frac, +frac], at least 1.
func around(r *rand.Rand, mean uint64, frac float64) uint64 {
	v := float64(mean) * (1 + frac*(2*r.Float64()-1))
	if v < 1 {
		return 1
	}
	return uint64(math.Round(v))
}

// between returns a uniform integer in [lo, hi].
func between(r *rand.Rand, lo, hi uint64) uint64 {
	if hi <= lo {
		return lo
	}
	return lo + r.Uint64N(hi-lo+1)
}

// logUniform returns a value whose logarithm is uniform in [log lo,
// log hi]: transfer sizes span orders of magnitude.
func logUniform(r *rand.Rand, lo, hi float64) uint64 {
	return uint64(math.Exp(math.Log(lo) + r.Float64()*(math.Log(hi)-math.Log(lo))))
}

// jittered returns d x (1 + u), u uniform in [-jitter, +jitter], in
// microseconds.
func jittered(r *rand.Rand, d time.Duration, jitter float64) int64 {
	return int64(math.Round(float64(d.Microseconds()) * (1 + jitter*(2*r.Float64()-1))))
}

// transfer is how long bytes take at mbps, plus a little setup time.
func transfer(r *rand.Rand, bytes uint64, mbps float64) time.Duration {
	s := float64(bytes)*8/(mbps*1e6) + 0.05 + 0.2*r.Float64()
	return time.Duration(s*1e6) * time.Microsecond
}

// secs converts a float number of seconds to a Duration.
func secs(s float64) time.Duration { return time.Duration(s*1e6) * time.Microsecond }

// heap is a binary min-heap. container/heap would box every element in an
// interface, an allocation per connection.
type heap[T any] struct {
	s    []T
	less func(a, b *T) bool
}

func (h *heap[T]) len() int { return len(h.s) }

func (h *heap[T]) push(v T) {
	h.s = append(h.s, v)
	i := len(h.s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(&h.s[i], &h.s[p]) {
			break
		}
		h.s[i], h.s[p] = h.s[p], h.s[i]
		i = p
	}
}

func (h *heap[T]) pop() T {
	v := h.s[0]
	n := len(h.s) - 1
	h.s[0] = h.s[n]
	var zero T
	h.s[n] = zero
	h.s = h.s[:n]
	if n > 0 {
		h.fix0()
	}
	return v
}

// fix0 restores the order after the minimum's key grew.
func (h *heap[T]) fix0() {
	i, n := 0, len(h.s)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.less(&h.s[r], &h.s[l]) {
			m = r
		}
		if !h.less(&h.s[m], &h.s[i]) {
			return
		}
		h.s[i], h.s[m] = h.s[m], h.s[i]
		i = m
	}
}

// appendNew appends the values of vs that dst lacks.
func appendNew[T comparable](dst []T, vs ...T) []T {
	for _, v := range vs {
		if !slices.Contains(dst, v) {
			dst = append(dst, v)
		}
	}
	return dst
}
