package scenario

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

// plan is a Spec turned into labels and the sources that produce their
// traffic.
type plan struct {
	seed       uint64
	start, end int64
	labels     []labelState
	sources    []planned
	chains     []chain
}

// chain is a label made of other labels' traffic (a kill chain).
type chain struct {
	lbl   int
	parts []int
}

type planned struct {
	lbl int
	src source
}

func (p *plan) label(l Label) int {
	p.labels = append(p.labels, labelState{Label: l})
	return len(p.labels) - 1
}

func (p *plan) add(lbl int, s source) { p.sources = append(p.sources, planned{lbl: lbl, src: s}) }

func build(s *Spec) *plan {
	p := &plan{seed: s.Seed, start: s.Start.UnixMicro(), end: s.Start.Add(s.Duration).UnixMicro()}
	pk := newPicker(s.Seed, s.Background.Hosts, explicitAddrs(s))
	for i, l := range s.Lateral {
		p.lateral(i, l, pk)
	}
	for i, b := range s.C2 {
		p.beacon(i, b, pk)
	}
	for i, x := range s.Exfil {
		p.exfil(i, x, pk)
	}
	for i, l := range s.LowSlow {
		p.lowSlow(i, l, pk)
	}
	for i, c := range s.CloudUploads {
		p.cloudUpload(i, c, pk)
	}
	for i, k := range s.KillChain {
		p.killChain(i, k, pk)
	}
	for i, n := range s.NTP {
		p.ntp(i, n)
	}
	for i, u := range s.Updates {
		p.updates(i, u)
	}
	for i, b := range s.Backups {
		p.backup(i, b)
	}
	for i, a := range s.Admin {
		p.admin(i, a)
	}
	if s.Background.Hosts > 0 {
		p.background(s.Background)
	}
	for i, m := range s.Telemetry {
		p.telemetry(i, m)
	}
	for i, c := range s.CloudSync {
		p.cloudSync(i, c)
	}
	return p
}

// explicitAddrs are the addresses a spec names, which picks must avoid.
func explicitAddrs(s *Spec) []netip.Addr {
	var out []netip.Addr
	keep := func(as ...netip.Addr) {
		for _, a := range as {
			if a.IsValid() {
				out = append(out, a)
			}
		}
	}
	for _, l := range s.Lateral {
		keep(l.Src)
	}
	for _, b := range s.C2 {
		keep(b.Src, b.Dst)
	}
	for _, x := range s.Exfil {
		keep(x.Src)
		keep(x.Dsts...)
	}
	for _, l := range s.LowSlow {
		keep(l.Src)
		keep(l.Dsts...)
	}
	for _, c := range s.CloudUploads {
		keep(c.Src)
	}
	for _, a := range s.Admin {
		keep(a.Src)
	}
	for _, k := range s.KillChain {
		keep(k.Src, k.Beacon.Dst)
		keep(k.Exfil.Dsts...)
	}
	return out
}

func (p *plan) rng(id string) *rand.Rand { return newRand(p.seed, id) }

// batch is a source of one session: small scenarios emit everything at
// once and let the merge hold it.
type batch struct {
	at   int64
	done bool
	fn   func(e *emitter)
}

func (b *batch) next() (int64, bool) { return b.at, !b.done }
func (b *batch) run(e *emitter)      { b.done = true; b.fn(e) }

// schedule is a source of sessions at precomputed times.
type schedule struct {
	at []int64
	fn func(e *emitter, i int)
	i  int
}

func (s *schedule) next() (int64, bool) {
	if s.i >= len(s.at) {
		return 0, false
	}
	return s.at[s.i], true
}

func (s *schedule) run(e *emitter) { s.fn(e, s.i); s.i++ }

// privileged are the remote services lateral movement logs in with, in the
// order logins cycle through them.
type privService struct {
	port    uint16
	service string
}

func privilegedServices() []privService {
	return []privService{{22, "ssh"}, {445, "smb"}, {3389, "rdp"}, {5985, "http"}}
}

func (p *plan) lateral(i int, l Lateral, pk *picker) {
	id := fmt.Sprintf("%s-%d", ScenarioLateral, i)
	r := p.rng(id)
	src := pk.host(l.Src)
	t0 := p.start + l.Offset.Microseconds()
	first := l.TargetNet.Masked().Addr()
	for range 10 {
		first = first.Next()
	}
	targets := make([]netip.Addr, l.Targets)
	for k, a := 0, first; k < l.Targets; k, a = k+1, a.Next() {
		targets[k] = a
	}
	ports := map[uint16]bool{}
	for k := range l.Targets {
		ports[l.Ports[k%len(l.Ports)]] = true
	}
	portList := make([]uint16, 0, len(ports))
	for pt := range ports {
		portList = append(portList, pt)
	}
	slices.Sort(portList)
	lbl := p.label(Label{
		ID: id, Kind: KindLateral, Scenario: ScenarioLateral, Expect: ExpectLateralMovement,
		Hosts: []netip.Addr{src}, Dsts: targets, Ports: portList,
		Params: map[string]float64{
			"targets": float64(l.Targets), "distinct_ports": float64(len(ports)),
			"probe_interval_s": l.ProbeInterval.Seconds(), "logins": float64(l.Logins),
		},
	})
	p.add(lbl, &batch{at: t0, fn: func(e *emitter) {
		isPriv := map[uint16]bool{}
		for _, s := range privilegedServices() {
			isPriv[s.port] = true
		}
		open := map[uint16][]netip.Addr{} // privileged port -> hosts that answered
		step := l.ProbeInterval.Microseconds()
		for k, dst := range targets {
			port := l.Ports[k%len(l.Ports)]
			// Remote-service ports answer on most servers; the rest are
			// mostly closed or filtered.
			pOpen := 0.2
			if isPriv[port] {
				pOpen = 0.8
			}
			ts := t0 + int64(k)*step + r.Int64N(step/5+1)
			switch u := r.Float64(); {
			case u < pOpen:
				e.probe(r, ts, src, dst, port, ingest.RSTO)
				if isPriv[port] {
					open[port] = append(open[port], dst)
				}
			case u < pOpen+(1-pOpen)*0.7:
				e.probe(r, ts, src, dst, port, ingest.REJ)
			default:
				e.probe(r, ts, src, dst, port, ingest.S0)
			}
		}
		// Logins follow the sweep: the attacker uses what answered.
		ts := t0 + int64(l.Targets)*step + 30e6
		svcs := privilegedServices()
		for k := range l.Logins {
			s := svcs[k%len(svcs)]
			dst := targets[r.IntN(len(targets))]
			if hs := open[s.port]; len(hs) > 0 {
				dst = hs[r.IntN(len(hs))]
			}
			var ob, rb uint64
			var dur time.Duration
			switch s.port {
			case 22:
				ob, rb, dur = between(r, 3e3, 20e3), between(r, 5e3, 50e3), secs(60+540*r.Float64())
			case 445: // a remote-execution tool copied over, then run
				ob, rb, dur = between(r, 200e3, 2e6), between(r, 20e3, 100e3), secs(5+55*r.Float64())
			case 3389:
				ob, rb, dur = between(r, 100e3, 1e6), between(r, 1e6, 10e6), secs(300+900*r.Float64())
			default: // WinRM
				ob, rb, dur = between(r, 5e3, 50e3), between(r, 10e3, 100e3), secs(10+50*r.Float64())
			}
			e.tcp(r, ts, src, dst, s.port, s.service, ob, rb, dur)
			ts += int64(10e6 + r.IntN(20e6))
		}
	}})
}

// beaconSrc is a C2 implant: one session per scheduled beat.
type beaconSrc struct {
	r        *rand.Rand
	b        Beacon
	src, dst netip.Addr
	t, end   int64
}

func (s *beaconSrc) next() (int64, bool) { return s.t, s.t < s.end }

func (s *beaconSrc) run(e *emitter) {
	b := &s.b
	ts := s.t
	s.t += jittered(s.r, b.Interval, b.Jitter)
	if s.r.Float64() < b.MissRate {
		return
	}
	sj := b.SizeJitter // beaconAs replaced 0 by 0.1
	ob, rb := around(s.r, b.ReqBytes, sj), around(s.r, b.RespBytes, sj)
	if s.r.Float64() < b.CommandRate {
		ob, rb = around(s.r, b.CmdReqBytes, sj), around(s.r, b.CmdRespBytes, sj)
	}
	e.tcp(s.r, ts, s.src, s.dst, b.Port, b.Service, ob, rb, secs(0.05+0.35*s.r.Float64()))
}

func (p *plan) beacon(i int, b Beacon, pk *picker) {
	p.beaconAs(fmt.Sprintf("%s-%d", ScenarioC2, i), b, pk)
}

// beaconAs plans beacon b as instance id and returns its source.
func (p *plan) beaconAs(id string, b Beacon, pk *picker) netip.Addr {
	src, dst := pk.host(b.Src), pk.ext(b.Dst)
	if b.SizeJitter == 0 {
		b.SizeJitter = 0.1
	}
	t0 := p.start + b.Offset.Microseconds()
	end := p.end
	if b.Length > 0 {
		end = min(end, t0+b.Length.Microseconds())
	}
	lbl := p.label(Label{
		ID: id, Kind: KindC2, Scenario: ScenarioC2, Expect: ExpectC2Beaconing,
		Hosts: []netip.Addr{src}, Dsts: []netip.Addr{dst}, Ports: []uint16{b.Port},
		Params: map[string]float64{
			"interval_s": b.Interval.Seconds(), "jitter": b.Jitter, "miss_rate": b.MissRate,
			"command_rate": b.CommandRate, "size_jitter": b.SizeJitter,
		},
	})
	p.add(lbl, &beaconSrc{r: p.rng(id), b: b, src: src, dst: dst, t: t0, end: end})
	return src
}

func (p *plan) exfil(i int, x Exfil, pk *picker) {
	p.exfilAs(fmt.Sprintf("%s-%d", ScenarioExfil, i), x, pk)
}

// exfilAs plans exfiltration x as instance id.
func (p *plan) exfilAs(id string, x Exfil, pk *picker) {
	r := p.rng(id)
	src := pk.host(x.Src)
	dsts := x.Dsts
	if len(dsts) == 0 {
		dsts = make([]netip.Addr, len(x.Uploads))
		for k := range dsts {
			dsts[k] = pk.ext(netip.Addr{})
		}
	}
	var staged, uploaded uint64
	for _, b := range x.StageBytes {
		staged += b
	}
	for _, b := range x.Uploads {
		uploaded += b
	}
	lbl := p.label(Label{
		ID: id, Kind: KindExfil, Scenario: ScenarioExfil, Expect: ExpectDataExfiltration,
		Hosts: []netip.Addr{src}, Dsts: slices.Clone(dsts), Ports: []uint16{x.Port},
		Staging: slices.Clone(x.StageFrom[:min(len(x.StageFrom), len(x.StageBytes))]),
		Params: map[string]float64{
			"staged_bytes": float64(staged), "uploaded_bytes": float64(uploaded),
			"destinations": float64(len(dsts)),
		},
	})
	t0 := p.start + x.Offset.Microseconds()
	p.add(lbl, &batch{at: t0, fn: func(e *emitter) {
		ts := t0
		for k, b := range x.StageBytes {
			if k > 0 {
				ts += x.StageGap.Microseconds()
			}
			// An SMB2 read costs the reader about 1 % of the data in
			// requests.
			fs := x.StageFrom[k%len(x.StageFrom)]
			e.tcp(r, ts, src, fs, 445, "smb", b/100+between(r, 1e3, 5e3), b, transfer(r, b, 800))
		}
		if len(x.StageBytes) > 0 {
			ts += x.UploadDelay.Microseconds()
		}
		for k, b := range x.Uploads {
			if k > 0 {
				ts += x.UploadGap.Microseconds()
			}
			e.tcp(r, ts, src, dsts[k], x.Port, "ssl", b, b/500+between(r, 4e3, 8e3), transfer(r, b, x.UploadMbps))
		}
	}})
}

// lowSlowSrc sends one chunk per session.
type lowSlowSrc struct {
	r      *rand.Rand
	l      LowSlow
	src    netip.Addr
	dsts   []netip.Addr
	k      int
	t, end int64
}

func (s *lowSlowSrc) next() (int64, bool) { return s.t, s.t < s.end }

func (s *lowSlowSrc) run(e *emitter) {
	ts := s.t
	s.t += jittered(s.r, s.l.Every, s.l.Jitter)
	dst := s.dsts[s.k%len(s.dsts)]
	s.k++
	e.tcp(s.r, ts, s.src, dst, s.l.Port, "ssl", s.l.Chunk, s.l.Chunk/500+between(s.r, 4e3, 8e3), transfer(s.r, s.l.Chunk, 20))
}

func (p *plan) lowSlow(i int, l LowSlow, pk *picker) {
	id := fmt.Sprintf("%s-%d", ScenarioLowSlow, i)
	src := pk.host(l.Src)
	dsts := l.Dsts
	if len(dsts) == 0 {
		dsts = []netip.Addr{pk.ext(netip.Addr{})}
	}
	t0 := p.start + l.Offset.Microseconds()
	end := p.end
	if l.Length > 0 {
		end = min(end, t0+l.Length.Microseconds())
	}
	lbl := p.label(Label{
		ID: id, Kind: KindExfil, Scenario: ScenarioLowSlow, Expect: ExpectDataExfiltration,
		Hosts: []netip.Addr{src}, Dsts: slices.Clone(dsts), Ports: []uint16{l.Port},
		Params: map[string]float64{"chunk_bytes": float64(l.Chunk), "every_s": l.Every.Seconds(), "jitter": l.Jitter},
	})
	p.add(lbl, &lowSlowSrc{r: p.rng(id), l: l, src: src, dsts: dsts, t: t0, end: end})
}

// killChain plans the chain's beacon and exfiltration from one host, and
// the chain's own label.
func (p *plan) killChain(i int, k KillChain, pk *picker) {
	id := fmt.Sprintf("%s-%d", ScenarioKillChain, i)
	src := pk.host(k.Src)
	b, x := k.Beacon, k.Exfil
	b.Src, x.Src = src, src
	lbl := p.label(Label{
		ID: id, Kind: KindKillChain, Scenario: ScenarioKillChain, Expect: ExpectKillChain,
		Hosts: []netip.Addr{src},
		Params: map[string]float64{
			"interval_s": b.Interval.Seconds(), "exfil_after_s": (x.Offset - b.Offset).Seconds(),
		},
	})
	p.beaconAs(id+"-c2", b, pk)
	p.exfilAs(id+"-exfil", x, pk)
	// The chain's label counts the beacon's and the exfiltration's
	// connections: a source that emits nothing and a label that borrows
	// their traffic would be two places to keep in step, so the chain
	// label takes its times and counts from its parts at the end.
	p.chains = append(p.chains, chain{lbl: lbl, parts: []int{lbl + 1, lbl + 2}})
}
