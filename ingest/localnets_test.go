package ingest

import (
	"net/netip"
	"testing"
)

func TestLocalNetworks(t *testing.T) {
	n := NewLocalNetworks([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.77/24"), // not masked: still the /24
		netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("fd00::/8"),
	})
	only6 := NewLocalNetworks([]netip.Prefix{netip.MustParsePrefix("fd00::/8")})
	for _, tc := range []struct {
		n     LocalNetworks
		addr  string
		local Tristate
		want  bool
	}{
		{n, "10.1.2.3", Unknown, true},
		{n, "::ffff:10.1.2.3", Unknown, true}, // IPv4-mapped
		{n, "192.168.1.200", Unknown, true},
		{n, "fd12::1", Unknown, true},
		{n, "2001:db8::1", Unknown, false},
		{n, "2001:db8::1", True, true}, // the sensor's word wins
		{n, "10.1.2.3", False, false},
		{n, "8.8.8.8", Unknown, true}, // 0.0.0.0/0
		{only6, "10.1.2.3", Unknown, false},
		{only6, "fd00::5", Unknown, true},
		{LocalNetworks{}, "10.1.2.3", Unknown, false},
	} {
		if got := tc.n.Internal(netip.MustParseAddr(tc.addr), tc.local); got != tc.want {
			t.Errorf("%s (%v): %v, want %v", tc.addr, tc.local, got, tc.want)
		}
	}
}
