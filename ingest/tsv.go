package ingest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"time"
)

// tsvHeader is the state of the current Zeek ASCII log header block. A
// #separator line starts a new block, so concatenated logs with different
// column orders read correctly.
type tsvHeader struct {
	sep    []byte
	setSep []byte // kept for completeness: no conn field we read is a set
	empty  []byte
	unset  []byte
	cols   []field // the #fields columns; valid when hasCols
	// hasCols is false until a #fields line, and after each #separator.
	hasCols bool
}

func (h *tsvHeader) reset() {
	h.sep = append(h.sep[:0], '\t')
	h.setSep = append(h.setSep[:0], ',')
	h.empty = append(h.empty[:0], "(empty)"...)
	h.unset = append(h.unset[:0], '-')
	h.cols = h.cols[:0]
	h.hasCols = false
}

// parseTSV parses one line of a Zeek ASCII log into c. ok is false for
// header and blank lines, which carry no record.
func (r *FileReader) parseTSV(c *Conn, line []byte) (ok bool, err error) {
	if len(line) == 0 {
		return false, nil
	}
	if line[0] == '#' {
		return false, r.tsvDirective(line)
	}
	h := &r.tsv
	if !h.hasCols {
		return false, ErrNoHeader
	}
	var seen fieldSet
	if len(h.sep) == 1 && len(h.cols) <= maxFastCols {
		// Find every separator first: a branch per field boundary costs a
		// misprediction each, and they dominated the parse.
		var pos [maxFastCols]int32
		n := sepPositions(line, h.sep[0], &pos)
		if n+1 != len(h.cols) {
			return false, fmt.Errorf("%w: %d fields, the #fields header has %d", ErrSyntax, n+1, len(h.cols))
		}
		start := 0
		for col, f := range h.cols {
			end := len(line)
			if col < n {
				end = int(pos[col])
			}
			v := line[start:end]
			start = end + 1
			if f != fNone && !h.isUnset(v) {
				if err := r.setField(c, f, v); err != nil {
					return false, err
				}
				seen.add(f)
			}
		}
		return true, requireZeek(&seen)
	}
	col := 0
	rest := line
	for {
		v := rest
		i := bytes.Index(rest, h.sep)
		if i >= 0 {
			v = rest[:i]
		}
		if col < len(h.cols) {
			if f := h.cols[col]; f != fNone && !h.isUnset(v) {
				if err := r.setField(c, f, v); err != nil {
					return false, err
				}
				seen.add(f)
			}
		}
		col++
		if i < 0 {
			break
		}
		rest = rest[i+len(h.sep):]
	}
	if col != len(h.cols) {
		return false, fmt.Errorf("%w: %d fields, the #fields header has %d", ErrSyntax, col, len(h.cols))
	}
	return true, requireZeek(&seen)
}

// maxFastCols bounds the columns of the fast path; conn.log has about 21.
const maxFastCols = 64

// sepPositions stores the offsets of c in l into pos, as far as it has
// room, and returns how many there are. It tests eight bytes per step with
// an exact SWAR zero-byte mask (Bit Twiddling Hacks, "determine if a word
// has a zero byte", the carry-free variant), so that only separators, not
// every byte, cost a branch.
func sepPositions(l []byte, c byte, pos *[maxFastCols]int32) int {
	const m7 = 0x7f7f7f7f7f7f7f7f
	pat := 0x0101010101010101 * uint64(c)
	n := 0
	i := 0
	for ; i+8 <= len(l); i += 8 {
		x := binary.LittleEndian.Uint64(l[i:]) ^ pat
		t := ^(((x & m7) + m7) | x | m7)
		for t != 0 {
			if n < len(pos) {
				pos[n] = int32(i + bits.TrailingZeros64(t)>>3)
			}
			n++
			t &= t - 1
		}
	}
	for ; i < len(l); i++ {
		if l[i] == c {
			if n < len(pos) {
				pos[n] = int32(i)
			}
			n++
		}
	}
	return n
}

func (h *tsvHeader) isUnset(v []byte) bool {
	// The first-byte test settles nearly every field without a compare
	// call: values rarely start with '-' or '('.
	if len(v) == 0 {
		return true
	}
	if len(h.unset) > 0 && v[0] == h.unset[0] && string(v) == string(h.unset) {
		return true
	}
	return len(h.empty) > 0 && v[0] == h.empty[0] && string(v) == string(h.empty)
}

// tsvDirective applies a header line. Unknown directives (#open, #types,
// #close, comments) are ignored.
func (r *FileReader) tsvDirective(line []byte) error {
	h := &r.tsv
	// #separator's own value follows a space: the separator is not known
	// until it is read.
	if v, ok := bytes.CutPrefix(line, []byte("#separator ")); ok {
		sep, ok := unescapeZeek(v)
		if !ok || len(sep) == 0 {
			return fmt.Errorf("%w: bad #separator %q", ErrSyntax, truncate(v))
		}
		h.reset()
		h.sep = append(h.sep[:0], sep...)
		return nil
	}
	name, v, _ := bytes.Cut(line, h.sep)
	switch string(name) {
	case "#set_separator":
		if s, ok := unescapeZeek(v); ok {
			h.setSep = append(h.setSep[:0], s...)
		}
	case "#empty_field":
		if s, ok := unescapeZeek(v); ok {
			h.empty = append(h.empty[:0], s...)
		}
	case "#unset_field":
		if s, ok := unescapeZeek(v); ok {
			h.unset = append(h.unset[:0], s...)
		}
	case "#path":
		if !isConnPath(v) {
			return fmt.Errorf("%w: #path is %q", ErrNotConnLog, truncate(v))
		}
	case "#fields":
		h.cols = h.cols[:0]
		h.hasCols = true
		var seen fieldSet
		for {
			name, rest, found := bytes.Cut(v, h.sep)
			f := zeekField(name)
			if seen.has(f) {
				f = fNone // the first of duplicate columns wins
			}
			seen.add(f)
			h.cols = append(h.cols, f)
			if !found {
				break
			}
			v = rest
		}
	}
	return nil
}

// isConnPath accepts conn and its variants with the same columns, such as
// conn_long from the long-connections package.
func isConnPath(p []byte) bool {
	return string(p) == "conn" || bytes.HasPrefix(p, []byte("conn_")) || bytes.HasPrefix(p, []byte("conn-"))
}

// unescapeZeek decodes the \xHH escapes Zeek writes in header values.
func unescapeZeek(v []byte) ([]byte, bool) {
	if bytes.IndexByte(v, '\\') < 0 {
		return v, true
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' {
			out = append(out, v[i])
			continue
		}
		if i+3 < len(v) && v[i+1] == 'x' {
			hi, ok1 := unhex(v[i+2])
			lo, ok2 := unhex(v[i+3])
			if ok1 && ok2 {
				out = append(out, hi<<4|lo)
				i += 3
				continue
			}
		}
		return nil, false
	}
	return out, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// fieldSet records which fields a record has set.
type fieldSet uint64

func (s *fieldSet) add(f field)     { *s |= 1 << f }
func (s fieldSet) has(f field) bool { return s&(1<<f) != 0 }

// requireZeek checks the fields without which a record means nothing.
func requireZeek(s *fieldSet) error {
	switch {
	case !s.has(fTS):
		return &FieldError{Field: "ts", Reason: "missing"}
	case !s.has(fOrigH):
		return &FieldError{Field: "id.orig_h", Reason: "missing"}
	case !s.has(fRespH):
		return &FieldError{Field: "id.resp_h", Reason: "missing"}
	}
	return nil
}

// setField parses the text of a Zeek field into c.
func (r *FileReader) setField(c *Conn, f field, v []byte) error {
	var ok bool
	switch f {
	case fTS:
		c.TS, ok = parseTime(v)
		if !ok {
			return badValue(f, "invalid time", v)
		}
	case fUID:
		if !printable(v) {
			return badValue(f, "invalid characters in", v)
		}
		c.UID = string(v)
	case fOrigH:
		if c.OrigH, ok = parseAddr(v); !ok {
			return badValue(f, "invalid address", v)
		}
	case fRespH:
		if c.RespH, ok = parseAddr(v); !ok {
			return badValue(f, "invalid address", v)
		}
	case fOrigP:
		if c.OrigP, ok = parsePort(v); !ok {
			return badValue(f, "invalid port", v)
		}
	case fRespP:
		if c.RespP, ok = parsePort(v); !ok {
			return badValue(f, "invalid port", v)
		}
	case fProto:
		if c.Proto, ok = parseTransport(v); !ok {
			return badValue(f, "unknown transport", v)
		}
	case fService:
		if !printable(v) {
			return badValue(f, "invalid characters in", v)
		}
		c.Service = r.intern.get(v)
	case fHistory:
		if !printable(v) {
			return badValue(f, "invalid characters in", v)
		}
		c.History = r.intern.get(v)
	case fDuration:
		us, ok := parseMicros(v)
		if !ok {
			return badValue(f, "invalid duration", v)
		}
		c.Duration = time.Duration(us) * time.Microsecond
	case fConnState:
		if c.ConnState, ok = parseConnState(v); !ok {
			return badValue(f, "unknown state", v)
		}
	case fLocalOrig:
		if c.LocalOrig, ok = parseTF(v); !ok {
			return badValue(f, "invalid boolean", v)
		}
	case fLocalResp:
		if c.LocalResp, ok = parseTF(v); !ok {
			return badValue(f, "invalid boolean", v)
		}
	default:
		p := counter(c, f)
		if p == nil {
			return nil
		}
		if *p, ok = parseUint(v); !ok {
			return badValue(f, "invalid count", v)
		}
	}
	return nil
}

func counter(c *Conn, f field) *uint64 {
	switch f {
	case fOrigBytes:
		return &c.OrigBytes
	case fRespBytes:
		return &c.RespBytes
	case fMissedBytes:
		return &c.MissedBytes
	case fOrigPkts:
		return &c.OrigPkts
	case fOrigIPBytes:
		return &c.OrigIPBytes
	case fRespPkts:
		return &c.RespPkts
	case fRespIPBytes:
		return &c.RespIPBytes
	}
	return nil
}

func badValue(f field, what string, v []byte) error {
	return &FieldError{Field: f.String(), Reason: fmt.Sprintf("%s %q", what, truncate(v))}
}

// truncate shortens a value quoted in an error: a hostile 60 KB field
// should not become a 60 KB log line.
func truncate(v []byte) []byte {
	const n = 64
	if len(v) > n {
		return append(v[:n:n], "..."...)
	}
	return v
}
