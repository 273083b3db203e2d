package ingest

import "net/netip"

// LocalNetworks decides which addresses are internal: the sensor's word
// when it gave one (Zeek's local_orig/local_resp), else membership in the
// configured networks. Every layer (features, baselines, beacon and upload
// scoring) decides with it, so that they agree on what "internal" means.
// IPv4 networks are kept as masks: the check runs for every connection.
type LocalNetworks struct {
	v4 []prefix4
	v6 []netip.Prefix
}

type prefix4 struct{ net, mask uint32 }

// NewLocalNetworks compiles nets; an IPv4-mapped IPv6 address matches the
// IPv4 networks.
func NewLocalNetworks(nets []netip.Prefix) LocalNetworks {
	var n LocalNetworks
	for _, p := range nets {
		p = p.Masked()
		if !p.Addr().Is4() {
			n.v6 = append(n.v6, p)
			continue
		}
		m := uint32(0)
		if p.Bits() > 0 {
			m = ^uint32(0) << (32 - p.Bits())
		}
		n.v4 = append(n.v4, prefix4{addr4(p.Addr()), m})
	}
	return n
}

// Internal reports whether a is internal, local being the sensor's word.
func (n LocalNetworks) Internal(a netip.Addr, local Tristate) bool {
	switch local {
	case True:
		return true
	case False:
		return false
	}
	return n.Contains(a)
}

// Contains reports whether a is in one of the networks.
func (n LocalNetworks) Contains(a netip.Addr) bool {
	if a.Is4() || a.Is4In6() {
		v := addr4(a.Unmap())
		for _, p := range n.v4 {
			if v&p.mask == p.net {
				return true
			}
		}
		return false
	}
	for _, p := range n.v6 {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
