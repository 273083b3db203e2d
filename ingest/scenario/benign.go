package scenario

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

const (
	day    = int64(24 * time.Hour / time.Microsecond)
	hourUS = int64(time.Hour / time.Microsecond)
)

func (p *plan) cloudUpload(i int, c CloudUpload, pk *picker) {
	id := fmt.Sprintf("%s-%d", ScenarioCloudUpload, i)
	r := p.rng(id)
	src := pk.host(c.Src)
	dst := c.Dst
	if !dst.IsValid() {
		dst = cloudStorage(0)
	}
	lbl := p.label(Label{
		ID: id, Kind: KindBenign, Scenario: ScenarioCloudUpload,
		Hosts: []netip.Addr{src}, Dsts: []netip.Addr{dst}, Ports: []uint16{443},
		Params: map[string]float64{"bytes": float64(c.Bytes), "conns": float64(c.Conns)},
	})
	t0 := p.start + c.Offset.Microseconds()
	p.add(lbl, &batch{at: t0, fn: func(e *emitter) {
		per := c.Bytes / uint64(c.Conns)
		for k := range c.Conns {
			b := per
			if k == c.Conns-1 {
				b = c.Bytes - per*uint64(c.Conns-1)
			}
			ts := t0 + int64(k)*int64(200e3+r.IntN(800e3))
			e.tcp(r, ts, src, dst, 443, "ssl", b, b/500+between(r, 4e3, 8e3), transfer(r, b, c.Mbps/float64(c.Conns)))
		}
	}})
}

// periodicSrc is one host's periodic polling: NTP and update checks.
type periodicSrc struct {
	r        *rand.Rand
	t, end   int64
	interval time.Duration
	jitter   float64
	fn       func(e *emitter, r *rand.Rand, ts int64)
}

func (s *periodicSrc) next() (int64, bool) { return s.t, s.t < s.end }

func (s *periodicSrc) run(e *emitter) {
	ts := s.t
	s.t += jittered(s.r, s.interval, s.jitter)
	s.fn(e, s.r, ts)
}

func (p *plan) ntp(i int, n NTP) {
	id := fmt.Sprintf("%s-%d", ScenarioNTP, i)
	hosts := make([]netip.Addr, n.Hosts)
	for k := range hosts {
		hosts[k] = workstation(k)
	}
	lbl := p.label(Label{
		ID: id, Kind: KindBenign, Scenario: ScenarioNTP,
		Hosts: hosts, Dsts: slices.Clone(n.Servers), Ports: []uint16{123},
		Params: map[string]float64{"poll_s": n.Poll.Seconds(), "hosts": float64(n.Hosts)},
	})
	for k, h := range hosts {
		r := p.rng(fmt.Sprintf("%s/%d", id, k))
		first := r.IntN(len(n.Servers))
		servers := make([]netip.Addr, n.PerHost)
		for j := range servers {
			servers[j] = n.Servers[(first+j)%len(n.Servers)]
		}
		p.add(lbl, &periodicSrc{
			r: r, t: p.start + r.Int64N(n.Poll.Microseconds()), end: p.end,
			// ntpd randomises each poll a little so that clients do not
			// synchronise.
			interval: n.Poll, jitter: 0.02,
			fn: func(e *emitter, r *rand.Rand, ts int64) {
				for j, s := range servers {
					e.udp(r, ts+int64(j)*int64(1e3+r.IntN(5e3)), h, s, 123, 123, "ntp", 48, 48, secs(0.005+0.04*r.Float64()))
				}
			},
		})
	}
}

func (p *plan) updates(i int, u UpdateCheck) {
	id := fmt.Sprintf("%s-%d", ScenarioUpdateCheck, i)
	hosts := make([]netip.Addr, u.Hosts)
	for k := range hosts {
		hosts[k] = workstation(k)
	}
	lbl := p.label(Label{
		ID: id, Kind: KindBenign, Scenario: ScenarioUpdateCheck,
		Hosts: hosts, Dsts: slices.Clone(u.CDN), Ports: []uint16{443},
		Params: map[string]float64{"interval_s": u.Interval.Seconds(), "jitter": u.Jitter, "hosts": float64(u.Hosts)},
	})
	for k, h := range hosts {
		r := p.rng(fmt.Sprintf("%s/%d", id, k))
		p.add(lbl, &periodicSrc{
			r: r, t: p.start + r.Int64N(u.Interval.Microseconds()), end: p.end,
			interval: u.Interval, jitter: u.Jitter,
			fn: func(e *emitter, r *rand.Rand, ts int64) {
				cdn := u.CDN[r.IntN(len(u.CDN))]
				if r.Float64() < u.DownloadRate {
					b := around(r, u.DownloadBytes, 0.1)
					e.tcp(r, ts, h, cdn, 443, "ssl", between(r, 20e3, 60e3), b, transfer(r, b, 50))
					return
				}
				e.tcp(r, ts, h, cdn, 443, "ssl", between(r, 600, 900), between(r, 3e3, 8e3), secs(0.2+0.8*r.Float64()))
			},
		})
	}
}

func (p *plan) backup(i int, b Backup) {
	id := fmt.Sprintf("%s-%d", ScenarioBackup, i)
	r := p.rng(id)
	service := "ssh"
	if b.Port == 445 {
		service = "smb"
	}
	hosts := slices.Clone(b.Clients)
	dsts := []netip.Addr{b.Server}
	if b.Pull {
		hosts, dsts = dsts, hosts
	}
	lbl := p.label(Label{
		ID: id, Kind: KindBenign, Scenario: ScenarioBackup,
		Hosts: hosts, Dsts: dsts, Ports: []uint16{b.Port},
		Params: map[string]float64{"bytes": float64(b.Bytes), "pull": boolf(b.Pull)},
	})
	type job struct {
		ts     int64
		client netip.Addr
	}
	var jobs []job
	for d := p.start - (p.start%day+day)%day; d < p.end; d += day {
		for k, c := range b.Clients {
			ts := d + b.TimeOfDay.Microseconds() + int64(k)*b.Spacing.Microseconds() + r.Int64N(60e6)
			if ts >= p.start && ts < p.end {
				jobs = append(jobs, job{ts, c})
			}
		}
	}
	slices.SortStableFunc(jobs, func(a, b job) int { return cmp.Compare(a.ts, b.ts) })
	at := make([]int64, len(jobs))
	for k := range jobs {
		at[k] = jobs[k].ts
	}
	p.add(lbl, &schedule{at: at, fn: func(e *emitter, k int) {
		j := jobs[k]
		n := around(r, b.Bytes, 0.2)
		ctl := n/1000 + between(r, 10e3, 50e3) // acknowledgements and file lists
		if b.Pull {
			e.tcp(r, j.ts, b.Server, j.client, b.Port, service, ctl, n, transfer(r, n, b.Mbps))
		} else {
			e.tcp(r, j.ts, j.client, b.Server, b.Port, service, n, ctl, transfer(r, n, b.Mbps))
		}
	}})
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// adminSrc is an administrator's interactive sessions: a Poisson process
// over working hours (08:00-18:00 UTC), thinned from a constant rate.
type adminSrc struct {
	r       *rand.Rand
	src     netip.Addr
	servers []netip.Addr
	t, end  int64
	perHour float64
}

func (s *adminSrc) next() (int64, bool) { return s.t, s.t < s.end }

func (s *adminSrc) advance() {
	for {
		s.t += int64(s.r.ExpFloat64() / s.perHour * float64(hourUS))
		if s.t >= s.end || workHours(s.t) {
			return
		}
	}
}

func workHours(ts int64) bool {
	h := (ts%day + day) % day / hourUS
	return h >= 8 && h < 18
}

func (s *adminSrc) run(e *emitter) {
	r := s.r
	ts := s.t
	s.advance()
	dst := s.servers[r.IntN(len(s.servers))]
	if r.Float64() < 0.6 {
		e.tcp(r, ts, s.src, dst, 22, "ssh", logUniform(r, 5e3, 100e3), logUniform(r, 20e3, 2e6), secs(120+3480*r.Float64()))
		return
	}
	e.tcp(r, ts, s.src, dst, 3389, "rdp", logUniform(r, 200e3, 2e6), logUniform(r, 2e6, 50e6), secs(300+3300*r.Float64()))
}

func (p *plan) admin(i int, a Admin) {
	id := fmt.Sprintf("%s-%d", ScenarioAdmin, i)
	src := a.Src
	if !src.IsValid() {
		src = adminHost()
	}
	lbl := p.label(Label{
		ID: id, Kind: KindBenign, Scenario: ScenarioAdmin,
		Hosts: []netip.Addr{src}, Dsts: slices.Clone(a.Servers), Ports: []uint16{22, 3389},
		Params: map[string]float64{"sessions_per_day": a.SessionsPerDay},
	})
	if a.SessionsPerDay > 0 {
		s := &adminSrc{r: p.rng(id), src: src, servers: a.Servers, t: p.start, end: p.end, perHour: a.SessionsPerDay / 10}
		s.advance()
		p.add(lbl, s)
	}
	if a.Round < 0 {
		return
	}
	// The morning round: a short SSH login to every server in turn.
	r := p.rng(id + "/round")
	var at []int64
	for d := p.start - (p.start%day+day)%day; d < p.end; d += day {
		if ts := d + a.Round.Microseconds() + r.Int64N(300e6); ts >= p.start && ts < p.end {
			at = append(at, ts)
		}
	}
	p.add(lbl, &schedule{at: at, fn: func(e *emitter, k int) {
		ts := at[k]
		for _, s := range a.Servers {
			e.tcp(r, ts, src, s, 22, "ssh", between(r, 3e3, 10e3), between(r, 5e3, 30e3), secs(10+50*r.Float64()))
			ts += int64(15e6 + r.IntN(30e6))
		}
	}})
}

// hostSrc is one workstation's background activity.
type hostSrc struct {
	r       *rand.Rand
	h       netip.Addr
	b       Background
	zipf    *rand.Zipf
	favs    []netip.Addr // the host's favourite destinations
	t, end  int64
	perHour float64
}

func (s *hostSrc) next() (int64, bool) { return s.t, s.t < s.end }

// diurnal is the share of the peak rate at ts's hour of day (UTC).
func diurnal(ts int64) float64 {
	switch h := (ts%day + day) % day / hourUS; {
	case h >= 8 && h < 18:
		return 1
	case h >= 6 && h < 22:
		return 0.3
	}
	return 0.05
}

// advance draws the next session start from a Poisson process at the
// peak rate, thinned by the diurnal profile (Lewis and Shedler 1979).
func (s *hostSrc) advance() {
	for {
		s.t += int64(s.r.ExpFloat64() / s.perHour * float64(hourUS))
		if s.t >= s.end || !s.b.Diurnal || s.r.Float64() < diurnal(s.t) {
			return
		}
	}
}

func (s *hostSrc) run(e *emitter) {
	r := s.r
	ts := s.t
	s.advance()
	switch u := r.Float64(); {
	case u < 0.05: // a file share
		b := logUniform(r, 10e3, 5e6)
		e.tcp(r, ts, s.h, fileServer(r.IntN(4)), 445, "smb", b/100+between(r, 1e3, 3e3), b, transfer(r, b, 200))
		return
	case u < 0.06: // a site that does not answer
		e.udp(r, ts, s.h, resolver(), ephemeral(r), 53, "dns", between(r, 30, 60), between(r, 50, 300), secs(0.001+0.03*r.Float64()))
		e.probe(r, ts+int64(5e3+r.IntN(30e3)), s.h, webDest(int(s.zipf.Uint64())), 443, ingest.S0)
		return
	}
	dst := webDest(int(s.zipf.Uint64()))
	if len(s.favs) > 0 && r.Float64() < s.b.FavouriteShare {
		dst = s.favs[r.IntN(len(s.favs))]
	}
	e.udp(r, ts, s.h, resolver(), ephemeral(r), 53, "dns", between(r, 30, 60), between(r, 50, 300), secs(0.001+0.03*r.Float64()))
	port, service := uint16(443), "ssl"
	if r.Float64() < 0.1 {
		port, service = 80, "http"
	}
	ts += int64(5e3 + r.IntN(30e3))
	for range 1 + r.IntN(3) {
		e.tcp(r, ts, s.h, dst, port, service, logUniform(r, 500, 20e3), logUniform(r, 2e3, 2e6), secs(0.1+30*r.Float64()))
		ts += int64(r.IntN(500e3))
	}
}

func (p *plan) background(b Background) {
	id := ScenarioBackground + "-0"
	hosts := make([]netip.Addr, b.Hosts)
	for k := range hosts {
		hosts[k] = workstation(k)
	}
	lbl := p.label(Label{
		ID: id, Kind: KindBenign, Scenario: ScenarioBackground, Hosts: hosts,
		Params: map[string]float64{"sessions_per_hour": b.SessionsPerHour, "destinations": float64(b.Destinations)},
	})
	for k, h := range hosts {
		r := p.rng(fmt.Sprintf("%s/%d", id, k))
		s := &hostSrc{r: r, h: h, b: b, t: p.start, end: p.end, perHour: b.SessionsPerHour}
		// Web popularity is roughly Zipf with an exponent near 1
		// (Breslau et al., INFOCOM 1999); rand's Zipf needs s > 1.
		s.zipf = rand.NewZipf(r, 1.1, 1, uint64(b.Destinations-1))
		if b.Favourites > 0 {
			fr := p.rng(fmt.Sprintf("%s/%d/favourites", id, k))
			for range b.Favourites {
				s.favs = append(s.favs, webDest(b.Destinations+fr.IntN(webDests-b.Destinations)))
			}
		}
		s.advance()
		p.add(lbl, s)
	}
}

func (p *plan) telemetry(i int, m Telemetry) {
	id := fmt.Sprintf("%s-%d", ScenarioTelemetry, i)
	hosts := make([]netip.Addr, m.Hosts)
	for k := range hosts {
		hosts[k] = workstation(m.FirstHost + k)
	}
	lbl := p.label(Label{
		ID: id, Kind: KindBenign, Scenario: ScenarioTelemetry,
		Hosts: hosts, Dsts: slices.Clone(m.Endpoints), Ports: []uint16{m.Port},
		Params: map[string]float64{"interval_s": m.Interval.Seconds(), "jitter": m.Jitter, "hosts": float64(m.Hosts)},
	})
	service := ""
	if m.Port == 443 {
		service = "ssl"
	}
	for k, h := range hosts {
		r := p.rng(fmt.Sprintf("%s/%d", id, k))
		// An agent keeps to the collector it resolved.
		ep := m.Endpoints[r.IntN(len(m.Endpoints))]
		p.add(lbl, &periodicSrc{
			r: r, t: p.start + r.Int64N(m.Interval.Microseconds()), end: p.end,
			interval: m.Interval, jitter: m.Jitter,
			fn: func(e *emitter, r *rand.Rand, ts int64) {
				e.tcp(r, ts, h, ep, m.Port, service, around(r, m.ReqBytes, 0.1), around(r, m.RespBytes, 0.1), secs(0.05+0.3*r.Float64()))
			},
		})
	}
}

func (p *plan) cloudSync(i int, c CloudSync) {
	id := fmt.Sprintf("%s-%d", ScenarioCloudSync, i)
	hosts := make([]netip.Addr, c.Hosts)
	for k := range hosts {
		hosts[k] = workstation(c.FirstHost + k)
	}
	lbl := p.label(Label{
		ID: id, Kind: KindBenign, Scenario: ScenarioCloudSync,
		Hosts: hosts, Dsts: slices.Clone(c.Dsts), Ports: []uint16{443},
		Params: map[string]float64{"interval_s": c.Interval.Seconds(), "upload_rate": c.UploadRate, "hosts": float64(c.Hosts)},
	})
	for k, h := range hosts {
		r := p.rng(fmt.Sprintf("%s/%d", id, k))
		dst := c.Dsts[k%len(c.Dsts)]
		p.add(lbl, &periodicSrc{
			r: r, t: p.start + r.Int64N(c.Interval.Microseconds()), end: p.end,
			interval: c.Interval, jitter: c.Jitter,
			fn: func(e *emitter, r *rand.Rand, ts int64) {
				if c.UploadRate > 0 && r.Float64() < c.UploadRate {
					b := logUniform(r, float64(c.UploadMin), float64(c.UploadMax))
					e.tcp(r, ts, h, dst, 443, "ssl", b, b/500+between(r, 4e3, 8e3), transfer(r, b, 20))
					return
				}
				e.tcp(r, ts, h, dst, 443, "ssl", between(r, 1e3, 3e3), between(r, 1e3, 5e3), secs(0.1+0.4*r.Float64()))
			},
		})
	}
}
