package ingest

import (
	"encoding/binary"
	"math"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

// field identifies a Conn field, or a key of the reference repo's simple
// events, independently of how an input spells it.
type field uint8

const (
	fNone field = iota
	fTS
	fUID
	fOrigH
	fOrigP
	fRespH
	fRespP
	fProto
	fService
	fDuration
	fOrigBytes
	fRespBytes
	fConnState
	fLocalOrig
	fLocalResp
	fMissedBytes
	fHistory
	fOrigPkts
	fOrigIPBytes
	fRespPkts
	fRespIPBytes

	// Keys of the simple events; they map onto the Zeek fields after the
	// whole object is read because is_outbound decides where the bytes go.
	fEventTime
	fSrcIP
	fDstIP
	fSrcPort
	fDstPort
	fBytesTransferred
	fIsOutbound
	fProtocol

	fID   // Zeek JSON's nested "id" object
	fPath // Zeek JSON's "_path": which log the record belongs to
	numFields
)

// fieldNames are the names used in FieldErrors: Zeek's dotted names for
// Zeek fields whatever their spelling in the input, the reference keys for
// simple events.
var fieldNames = [numFields]string{
	fTS: "ts", fUID: "uid", fOrigH: "id.orig_h", fOrigP: "id.orig_p", fRespH: "id.resp_h",
	fRespP: "id.resp_p", fProto: "proto", fService: "service", fDuration: "duration",
	fOrigBytes: "orig_bytes", fRespBytes: "resp_bytes", fConnState: "conn_state",
	fLocalOrig: "local_orig", fLocalResp: "local_resp", fMissedBytes: "missed_bytes",
	fHistory: "history", fOrigPkts: "orig_pkts", fOrigIPBytes: "orig_ip_bytes",
	fRespPkts: "resp_pkts", fRespIPBytes: "resp_ip_bytes",
	fEventTime: "event_time", fSrcIP: "src_ip", fDstIP: "dest_ip", fSrcPort: "src_port",
	fDstPort: "dest_port", fBytesTransferred: "bytes_transferred", fIsOutbound: "is_outbound",
	fProtocol: "protocol", fID: "id", fPath: "_path",
}

func (f field) String() string {
	if f < numFields {
		return fieldNames[f]
	}
	return "invalid"
}

// zeekField maps a Zeek conn.log column or JSON key to its field. Shippers
// that cannot store dots in keys rename id.orig_h to id_orig_h, so both are
// accepted.
func zeekField(name []byte) field {
	switch string(name) {
	case "ts":
		return fTS
	case "uid":
		return fUID
	case "id.orig_h", "id_orig_h":
		return fOrigH
	case "id.orig_p", "id_orig_p":
		return fOrigP
	case "id.resp_h", "id_resp_h":
		return fRespH
	case "id.resp_p", "id_resp_p":
		return fRespP
	case "proto":
		return fProto
	case "service":
		return fService
	case "duration":
		return fDuration
	case "orig_bytes":
		return fOrigBytes
	case "resp_bytes":
		return fRespBytes
	case "conn_state":
		return fConnState
	case "local_orig":
		return fLocalOrig
	case "local_resp":
		return fLocalResp
	case "missed_bytes":
		return fMissedBytes
	case "history":
		return fHistory
	case "orig_pkts":
		return fOrigPkts
	case "orig_ip_bytes":
		return fOrigIPBytes
	case "resp_pkts":
		return fRespPkts
	case "resp_ip_bytes":
		return fRespIPBytes
	}
	return fNone
}

// jsonField maps a key of a top-level JSON object: Zeek's keys, the simple
// events' keys and the nested id object.
func jsonField(name []byte) field {
	if f := zeekField(name); f != fNone {
		return f
	}
	switch string(name) {
	case "event_time":
		return fEventTime
	case "src_ip":
		return fSrcIP
	case "dest_ip", "dst_ip":
		return fDstIP
	case "src_port":
		return fSrcPort
	case "dest_port", "dst_port":
		return fDstPort
	case "bytes_transferred":
		return fBytesTransferred
	case "is_outbound":
		return fIsOutbound
	case "protocol":
		return fProtocol
	case "id":
		return fID
	case "_path":
		return fPath
	}
	return fNone
}

// idField maps a key of Zeek's nested "id" object.
func idField(name []byte) field {
	switch string(name) {
	case "orig_h":
		return fOrigH
	case "orig_p":
		return fOrigP
	case "resp_h":
		return fRespH
	case "resp_p":
		return fRespP
	}
	return fNone
}

// parseUint parses a decimal counter. Signs, spaces and overflow are errors:
// a counter that does not fit in 64 bits is hostile, not large.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) <= 16 && cap(b) >= 8 {
		if len(b) <= 8 {
			return parse8(b)
		}
		hi, ok1 := parse8(b[:len(b)-8])
		lo, ok2 := parse8(b[len(b)-8:])
		return hi*100_000_000 + lo, ok1 && ok2
	}
	var n uint64
	if len(b) < 20 {
		// 19 digits cannot overflow, so the common case skips the
		// per-digit overflow test.
		for _, c := range b {
			d := uint64(c - '0')
			if d > 9 {
				return 0, false
			}
			n = n*10 + d
		}
		return n, true
	}
	for _, c := range b {
		d := uint64(c - '0')
		if d > 9 || n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// parse8 parses 1 to 8 decimal digits in a few multiplications instead of
// a loop whose unpredictable length costs a branch misprediction per
// number (Lemire, "Fast integer parsing", SWAR variant). It reads the
// 8 bytes from b's start, which b's capacity must hold: a field of a line
// is followed by the rest of the line buffer, and bytes past len(b) are
// shifted out before use.
func parse8(b []byte) (uint64, bool) {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	x := binary.LittleEndian.Uint64(b[:8]) - 0x30*lo
	x <<= 64 - 8*uint(len(b)) // drop the bytes past the number; zeros are digit 0
	// A byte is a digit if it neither wrapped below 0 nor reaches 10.
	if (x|(x+0x76*lo))&hi != 0 {
		return 0, false
	}
	x = (x & 0x0f0f0f0f0f0f0f0f) * 2561 >> 8
	x = (x & 0x00ff00ff00ff00ff) * 6553601 >> 16
	x = (x & 0x0000ffff0000ffff) * 42949672960001 >> 32
	return x, true
}

// maxSeconds bounds the integer part of times and durations so that their
// microsecond (and, for durations, nanosecond) values cannot overflow int64.
// 9e9 s is year 2255, far past any limit the Validator accepts.
const maxSeconds = 9_000_000_000

// parseMicros parses a decimal number of seconds, as Zeek writes ts and
// duration, into microseconds. The fraction is read digit by digit because
// going through float64 would lose the last microsecond of a 2020s epoch
// time; digits past the sixth are truncated. Exponent notation, which JSON
// permits but Zeek does not write, falls back to strconv.
func parseMicros(b []byte) (int64, bool) {
	// Zeek writes exactly six fraction digits; parse both parts without
	// a loop when it does.
	if dot := len(b) - 7; dot > 0 && b[dot] == '.' && b[0] != '-' {
		sec, ok1 := parseUint(b[:dot])
		frac, ok2 := parseUint(b[dot+1:])
		if ok1 && ok2 && sec <= maxSeconds {
			return int64(sec)*1_000_000 + int64(frac), true
		}
	}
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	if len(b) == 0 || b[0] < '0' || b[0] > '9' {
		return 0, false
	}
	var sec int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		sec = sec*10 + int64(b[i]-'0')
		if sec > maxSeconds {
			return 0, false
		}
	}
	var frac int64
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if i-start < 6 {
				frac = frac*10 + int64(b[i]-'0')
			}
		}
		if i == start {
			return 0, false
		}
		for n := i - start; n < 6; n++ {
			frac *= 10
		}
	}
	if i < len(b) {
		if b[i] == 'e' || b[i] == 'E' {
			return parseMicrosFloat(b, neg)
		}
		return 0, false
	}
	us := sec*1_000_000 + frac
	if neg {
		us = -us
	}
	return us, true
}

func parseMicrosFloat(b []byte, neg bool) (int64, bool) {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f > maxSeconds {
		return 0, false
	}
	us := int64(math.Round(f * 1e6))
	if neg {
		us = -us
	}
	return us, true
}

// parseTime parses a connection start: epoch seconds with a fraction, or an
// RFC 3339 timestamp as Zeek's JSON::TS_ISO8601 and the reference events
// write it.
func parseTime(b []byte) (int64, bool) {
	if len(b) > 4 && b[4] == '-' {
		return parseRFC3339(b)
	}
	return parseMicros(b)
}

// parseRFC3339 parses YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM) into
// microseconds since the epoch without time.Parse, which would cost an
// allocation and several times the work on every ISO8601 Zeek record.
func parseRFC3339(b []byte) (int64, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	if t := b[10]; t != 'T' && t != 't' && t != ' ' {
		return 0, false
	}
	y, ok1 := digits(b[0:4])
	mo, ok2 := digits(b[5:7])
	d, ok3 := digits(b[8:10])
	h, ok4 := digits(b[11:13])
	mi, ok5 := digits(b[14:16])
	s, ok6 := digits(b[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
		return 0, false
	}
	if mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || s > 59 {
		return 0, false
	}
	i := 19
	var frac int64
	if b[i] == '.' {
		i++
		start := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if i-start < 6 {
				frac = frac*10 + int64(b[i]-'0')
			}
		}
		if i == start {
			return 0, false
		}
		for n := i - start; n < 6; n++ {
			frac *= 10
		}
	}
	if i >= len(b) {
		return 0, false
	}
	var off int64
	switch b[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		if len(b)-i != 6 || b[i+3] != ':' {
			return 0, false
		}
		oh, ok1 := digits(b[i+1 : i+3])
		om, ok2 := digits(b[i+4 : i+6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, false
		}
		off = oh*3600 + om*60
		if b[i] == '-' {
			off = -off
		}
		i += 6
	default:
		return 0, false
	}
	if i != len(b) {
		return 0, false
	}
	sec := daysFromCivil(y, mo, d)*86400 + h*3600 + mi*60 + s - off
	return sec*1_000_000 + frac, true
}

func digits(b []byte) (int64, bool) {
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func daysIn(y, m int64) int64 {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms").
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400 // y >= -1 here, so truncation equals floor except at -1
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// parseAddr parses an IPv4 or IPv6 address. Dotted quads, the common case,
// are parsed in place; anything else goes to netip. IPv4-mapped IPv6
// addresses are unmapped so that one host has one key.
func parseAddr(b []byte) (netip.Addr, bool) {
	if a, ok := parseIPv4(b); ok {
		return a, true
	}
	if len(b) > 64 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func parseIPv4(b []byte) (netip.Addr, bool) {
	if len(b) < 7 || len(b) > 15 {
		return netip.Addr{}, false
	}
	var ip [4]byte
	i := 0
	for k := range ip {
		if k > 0 {
			if b[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
		if i >= len(b) {
			return netip.Addr{}, false
		}
		v := uint(b[i] - '0')
		if v > 9 {
			return netip.Addr{}, false
		}
		i++
		for n := 1; n < 3 && i < len(b); n++ {
			d := uint(b[i] - '0')
			if d > 9 {
				break
			}
			// Leading zeros are ambiguous (octal in some parsers), so
			// netip rejects them and so do we.
			if v == 0 {
				return netip.Addr{}, false
			}
			v = v*10 + d
			i++
		}
		if v > 255 {
			return netip.Addr{}, false
		}
		ip[k] = byte(v)
		if i >= len(b) && k < 3 {
			return netip.Addr{}, false
		}
	}
	if i != len(b) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// parsePort parses a port number; ports above 65535 are rejected, not
// truncated.
func parsePort(b []byte) (uint16, bool) {
	n, ok := parseUint(b)
	if !ok || n > math.MaxUint16 {
		return 0, false
	}
	return uint16(n), true
}

func parseTransport(b []byte) (Transport, bool) {
	switch string(b) {
	case "tcp", "TCP":
		return TCP, true
	case "udp", "UDP":
		return UDP, true
	case "icmp", "ICMP", "icmp6", "ICMP6":
		return ICMP, true
	case "unknown_transport":
		return TransportUnknown, true
	}
	return TransportUnknown, false
}

func parseConnState(b []byte) (ConnState, bool) {
	switch string(b) {
	case "S0":
		return S0, true
	case "S1":
		return S1, true
	case "SF":
		return SF, true
	case "REJ":
		return REJ, true
	case "S2":
		return S2, true
	case "S3":
		return S3, true
	case "RSTO":
		return RSTO, true
	case "RSTR":
		return RSTR, true
	case "RSTOS0":
		return RSTOS0, true
	case "RSTRH":
		return RSTRH, true
	case "SH":
		return SH, true
	case "SHR":
		return SHR, true
	case "OTH":
		return OTH, true
	}
	return StateUnset, false
}

// parseTF parses Zeek's T/F booleans; JSON shippers sometimes write the
// words, which are accepted too.
func parseTF(b []byte) (Tristate, bool) {
	switch string(b) {
	case "T", "true":
		return True, true
	case "F", "false":
		return False, true
	}
	return Unknown, false
}

// printable reports whether b is valid UTF-8 without control characters.
// Strings end up in protobuf string fields, which must be valid UTF-8, and
// in analysts' terminals, where control characters are an attack.
func printable(b []byte) bool {
	// Eight bytes per step: any byte below 0x20, equal to 0x7f or with
	// the high bit set leaves the ASCII fast path.
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		del := x ^ (0x7f * lo)
		if ((x-0x20*lo)|(del-lo)|x)&hi != 0 {
			return printableSlow(b)
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c >= 0x7f {
			return printableSlow(b)
		}
	}
	return true
}

func printableSlow(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if r < 0x20 || (r >= 0x7f && r < 0xa0) { // C0, DEL and C1 controls
			return false
		}
		b = b[n:]
	}
	return true
}

// interner shares the few distinct service and history values between
// records instead of allocating each. A small direct-mapped cache in front
// of the map answers most look-ups without hashing; the map is bounded so
// that hostile input with endless distinct values costs allocations, not
// unbounded memory.
type interner struct {
	recent [256]string
	m      map[string]string
}

const (
	internMaxEntries = 4096
	internMaxLen     = 32
)

func (in *interner) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > internMaxLen {
		return string(b)
	}
	slot := &in.recent[(len(b)*31+int(b[0])*7+int(b[len(b)-1]))&0xff]
	if *slot == string(b) {
		return *slot
	}
	s, ok := in.m[string(b)]
	if !ok {
		s = string(b)
		if in.m == nil {
			in.m = make(map[string]string, 64)
		}
		if len(in.m) < internMaxEntries {
			in.m[s] = s
		}
	}
	*slot = s
	return s
}
