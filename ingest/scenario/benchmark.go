package scenario

import (
	"math"
	"net/netip"
	"time"
)

// BenchmarkOptions size the labelled quality benchmark; zero fields take
// the defaults of DefaultBenchmarkOptions.
type BenchmarkOptions struct {
	Seed uint64
	// Start is the first instant (default Monday 2026-02-02 00:00 UTC).
	Start time.Time
	// Days of traffic (default 4): enough for a 4-hour beacon to show six
	// beats in a day, and for baselines to learn each host.
	Days int
	// Hosts are the workstations (default 1,000).
	Hosts int
	// SessionsPerHour is each workstation's daytime browsing rate
	// (default 40).
	SessionsPerHour float64
}

// DefaultBenchmarkOptions are 1,000 workstations for 4 days, seed 1.
func DefaultBenchmarkOptions() BenchmarkOptions {
	return BenchmarkOptions{
		Seed: 1, Start: time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC),
		Days: 4, Hosts: 1000, SessionsPerHour: 40,
	}
}

// Benchmark is the labelled corpus of the quality benchmark: the three
// use cases across their parameter ranges and the benign look-alikes of
// each, over a realistic haystack. The instances and their parameters are
// drawn from the seed, so the corpus is a pure function of the options.
//
// Attacks:
//   - C2: a full grid of intervals {10 s, 30 s, 1 m, 5 m, 15 m, 1 h, 2 h,
//     4 h} x jitter {0, 25, 50 %} x missed beats {0, 15, 30 %} (72), and 48
//     more with interval log-uniform in [10 s, 4 h], jitter uniform in [0,
//     50 %] and misses in [0, 30 %]; payload sizes, their spread (2-30 %),
//     command rates and ports vary (one drawn beacon in six pads its
//     payloads, +-60-90 %); every tenth drawn beacon shares its server with
//     the previous one (a campaign). Each starts within the
//     first day and runs to the end.
//   - Exfiltration: staged multi-destination uploads (the reference's
//     shape, volumes scaled 0.5-2x), 2 GB bursts to one address with and
//     without staging, a multi-destination drop without staging, and
//     low-and-slow uploads (10 MB every 10 minutes for 4-24 hours; 2 MB
//     every 2 minutes for 6 hours).
//   - Lateral movement: the reference's sweep, a one-port SMB sweep, a
//     slow multi-port sweep and an RDP sweep, each followed by logins.
//   - Kill chains: a beacon, then staging and exfiltration hours later,
//     from one host.
//
// Benign look-alikes: NTP, update checks, telemetry agents and chat
// keepalives, cloud sync clients (periodic traffic and uploads to popular
// destinations), one-off cloud uploads of 100 MB to 2 GB, nightly push
// and pull backups, two administrators' sessions and morning rounds, and
// every workstation's browsing with its own rarely shared favourites.
func Benchmark(o BenchmarkOptions) Spec {
	d := DefaultBenchmarkOptions()
	if o.Start.IsZero() {
		o.Start = d.Start
	}
	if o.Days <= 0 {
		o.Days = d.Days
	}
	if o.Hosts <= 0 {
		o.Hosts = d.Hosts
	}
	if o.SessionsPerHour <= 0 {
		o.SessionsPerHour = d.SessionsPerHour
	}
	r := newRand(o.Seed, "benchmark")
	dur := time.Duration(o.Days) * 24 * time.Hour
	s := Spec{
		Seed: o.Seed, Start: o.Start, Duration: dur, Sensor: "benchmark",
		Background: Background{
			Hosts: o.Hosts, SessionsPerHour: o.SessionsPerHour, Diurnal: true,
			Destinations: 40000, Favourites: 4, FavouriteShare: 0.15,
		},
	}
	uniform := func(lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }
	// workTime is a random instant of working hours (08:00-18:00) on a
	// day in [from, to).
	workTime := func(from, to int) time.Duration {
		day := from + r.IntN(max(1, to-from))
		return time.Duration(day)*24*time.Hour + 8*time.Hour + time.Duration(r.Int64N(int64(10*time.Hour)))
	}
	hosts := func(share float64) int { return max(1, int(math.Round(share*float64(o.Hosts)))) }
	lastDay := max(1, o.Days-1)

	// C2.
	beacon := func(interval time.Duration, jitter, miss float64) Beacon {
		b := DefaultBeacon()
		b.Interval, b.Jitter, b.MissRate = interval, jitter, miss
		b.Offset = time.Duration(r.Int64N(int64(24 * time.Hour))).Truncate(time.Second)
		ports := []uint16{443, 443, 443, 8443, 80, 8080, 4444}
		b.Port = ports[r.IntN(len(ports))]
		switch b.Port {
		case 443, 8443:
			b.Service = "ssl"
		case 80, 8080:
			b.Service = "http"
		default:
			b.Service = ""
		}
		b.ReqBytes = logUniform(r, 150, 2000)
		b.RespBytes = logUniform(r, 200, 5000)
		b.SizeJitter = uniform(0.02, 0.3)
		b.CommandRate = uniform(0, 0.3)
		b.CmdReqBytes = logUniform(r, 150, 2000)
		b.CmdRespBytes = logUniform(r, 1000, 50000)
		return b
	}
	for _, iv := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute,
		15 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour} {
		for _, j := range []float64{0, 0.25, 0.5} {
			for _, m := range []float64{0, 0.15, 0.3} {
				s.C2 = append(s.C2, beacon(iv, j, m))
			}
		}
	}
	for i := range 48 {
		iv := time.Duration(math.Exp(uniform(math.Log(10), math.Log(4*3600)))) * time.Second
		b := beacon(iv, uniform(0, 0.5), uniform(0, 0.3))
		if i%6 == 5 {
			// Padded or compressed traffic: payload sizes vary widely.
			b.SizeJitter = uniform(0.6, 0.9)
		}
		if i%10 == 9 {
			// A campaign: the previous implant's server.
			prev := &s.C2[len(s.C2)-1]
			if !prev.Dst.IsValid() {
				prev.Dst = attackerAddr(700 + i)
			}
			b.Dst, b.Port, b.Service = prev.Dst, prev.Port, prev.Service
		}
		s.C2 = append(s.C2, b)
	}

	// Exfiltration.
	scale := func(vs []uint64, f float64) []uint64 {
		out := make([]uint64, len(vs))
		for i, v := range vs {
			out[i] = uint64(float64(v) * f)
		}
		return out
	}
	for range 4 {
		x := DefaultExfil()
		f := uniform(0.5, 2)
		x.StageBytes, x.Uploads = scale(x.StageBytes, f), scale(x.Uploads, f)
		x.StageFrom = []netip.Addr{fileServer(r.IntN(4)), fileServer(4 + r.IntN(4))}
		x.Offset = workTime(1, o.Days)
		s.Exfil = append(s.Exfil, x)
	}
	for i := range 6 {
		x := DefaultExfil()
		x.Uploads = []uint64{2e9}
		x.UploadMbps = uniform(50, 200)
		x.Offset = workTime(1, o.Days)
		if i >= 4 { // staged first
			x.StageBytes = []uint64{uint64(uniform(1e9, 2.5e9))}
			x.StageFrom = []netip.Addr{fileServer(r.IntN(8))}
		} else {
			x.StageBytes, x.StageFrom = nil, nil
		}
		s.Exfil = append(s.Exfil, x)
	}
	for range 2 {
		x := DefaultExfil()
		x.StageBytes, x.StageFrom = nil, nil
		x.Uploads = []uint64{120e6, 95e6, 110e6, 80e6, 130e6, 100e6}
		x.Offset = workTime(1, o.Days)
		s.Exfil = append(s.Exfil, x)
	}
	for i := range 6 {
		l := DefaultLowSlow()
		l.Offset = time.Duration(1+r.IntN(lastDay))*24*time.Hour + time.Duration(r.Int64N(int64(12*time.Hour)))
		l.Length = time.Duration(uniform(4, 24) * float64(time.Hour))
		if i >= 4 {
			l.Chunk, l.Every, l.Length = 2e6, 2*time.Minute, 6*time.Hour
		}
		s.LowSlow = append(s.LowSlow, l)
	}

	// Lateral movement.
	for i := range 9 {
		l := DefaultLateral()
		l.Offset = workTime(0, o.Days)
		l.TargetNet = netip.PrefixFrom(v4(10, 20, 1+i, 0), 24)
		switch i % 4 {
		case 1: // one-port SMB sweep
			l.Ports, l.Targets, l.ProbeInterval = []uint16{445}, 60, time.Second
		case 2: // slower, smaller multi-port sweep
			l.ProbeInterval, l.Targets = 3*time.Second, 40
		case 3: // RDP sweep
			l.Ports, l.Targets, l.ProbeInterval, l.Logins = []uint16{3389}, 30, 2*time.Second, 3
		}
		s.Lateral = append(s.Lateral, l)
	}

	// Kill chains.
	for _, iv := range []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, time.Hour} {
		k := DefaultKillChain()
		k.Beacon = beacon(iv, uniform(0, 0.3), uniform(0, 0.2))
		k.Exfil.Offset = k.Beacon.Offset + time.Duration(uniform(2, 8)*float64(time.Hour))
		k.Exfil.StageFrom = []netip.Addr{fileServer(r.IntN(8)), fileServer(r.IntN(8))}
		s.KillChain = append(s.KillChain, k)
	}

	// Benign look-alikes.
	n := DefaultNTP()
	n.Hosts = hosts(0.6)
	s.NTP = []NTP{n}
	u := DefaultUpdateCheck()
	u.Hosts = hosts(0.5)
	s.Updates = []UpdateCheck{u}
	tel := DefaultTelemetry()
	tel.Hosts = hosts(0.8)
	chat := Telemetry{
		Hosts: hosts(0.3), FirstHost: min(o.Hosts/2, maxHosts-hosts(0.3)), Endpoints: telemetryAddrs(5)[2:],
		Port: 443, Interval: time.Minute, Jitter: 0.1, ReqBytes: 90, RespBytes: 60,
	}
	s.Telemetry = []Telemetry{tel, chat}
	cs := DefaultCloudSync()
	cs.Hosts, cs.FirstHost = hosts(0.3), min(o.Hosts/5, maxHosts-hosts(0.3))
	s.CloudSync = []CloudSync{cs}
	for range 16 {
		c := DefaultCloudUpload()
		c.Bytes = logUniform(r, 100e6, 2e9)
		c.Conns = 1 + r.IntN(8)
		c.Dst = cloudStorage(r.IntN(4))
		c.Offset = workTime(0, o.Days)
		s.CloudUploads = append(s.CloudUploads, c)
	}
	push, pull := DefaultBackup(), DefaultBackup()
	pull.Clients = []netip.Addr{fileServer(2), fileServer(3)}
	pull.Port, pull.Pull, pull.TimeOfDay = 445, true, 2*time.Hour
	s.Backups = []Backup{push, pull}
	a1, a2 := DefaultAdmin(), DefaultAdmin()
	a2.Src = v4(10, 30, 0, 11)
	a2.Servers = adminServers(12)
	a2.Round = 8*time.Hour + 30*time.Minute
	s.Admin = []Admin{a1, a2}
	return s
}
