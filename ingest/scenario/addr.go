package scenario

import (
	"math/rand/v2"
	"net/netip"
)

// The address plan of the package doc, as functions: there are no mutable
// package variables.

func v4(a, b, c, d int) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a), byte(b), byte(c), byte(d)})
}

// workstation returns background host i's address, i < maxHosts.
func workstation(i int) netip.Addr { return v4(10, 10, i/250, i%250+1) }

func resolver() netip.Addr        { return v4(10, 20, 0, 53) }
func fileServer(i int) netip.Addr { return v4(10, 20, 0, 10+i%10) }
func backupServer() netip.Addr    { return v4(10, 20, 0, 100) }
func adminHost() netip.Addr       { return v4(10, 30, 0, 10) }
func webDest(rank int) netip.Addr { return v4(198, 18, rank/250, rank%250+1) }

// webDests is how many addresses webDest can give.
const webDests = 256 * 250

func cloudStorage(i int) netip.Addr { return v4(198, 19, 250, 10+i) }

func adminServers(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = v4(10, 20, 0, 20+i%20)
	}
	return out
}

func cloudAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = cloudStorage(i)
	}
	return out
}

func telemetryAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = v4(198, 19, 240, 10+i)
	}
	return out
}

func ntpServers(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = v4(198, 19, 123, 1+i)
	}
	return out
}

func cdnAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = v4(198, 19, 200, 10+i)
	}
	return out
}

// attackerAddr maps i in [0, 3*254) onto the three documentation ranges
// (RFC 5737), which stand for attacker infrastructure.
func attackerAddr(i int) netip.Addr {
	i %= 3 * 254
	switch i / 254 {
	case 0:
		return v4(203, 0, 113, 1+i%254)
	case 1:
		return v4(198, 51, 100, 1+i%254)
	}
	return v4(192, 0, 2, 1+i%254)
}

// picker hands out workstations for attackers and external addresses for
// their infrastructure without repeats, so that two instances never share
// a host and labels stay unambiguous. It runs before generation, in Spec
// order, from its own stream, so picks do not depend on traffic.
type picker struct {
	r        *rand.Rand
	pool     int // workstations with background traffic
	hosts    map[netip.Addr]bool
	external map[netip.Addr]bool
}

func newPicker(seed uint64, pool int, taken []netip.Addr) *picker {
	p := &picker{r: newRand(seed, "picker"), pool: pool, hosts: map[netip.Addr]bool{}, external: map[netip.Addr]bool{}}
	for _, a := range taken {
		p.hosts[a] = true
		p.external[a] = true
	}
	return p
}

// host returns a, or when a is zero a workstation not yet used: one with
// background traffic if any is free, else the next beyond the pool.
func (p *picker) host(a netip.Addr) netip.Addr {
	if a.IsValid() {
		p.hosts[a] = true
		return a
	}
	if p.pool > 0 {
		for range 64 {
			w := workstation(p.r.IntN(p.pool))
			if !p.hosts[w] {
				p.hosts[w] = true
				return w
			}
		}
	}
	for i := p.pool; i < maxHosts; i++ {
		if w := workstation(i); !p.hosts[w] {
			p.hosts[w] = true
			return w
		}
	}
	return workstation(0) // 64,000 attackers: unreachable in practice
}

// ext returns a, or when a is zero an attacker address not yet used.
func (p *picker) ext(a netip.Addr) netip.Addr {
	if a.IsValid() {
		p.external[a] = true
		return a
	}
	start := p.r.IntN(3 * 254)
	for k := range 3 * 254 {
		if x := attackerAddr(start + k); !p.external[x] {
			p.external[x] = true
			return x
		}
	}
	return attackerAddr(start)
}
