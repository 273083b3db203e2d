package ingest

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestValidatorHostileValues feeds the Validator one hostile value at a
// time and checks that it names the field at fault. It is the contract the
// gRPC path relies on: the wire mapping checks shape, the Validator
// everything else, so a value refused in a file is refused over gRPC too.
func TestValidatorHostileValues(t *testing.T) {
	v := testValidator()
	good := func() Conn {
		return Conn{
			TS: testNow.Add(-time.Hour).UnixMicro(), UID: "CabC123", Service: "ssl", History: "ShADadFf", Sensor: "zeek-1",
			OrigH: netip.MustParseAddr("10.0.0.1"), RespH: netip.MustParseAddr("2001:db8::1"),
			OrigP: 40000, RespP: 443, Proto: TCP, ConnState: SF, Duration: time.Second,
		}
	}
	if c := good(); v.Check(&c) != nil {
		t.Fatalf("the good record is refused: %v", v.Check(&c))
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Conn)
		field string // "" means accepted
	}{
		{"ts far past", func(c *Conn) { c.TS = time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC).UnixMicro() }, "ts"},
		{"ts min int64", func(c *Conn) { c.TS = math.MinInt64 }, "ts"},
		{"ts far future", func(c *Conn) { c.TS = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC).UnixMicro() }, "ts"},
		{"ts max int64", func(c *Conn) { c.TS = math.MaxInt64 }, "ts"},
		{"ts within skew", func(c *Conn) { c.TS = testNow.Add(time.Hour).UnixMicro() }, ""},
		{"negative duration", func(c *Conn) { c.Duration = -time.Microsecond }, "duration"},
		{"huge duration", func(c *Conn) { c.Duration = math.MaxInt64 }, "duration"},
		{"huge orig_bytes", func(c *Conn) { c.OrigBytes = math.MaxUint64 }, "orig_bytes"},
		{"huge resp_bytes", func(c *Conn) { c.RespBytes = 1<<50 + 1 }, "resp_bytes"},
		{"huge missed_bytes", func(c *Conn) { c.MissedBytes = math.MaxUint64 }, "missed_bytes"},
		{"huge orig_ip_bytes", func(c *Conn) { c.OrigIPBytes = math.MaxUint64 }, "orig_ip_bytes"},
		{"huge resp_ip_bytes", func(c *Conn) { c.RespIPBytes = math.MaxUint64 }, "resp_ip_bytes"},
		{"huge orig_pkts", func(c *Conn) { c.OrigPkts = math.MaxUint64 }, "orig_pkts"},
		{"huge resp_pkts", func(c *Conn) { c.RespPkts = math.MaxUint64 }, "resp_pkts"},
		{"oversized uid", func(c *Conn) { c.UID = strings.Repeat("C", 257) }, "uid"},
		{"oversized service", func(c *Conn) { c.Service = strings.Repeat("s", 1<<20) }, "service"},
		{"oversized history", func(c *Conn) { c.History = strings.Repeat("S", 300) }, "history"},
		{"oversized sensor", func(c *Conn) { c.Sensor = strings.Repeat("z", 257) }, "sensor_id"},
		{"uid with escape sequence", func(c *Conn) { c.UID = "C\x1b[2J" }, "uid"},
		{"service with newline", func(c *Conn) { c.Service = "ssl\n" }, "service"},
		{"history with DEL", func(c *Conn) { c.History = "Sh\x7f" }, "history"},
		{"history with C1 control", func(c *Conn) { c.History = "Sh\u009b" }, "history"},
		{"sensor with NUL", func(c *Conn) { c.Sensor = "zeek\x00" }, "sensor_id"},
		{"uid invalid UTF-8", func(c *Conn) { c.UID = "C\xff\xfe" }, "uid"},
		{"service non-ASCII printable", func(c *Conn) { c.Service = "smb-é" }, ""},
		{"missing orig", func(c *Conn) { c.OrigH = netip.Addr{} }, "id.orig_h"},
		{"missing resp", func(c *Conn) { c.RespH = netip.Addr{} }, "id.resp_h"},
		{"orig zone", func(c *Conn) { c.OrigH = netip.MustParseAddr("fe80::1%eth0") }, "id.orig_h"},
		{"resp zone", func(c *Conn) { c.RespH = netip.MustParseAddr("fe80::1%eth0") }, "id.resp_h"},
		{"link-local without zone", func(c *Conn) { c.OrigH, c.RespH = netip.MustParseAddr("fe80::1"), netip.MustParseAddr("fe80::2") }, ""},
		{"IPv4-mapped IPv6", func(c *Conn) { c.RespH = netip.MustParseAddr("::ffff:10.0.0.9") }, ""},
		{"unknown proto", func(c *Conn) { c.Proto = ICMP + 1 }, "proto"},
		{"unknown state", func(c *Conn) { c.ConnState = OTH + 1 }, "conn_state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(&c)
			err := v.Check(&c)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want a rejection of %s", tc.field)
			}
			if got := FieldOf(err); got != tc.field {
				t.Fatalf("field %q (%v), want %q", got, err, tc.field)
			}
		})
	}
}

func TestUnprintable(t *testing.T) {
	f := func(in string, bad bool) {
		t.Helper()
		if got := unprintable(in); (got != "") != bad {
			t.Errorf("unprintable(%q) = %q, want bad=%v", in, got, bad)
		}
		if printable([]byte(in)) == bad {
			t.Errorf("printable(%q) disagrees with unprintable", in)
		}
	}
	f("", false)
	f("ShADadFf", false)
	f("dns,ssl", false)
	f("日本語", false)
	f("\ufffd", false) // a real replacement character is valid text
	f("a\tb", true)
	f("\x00", true)
	f("\u0085", true)
	f("\xc3", true)         // truncated sequence
	f("\xed\xa0\x80", true) // surrogate
}

// TestValidatorFutureBoundFollowsTheClock: the cached bound of accepted
// starts never accepts what the clock at the time would refuse, and
// follows the clock forward.
func TestValidatorFutureBoundFollowsTheClock(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	lim := DefaultLimits()
	v := NewValidator(lim, func() time.Time { return now })
	at := func(d time.Duration) *Conn {
		return &Conn{TS: now.Add(d).UnixMicro(), OrigH: netip.MustParseAddr("10.0.0.1"), RespH: netip.MustParseAddr("10.0.0.2"), Proto: TCP}
	}
	if err := v.Check(at(lim.MaxFutureSkew - time.Second)); err != nil {
		t.Fatalf("inside the skew: %v", err)
	}
	if err := v.Check(at(lim.MaxFutureSkew + time.Second)); err == nil {
		t.Fatal("beyond the skew accepted")
	}
	later := at(lim.MaxFutureSkew + time.Hour)
	if err := v.Check(later); err == nil {
		t.Fatal("an hour beyond the skew accepted")
	}
	now = now.Add(2 * time.Hour)
	if err := v.Check(later); err != nil {
		t.Fatalf("after the clock moved on: %v", err)
	}
}
