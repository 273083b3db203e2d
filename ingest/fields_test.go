package ingest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// withCap returns s as a slice followed by filler bytes, as a field inside
// a line is: the SWAR parsers read past len up to cap.
func withCap(s, filler string) []byte {
	b := append([]byte(s), filler...)
	return b[:len(s)]
}

func TestParseUint(t *testing.T) {
	f := func(in string) {
		t.Helper()
		want, werr := strconv.ParseUint(in, 10, 64)
		for _, filler := range []string{"", "\t", "\t12345678", "99999999", "\x00\x00\x00\x00\x00\x00\x00\x00"} {
			got, ok := parseUint(withCap(in, filler))
			if ok != (werr == nil) || (ok && got != want) {
				t.Errorf("parseUint(%q) with %q after = %d, %v; want %d, %v", in, filler, got, ok, want, werr)
			}
		}
	}
	for _, in := range []string{"0", "7", "10", "255", "65535", "12345678", "123456789", "9999999999999999",
		"99999999999999999", "18446744073709551615", "18446744073709551616", "99999999999999999999",
		"", "-1", "+1", "1a", "a1", "1 ", " 1", "1.0", "0x10", "１", "/", ":", "00000000", "007"} {
		f(in)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		f(strconv.FormatUint(rng.Uint64()>>rng.IntN(64), 10))
	}
}

func TestParseMicros(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1704103200.123456", 1704103200123456, true},
		{"1704103200.999999", 1704103200999999, true},
		{"1704103200.000001", 1704103200000001, true},
		{"1704103200.5", 1704103200500000, true},
		{"1704103200", 1704103200000000, true},
		{"1704103200.1234567", 1704103200123456, true}, // truncated, not rounded
		{"0.000512", 512, true},
		{"-1.5", -1500000, true},
		{"1e9", 1e15, true},
		{"1.5e1", 15e6, true},
		{"9000000000", 9000000000000000, true},
		{"9000000001", 0, false},
		{"253402300799.999999", 0, false},
		{"", 0, false}, {"-", 0, false}, {".5", 0, false}, {"1.", 0, false}, {"1..2", 0, false},
		{"NaN", 0, false}, {"Inf", 0, false}, {"-Inf", 0, false}, {"1e400", 0, false}, {"1e", 0, false},
		{"0x10", 0, false}, {"1,5", 0, false}, {" 1", 0, false}, {"+1", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseMicros(withCap(tt.in, "\t1234567890"))
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parseMicros(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	// Every microsecond of a 2020s epoch time survives the trip, which a
	// float64 would not guarantee.
	rng := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		us := 1_600_000_000_000_000 + rng.Int64N(400_000_000_000_000)
		s := fmt.Sprintf("%d.%06d", us/1e6, us%1e6)
		if got, ok := parseMicros([]byte(s)); !ok || got != us {
			t.Fatalf("parseMicros(%q) = %d, %v; want %d", s, got, ok, us)
		}
	}
}

func TestParseTime(t *testing.T) {
	for _, in := range []string{
		"2025-01-29T10:15:01Z", "2024-01-01T10:00:00.123456Z", "2024-02-29T23:59:59.999999Z",
		"2024-01-01T11:00:04+01:00", "2024-01-01T01:00:00-09:30", "1999-12-31t23:59:59z",
		"2025-01-29 10:15:01Z", "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
		"2000-03-01T00:00:00.5Z",
	} {
		want, err := time.Parse(time.RFC3339Nano, in)
		if err != nil {
			// time.Parse wants 'T'; the space and lowercase forms are
			// RFC 3339's own allowances.
			want, err = time.Parse("2006-01-02 15:04:05Z07:00", in)
		}
		if err != nil {
			want, _ = time.Parse("2006-01-02t15:04:05z", in)
		}
		got, ok := parseTime([]byte(in))
		if !ok || got != want.UnixMicro() {
			t.Errorf("parseTime(%q) = %d, %v; want %d", in, got, ok, want.UnixMicro())
		}
	}
	for _, in := range []string{
		"2025-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-00-01T00:00:00Z", "2024-01-32T00:00:00Z",
		"2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z", "2024-01-01T00:00:60Z", "2024-01-01T00:00:00",
		"2024-01-01T00:00:00.Z", "2024-01-01T00:00:00+0100", "2024-01-01T00:00:00+24:00", "2024-01-01X00:00:00Z",
		"2024-1-01T00:00:00Z", "2024-01-01T00:00:00Zjunk", "abcd-01-01T00:00:00Z", "2024-01-01",
	} {
		if got, ok := parseTime([]byte(in)); ok {
			t.Errorf("parseTime(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseAddr(t *testing.T) {
	for _, in := range []string{
		"10.0.0.1", "0.0.0.0", "255.255.255.255", "1.2.3.4", "192.168.100.200", "2001:db8::1", "::1",
		"::ffff:10.0.0.9", "fe80::1%eth0",
		"256.0.0.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", "1..2.3", ".1.2.3", "1.2.3.", "1.2.3.4 ",
		"1.2.3.-4", "1.2.3.1234", "", "example.com", "10.0.0.1/8", "[::1]", "1.2.3.4:80",
	} {
		want, werr := netip.ParseAddr(in)
		got, ok := parseAddr(withCap(in, ".5.6.7"))
		if ok != (werr == nil) || (ok && got != want.Unmap()) {
			t.Errorf("parseAddr(%q) = %v, %v; want %v, %v", in, got, ok, want.Unmap(), werr)
		}
		if ok && want.Unmap().Is4() && !got.Is4() {
			t.Errorf("parseAddr(%q) = %v, want a 4-byte address", in, got)
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]bool{
		"": true, "CHhAvVGS1DHFjwGM9": true, "smb,gssapi": true, "ShADadFf": true, "with space": true,
		"héllo wörld, ünïcode": true, "😀😀😀😀😀": true,
		"C\x01": false, "abcdefgh\x1b[31m": false, "dns\x7f": false, "abcdefghijk\x00": false,
		"\xff": false, "abcdefgh\xc3": false, "C\u0085next": false, "\t": false, "\n": false,
	} {
		if got := printable([]byte(in)); got != want {
			t.Errorf("printable(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestInterner(t *testing.T) {
	var in interner
	buf := []byte("ssl")
	a := in.get(buf)
	buf[0] = 'x' // the interned string must not alias the input
	if a != "ssl" {
		t.Fatalf("interned %q changed with its input", a)
	}
	if b := in.get([]byte("ssl")); b != "ssl" {
		t.Fatalf("get = %q", b)
	}
	for i := range 2 * internMaxEntries {
		if s := in.get(fmt.Appendf(nil, "v%d", i)); s != fmt.Sprintf("v%d", i) {
			t.Fatalf("get = %q", s)
		}
	}
	if len(in.m) > internMaxEntries {
		t.Fatalf("interner grew to %d entries, limit %d", len(in.m), internMaxEntries)
	}
}

func TestJSONStrings(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{`"plain"`, "plain", ""},
		{`""`, "", ""},
		{`"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t", ""},
		{`"\u0041\u00e9\u4e2d"`, "Aé中", ""},
		{`"\ud83d\ude00"`, "😀", ""},
		{`"\ud83dx"`, "\ufffdx", ""},
		{`"\ude00"`, "\ufffd", ""},
		{`"\ud83d\u0041"`, "\ufffdA", ""},
		{`"long string of more than eight bytes \u0021"`, "long string of more than eight bytes !", ""},
		{`"\x"`, "", "invalid escape"},
		{`"\u12"`, "", "invalid \\u escape"},
		{`"\u12g4"`, "", "invalid \\u escape"},
		{"\"a\x01\"", "", "control character"},
		{"\"abcdefghij\x1f\"", "", "control character"},
		{`"unterminated`, "", "unterminated"},
		{`"unterminated\`, "", "unterminated"},
		{`"esc then end\"`, "", "unterminated"},
	}
	for _, tt := range tests {
		p := jsonScanner{b: []byte(tt.in)}
		var scratch []byte
		got, err := p.str(&scratch)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("str(%s) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || string(got) != tt.want || p.i != len(tt.in) {
			t.Errorf("str(%s) = %q, %v, at %d; want %q", tt.in, got, err, p.i, tt.want)
		}
	}
}

func TestJSONSkip(t *testing.T) {
	for _, in := range []string{`1`, `-1.5e3`, `true`, `null`, `"s\"}"`, `[]`, `{}`, `[1,[2,[3]],{"a":"]"}]`, `{"a":{"b":[{"c":"}"}]}}`} {
		p := jsonScanner{b: []byte(in + `,`)}
		if err := p.skip(); err != nil || p.i != len(in) {
			t.Errorf("skip(%s) stopped at %d with %v", in, p.i, err)
		}
	}
	for _, in := range []string{``, `[1,2`, `{"a":"}`, `tru`, `nul`, `x`, `"abc`} {
		p := jsonScanner{b: []byte(in)}
		if err := p.skip(); err == nil {
			t.Errorf("skip(%s) succeeded", in)
		}
	}
}
