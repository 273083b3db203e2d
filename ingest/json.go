package ingest

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON readers use this hand-written scanner instead of encoding/json:
// reflection-based decoding costs several allocations and microseconds per
// record, an order of magnitude over the budget for replaying a day of
// Zeek logs. The scanner understands flat objects of scalars, Zeek's
// nested "id" object, and skips any other nested value.

// jsonScanner walks one JSON text held in memory.
type jsonScanner struct {
	b []byte
	i int
}

// valueKind is the kind of a scalar JSON value.
type valueKind uint8

const (
	kindString valueKind = iota
	kindNumber
	kindBool
	kindNull
)

func (p *jsonScanner) skipWS() {
	// Zeek writes no whitespace: settle that case without the loop.
	if p.i < len(p.b) && p.b[p.i] > ' ' {
		return
	}
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonScanner) syntax(what string) error {
	return fmt.Errorf("%w: json: %s at offset %d", ErrSyntax, what, p.i)
}

// str reads a string. Without escapes the result aliases the input; with
// escapes it is decoded into *scratch. Either is valid until the next call.
func (p *jsonScanner) str(scratch *[]byte) ([]byte, error) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, p.syntax("expected string")
	}
	p.i++
	start := p.i
	p.i = stringSpecial(p.b, p.i)
	if p.i >= len(p.b) {
		return nil, p.syntax("unterminated string")
	}
	switch c := p.b[p.i]; {
	case c == '"':
		s := p.b[start:p.i]
		p.i++
		return s, nil
	case c == '\\':
		return p.strEscaped(start, scratch)
	}
	return nil, p.syntax("control character in string")
}

// stringSpecial returns the index of the first byte at or after i that
// ends the plain run of a JSON string ('"', '\\' or a control character),
// or len(b). It tests eight bytes per step with the zero-byte and
// less-than tricks of Bit Twiddling Hacks; their false positives only
// occur above a true match, so the lowest flagged byte is exact.
func stringSpecial(b []byte, i int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ ('"' * lo)
		bs := x ^ ('\\' * lo)
		t := ((q - lo) &^ q) | ((bs - lo) &^ bs) | ((x - 0x20*lo) &^ x)
		if t &= hi; t != 0 {
			return i + bits.TrailingZeros64(t)>>3
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < 0x20 {
			return i
		}
	}
	return i
}

func (p *jsonScanner) strEscaped(start int, scratch *[]byte) ([]byte, error) {
	out := append((*scratch)[:0], p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			*scratch = out
			return out, nil
		case c < 0x20:
			return nil, p.syntax("control character in string")
		case c != '\\':
			out = append(out, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.b) {
			break
		}
		e := p.b[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, p.syntax("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// A high surrogate must be followed by \u and a low one;
				// anything else decodes to U+FFFD as encoding/json does.
				r2 := utf8.RuneError
				if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					if lo, ok := p.hex4(); ok && utf16.DecodeRune(r, lo) != utf8.RuneError {
						r2 = utf16.DecodeRune(r, lo)
					} else {
						p.i = save
					}
				}
				r = r2
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, p.syntax("invalid escape")
		}
	}
	return nil, p.syntax("unterminated string")
}

func (p *jsonScanner) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		d, ok := unhex(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	p.i += 4
	return r, true
}

// scalar reads a string, number, boolean or null. Numbers and literals are
// returned as their text, which the field parsers read like Zeek TSV text.
func (p *jsonScanner) scalar(scratch *[]byte) ([]byte, valueKind, error) {
	if p.i >= len(p.b) {
		return nil, 0, p.syntax("expected value")
	}
	switch c := p.b[p.i]; {
	case c == '"':
		s, err := p.str(scratch)
		return s, kindString, err
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.i
		for p.i < len(p.b) && isNumberByte(p.b[p.i]) {
			p.i++
		}
		return p.b[start:p.i], kindNumber, nil
	case c == 't' || c == 'f' || c == 'n':
		start := p.i
		for p.i < len(p.b) && p.b[p.i] >= 'a' && p.b[p.i] <= 'z' {
			p.i++
		}
		switch lit := p.b[start:p.i]; string(lit) {
		case "true", "false":
			return lit, kindBool, nil
		case "null":
			return nil, kindNull, nil
		}
		p.i = start
		return nil, 0, p.syntax("invalid literal")
	case c == '{' || c == '[':
		return nil, 0, p.syntax("expected a scalar, found an object or array")
	}
	return nil, 0, p.syntax("invalid character")
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'
}

// skip passes over any value, nested or not, without decoding it. Depth is
// counted rather than recursed, so deep nesting cannot exhaust the stack.
func (p *jsonScanner) skip() error {
	if p.i >= len(p.b) {
		return p.syntax("expected value")
	}
	switch p.b[p.i] {
	case '{', '[':
	default:
		var scratch []byte
		_, _, err := p.scalarNoDecode(&scratch)
		return err
	}
	depth := 0
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				p.i++
				return nil
			}
		case '"':
			if err := p.skipString(); err != nil {
				return err
			}
			continue
		}
		p.i++
	}
	return p.syntax("unterminated object or array")
}

// scalarNoDecode is scalar without decoding escapes in strings.
func (p *jsonScanner) scalarNoDecode(scratch *[]byte) ([]byte, valueKind, error) {
	if p.i < len(p.b) && p.b[p.i] == '"' {
		return nil, kindString, p.skipString()
	}
	return p.scalar(scratch)
}

func (p *jsonScanner) skipString() error {
	p.i++ // opening quote
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			return nil
		case c == '\\':
			p.i += 2
			continue
		case c < 0x20:
			return p.syntax("control character in string")
		}
		p.i++
	}
	return p.syntax("unterminated string")
}

// jsonRecord collects what one object said before it is turned into a
// Conn: which fields it set, and the simple-event keys, whose meaning
// depends on each other (is_outbound decides where bytes_transferred goes).
type jsonRecord struct {
	seen     fieldSet
	ts       int64 // event_time
	src, dst netip.Addr
	sport    uint16
	dport    uint16
	bytes    uint64
	outbound Tristate
	protoLen int // protocol, lowercased, is protoBuf[:protoLen]
	protoBuf [16]byte
}

// parseJSON parses one JSON object, a Zeek JSON log record or a simple
// event, into c. ok is false for blank lines.
func (r *FileReader) parseJSON(c *Conn, b []byte) (ok bool, err error) {
	p := jsonScanner{b: b}
	p.skipWS()
	if p.i == len(b) {
		return false, nil
	}
	if b[p.i] != '{' {
		return false, p.syntax("expected an object")
	}
	p.i++
	var rec jsonRecord
	if err := r.jsonMembers(&p, c, &rec, false); err != nil {
		return false, err
	}
	p.skipWS()
	if p.i != len(b) {
		return false, p.syntax("data after the object")
	}
	return true, r.finishJSON(c, &rec)
}

// keyHint is a key as the previous record spelled it, with its ':'.
type keyHint struct {
	raw []byte
	f   field
}

// maxKeyHints bounds the remembered keys; conn records have about 20.
const maxKeyHints = 48

// jsonKey reads the *kp-th key of a top-level object and its ':', and
// moves *kp to the hint it matched. A log's
// records repeat their keys in the same order, so the key the previous
// record had at this position (or a few after it, when Zeek omitted unset
// fields) is compared as raw bytes first; only a miss pays for scanning
// and looking up the key, and teaches the hints the new spelling.
func (r *FileReader) jsonKey(p *jsonScanner, kp *int) (field, error) {
	k := *kp
	rest := p.b[p.i:]
	for j := k; j < len(r.keyHints) && j <= k+3; j++ {
		h := &r.keyHints[j]
		if len(rest) >= len(h.raw) && string(rest[:len(h.raw)]) == string(h.raw) {
			p.i += len(h.raw)
			*kp = j
			return h.f, nil
		}
	}
	start := p.i
	key, err := p.str(&r.scratch)
	if err != nil {
		return fNone, err
	}
	f := jsonField(key)
	// Only a plain spelling ("key": with no escapes or spaces) can be
	// matched byte for byte later.
	plain := p.i-start == len(key)+2 && p.i < len(p.b) && p.b[p.i] == ':'
	if err := p.colon(); err != nil {
		return fNone, err
	}
	if plain && k < maxKeyHints {
		if k < len(r.keyHints) {
			r.keyHints[k].raw = append(r.keyHints[k].raw[:0], p.b[start:p.i]...)
			r.keyHints[k].f = f
		} else if k == len(r.keyHints) {
			r.keyHints = append(r.keyHints, keyHint{raw: append([]byte(nil), p.b[start:p.i]...), f: f})
		}
	}
	return f, nil
}

// colon consumes the ':' after a key.
func (p *jsonScanner) colon() error {
	p.skipWS()
	if p.i >= len(p.b) || p.b[p.i] != ':' {
		return p.syntax("expected ':'")
	}
	p.i++
	return nil
}

// jsonMembers reads the members of an object whose '{' has been consumed.
// inID is set inside Zeek's nested "id" object.
func (r *FileReader) jsonMembers(p *jsonScanner, c *Conn, rec *jsonRecord, inID bool) error {
	p.skipWS()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return nil
	}
	for k := 0; ; k++ {
		p.skipWS()
		var f field
		if inID {
			key, err := p.str(&r.scratch)
			if err != nil {
				return err
			}
			f = idField(key)
			if err := p.colon(); err != nil {
				return err
			}
		} else {
			var err error
			if f, err = r.jsonKey(p, &k); err != nil {
				return err
			}
		}
		p.skipWS()
		switch {
		case f == fID && p.i < len(p.b) && p.b[p.i] == '{':
			p.i++
			if err := r.jsonMembers(p, c, rec, true); err != nil {
				return err
			}
		case f == fPath:
			v, kind, err := p.scalar(&r.scratch)
			if err != nil {
				return err
			}
			if kind == kindString && !isConnPath(v) {
				return fmt.Errorf("%w: _path is %q", ErrNotConnLog, truncate(v))
			}
		case f == fNone || f == fID:
			if err := p.skip(); err != nil {
				return err
			}
		default:
			v, kind, err := p.scalar(&r.scratch)
			if err != nil {
				return err
			}
			// Zeek omits unset fields; shippers that keep them write null,
			// "" or Zeek's "-".
			if kind != kindNull && len(v) > 0 && !(len(v) == 1 && v[0] == '-' && kind == kindString) {
				if err := r.setJSONField(c, rec, f, v); err != nil {
					return err
				}
				rec.seen.add(f)
			}
		}
		p.skipWS()
		if p.i >= len(p.b) {
			return p.syntax("unterminated object")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		default:
			return p.syntax("expected ',' or '}'")
		}
	}
}

func (r *FileReader) setJSONField(c *Conn, rec *jsonRecord, f field, v []byte) error {
	var ok bool
	switch f {
	case fEventTime:
		if rec.ts, ok = parseTime(v); !ok {
			return badValue(f, "invalid time", v)
		}
	case fSrcIP:
		if rec.src, ok = parseAddr(v); !ok {
			return badValue(f, "invalid address", v)
		}
	case fDstIP:
		if rec.dst, ok = parseAddr(v); !ok {
			return badValue(f, "invalid address", v)
		}
	case fSrcPort:
		if rec.sport, ok = parsePort(v); !ok {
			return badValue(f, "invalid port", v)
		}
	case fDstPort:
		if rec.dport, ok = parsePort(v); !ok {
			return badValue(f, "invalid port", v)
		}
	case fBytesTransferred:
		if rec.bytes, ok = parseUint(v); !ok {
			return badValue(f, "invalid count", v)
		}
	case fIsOutbound:
		if rec.outbound, ok = parseTF(v); !ok {
			return badValue(f, "invalid boolean", v)
		}
	case fProtocol:
		if len(v) > len(rec.protoBuf) || !printable(v) {
			return badValue(f, "invalid protocol", v)
		}
		n := copy(rec.protoBuf[:], v)
		for i := range n {
			if b := rec.protoBuf[i]; b >= 'A' && b <= 'Z' {
				rec.protoBuf[i] = b + 'a' - 'A'
			}
		}
		rec.protoLen = n
	default:
		return r.setField(c, f, v)
	}
	return nil
}

// finishJSON decides whether the object was a Zeek record or a simple event
// and completes c. Any Zeek address key makes it a Zeek record; otherwise
// the simple-event keys are mapped: src is the originator, and the bytes
// went orig->resp unless is_outbound is false.
func (r *FileReader) finishJSON(c *Conn, rec *jsonRecord) error {
	s := rec.seen
	if s.has(fOrigH) || s.has(fRespH) || !(s.has(fSrcIP) || s.has(fDstIP)) {
		return requireZeek(&s)
	}
	switch {
	case !s.has(fTS) && !s.has(fEventTime):
		return &FieldError{Field: "ts", Reason: "missing"}
	case !s.has(fSrcIP):
		return &FieldError{Field: "src_ip", Reason: "missing"}
	case !s.has(fDstIP):
		return &FieldError{Field: "dest_ip", Reason: "missing"}
	}
	if !s.has(fTS) {
		c.TS = rec.ts
	}
	c.OrigH, c.RespH = rec.src, rec.dst
	if s.has(fSrcPort) {
		c.OrigP = rec.sport
	}
	if s.has(fDstPort) {
		c.RespP = rec.dport
	}
	if s.has(fBytesTransferred) {
		if rec.outbound == False {
			c.RespBytes = rec.bytes
		} else {
			c.OrigBytes = rec.bytes
		}
	}
	if s.has(fProtocol) {
		// The reference names applications ("SMB", "HTTPS"); a transport
		// name goes where transports go.
		proto := rec.protoBuf[:rec.protoLen]
		if t, ok := parseTransport(proto); ok && t != TransportUnknown {
			c.Proto = t
		} else {
			c.Service = r.intern.get(proto)
		}
	}
	return nil
}
