package scenario

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Spec describes one generated run: when it happens, how it is seeded and
// which scenario instances take part. The zero value of a slice means no
// instances of that scenario; Default* functions give each one's defaults.
type Spec struct {
	// Seed selects the random streams; the same Spec always produces the
	// same connections.
	Seed uint64
	// Start and Duration bound the run: every connection starts in
	// [Start, Start+Duration).
	Start    time.Time
	Duration time.Duration
	// Sensor is copied into every Conn's Sensor field.
	Sensor string

	Background Background

	Lateral []Lateral
	C2      []Beacon
	Exfil   []Exfil
	LowSlow []LowSlow

	// KillChain instances are one host going through C2, staging and
	// exfiltration.
	KillChain []KillChain

	NTP          []NTP
	Updates      []UpdateCheck
	Backups      []Backup
	Admin        []Admin
	CloudUploads []CloudUpload
	Telemetry    []Telemetry
	CloudSync    []CloudSync
}

// Background is ordinary user activity on N workstations: web browsing to
// many destinations (DNS to the internal resolver, then HTTPS or HTTP) and
// occasional file-share access. It gives Layer 1 baselines and gives
// detectors the haystack.
type Background struct {
	// Hosts is the number of workstations; 0 disables background traffic.
	Hosts int
	// SessionsPerHour is each host's browsing rate at the daytime peak.
	SessionsPerHour float64
	// Diurnal lowers the rate at night (5 % of the peak from 22:00 to
	// 06:00 UTC, 30 % in the shoulders) as office networks do.
	Diurnal bool
	// Destinations is how many distinct web destinations exist; their
	// popularity follows a Zipf law, as web traffic does.
	Destinations int
	// Favourites gives each host this many personal destinations, drawn
	// from the web addresses beyond Destinations, which few other hosts
	// visit (a team's tool, a niche forum, a partner's portal), and
	// FavouriteShare of its sessions go to them. Their visits are as
	// irregular as the rest of browsing: the rare-destination haystack a
	// beacon detector must not flag. 0 disables them.
	Favourites     int
	FavouriteShare float64
}

// DefaultBackground is 50 workstations at 60 sessions an hour.
func DefaultBackground() Background {
	return Background{Hosts: 50, SessionsPerHour: 60, Diurnal: true, Destinations: 1000}
}

// Lateral is an attacker host that sweeps internal hosts and ports, then
// logs into some of them over SSH, SMB, RDP and WinRM. The defaults mirror
// the reference sample: 40 probes one second apart to 40 hosts over 24
// distinct ports.
type Lateral struct {
	// Src is the attacker; zero picks a workstation.
	Src netip.Addr
	// Offset is when the sweep starts, relative to Spec.Start.
	Offset time.Duration
	// TargetNet is swept from its 10th address on.
	TargetNet netip.Prefix
	// Targets is the number of probes, each to a new host.
	Targets int
	// Ports are probed in order, cycling when Targets exceeds them.
	Ports []uint16
	// ProbeInterval separates probes.
	ProbeInterval time.Duration
	// Logins is how many remote-service sessions follow the sweep, spread
	// over SSH, SMB, RDP and WinRM.
	Logins int
}

// referencePorts is the port sequence of the reference's lateral-movement
// sample: 40 probes, 24 distinct ports.
func referencePorts() []uint16 {
	return []uint16{22, 80, 445, 135, 139, 3389, 443, 5985, 21, 23, 445, 3306, 1433, 5432, 27017, 6379, 8080, 9200, 5000, 8443, 3000, 5900, 3389, 445, 22, 5985, 389, 636, 88, 445, 3389, 445, 22, 3389, 445, 5985, 22, 445, 3389, 445}
}

// DefaultLateral mirrors the reference sample, 10 minutes into the run.
func DefaultLateral() Lateral {
	return Lateral{
		Offset:        10 * time.Minute,
		TargetNet:     netip.MustParsePrefix("10.20.1.0/24"),
		Targets:       40,
		Ports:         referencePorts(),
		ProbeInterval: time.Second,
		Logins:        6,
	}
}

// Beacon is a C2 implant calling home: one TLS connection per beat from
// an internal host to one external host:port, with occasional command
// exchanges (small request, larger response).
type Beacon struct {
	// Src is the infected host; zero picks a workstation.
	Src netip.Addr
	// Dst is the C2 server; zero picks one from attacker infrastructure.
	Dst  netip.Addr
	Port uint16
	// Offset is the first beat, relative to Spec.Start; Length bounds the
	// activity, 0 meaning until the end of the run.
	Offset, Length time.Duration
	// Interval is the mean time between beats. Each gap is
	// Interval x (1 + u), u uniform in [-Jitter, +Jitter], as Cobalt
	// Strike's and Sliver's sleep jitter work.
	Interval time.Duration
	Jitter   float64
	// MissRate is the probability that a scheduled beat is not seen (host
	// asleep, proxy failure): its gap merges into the next one.
	MissRate float64
	// ReqBytes and RespBytes are a heartbeat's payload sizes, each drawn
	// within +-SizeJitter of its mean; 0 means +-10 %.
	ReqBytes, RespBytes uint64
	SizeJitter          float64
	// CommandRate is the probability that a beat carries a command: the
	// server answers with CmdRespBytes instead.
	CommandRate               float64
	CmdReqBytes, CmdRespBytes uint64
	// Service is Zeek's service field for the connections.
	Service string
}

// DefaultBeacon is a 60-second beacon with 10 % jitter to port 8443, the
// reference's C2 example, with a command on 30 % of beats (the
// reference's command exchange: 235-byte requests, 1420-byte responses).
func DefaultBeacon() Beacon {
	return Beacon{
		Port:        8443,
		Offset:      5 * time.Minute,
		Interval:    time.Minute,
		Jitter:      0.1,
		ReqBytes:    250,
		RespBytes:   400,
		CommandRate: 0.3,
		CmdReqBytes: 235, CmdRespBytes: 1420,
		Service: "ssl",
	}
}

// Exfil is staged exfiltration: the host pulls data from internal file
// servers over SMB, then uploads large volumes to several external
// addresses. The defaults mirror the reference sample: 650 MB + 450 MB
// staged, then 850/420/380/220/180/150 MB out to 6 addresses over 443.
type Exfil struct {
	// Src is the insider or compromised host; zero picks a workstation.
	Src netip.Addr
	// Offset is the first staging transfer, relative to Spec.Start.
	Offset time.Duration
	// StageFrom are the file servers read from; StageBytes how much each
	// transfer reads (one transfer per entry, cycling StageFrom).
	StageFrom  []netip.Addr
	StageBytes []uint64
	// StageGap separates staging transfers; UploadDelay separates the
	// last staging transfer from the first upload; UploadGap the uploads.
	StageGap, UploadDelay, UploadGap time.Duration
	// Uploads are the upload sizes, one connection each, to Dsts in
	// order; empty Dsts picks len(Uploads) attacker addresses.
	Uploads []uint64
	Dsts    []netip.Addr
	Port    uint16
	// UploadMbps is the upload throughput, which sets durations.
	UploadMbps float64
}

// DefaultExfil mirrors the reference sample, 15 minutes into the run.
func DefaultExfil() Exfil {
	return Exfil{
		Offset:      15 * time.Minute,
		StageFrom:   []netip.Addr{fileServer(0), fileServer(1)},
		StageBytes:  []uint64{650e6, 450e6},
		StageGap:    time.Minute,
		UploadDelay: 4 * time.Minute,
		UploadGap:   time.Minute,
		Uploads:     []uint64{850e6, 420e6, 380e6, 220e6, 180e6, 150e6},
		Port:        443,
		UploadMbps:  100,
	}
}

// LowSlow is low-and-slow exfiltration: a fixed-size upload at a steady
// pace, below per-window volume thresholds.
type LowSlow struct {
	Src netip.Addr // zero picks a workstation
	// Dsts receive the chunks in turn; empty picks one attacker address.
	Dsts []netip.Addr
	Port uint16
	// Offset and Length bound the activity; Length 0 means until the end.
	Offset, Length time.Duration
	// Chunk bytes are sent every Every, with the gap jittered like a
	// beacon's.
	Chunk  uint64
	Every  time.Duration
	Jitter float64
}

// DefaultLowSlow sends 10 MB every 10 minutes over 443.
func DefaultLowSlow() LowSlow {
	return LowSlow{Port: 443, Offset: 5 * time.Minute, Chunk: 10e6, Every: 10 * time.Minute, Jitter: 0.1}
}

// NTP is time synchronisation: many hosts polling a few pool servers over
// udp/123 at a fixed interval, the most periodic benign traffic there is.
type NTP struct {
	// Hosts is how many workstations (from the first) run an NTP client.
	Hosts int
	// Servers are the pool servers; each host polls PerHost of them.
	Servers []netip.Addr
	PerHost int
	// Poll is the polling interval (ntpd's maxpoll default is 1024 s).
	Poll time.Duration
}

// DefaultNTP is 50 hosts polling 2 of 4 pool servers every 1024 s.
func DefaultNTP() NTP {
	return NTP{Hosts: 50, Servers: ntpServers(4), PerHost: 2, Poll: 1024 * time.Second}
}

// UpdateCheck is software update polling: many hosts checking a vendor's
// CDN over HTTPS at a regular interval, now and then downloading an update.
type UpdateCheck struct {
	Hosts    int          // workstations, from the first
	CDN      []netip.Addr // addresses of the CDN; each check picks one
	Interval time.Duration
	Jitter   float64
	// DownloadRate is the probability that a check downloads
	// DownloadBytes.
	DownloadRate  float64
	DownloadBytes uint64
}

// DefaultUpdateCheck is 50 hosts checking hourly with 5 % jitter.
func DefaultUpdateCheck() UpdateCheck {
	return UpdateCheck{Hosts: 50, CDN: cdnAddrs(4), Interval: time.Hour, Jitter: 0.05, DownloadRate: 0.02, DownloadBytes: 80e6}
}

// Backup is a nightly backup: large internal transfers between file
// servers and a backup server at a fixed time of day, over SSH (rsync) or
// SMB. With Pull the backup server originates and reads from the clients,
// which looks like data staging; otherwise the clients push.
type Backup struct {
	Clients []netip.Addr
	Server  netip.Addr
	Port    uint16
	Pull    bool
	// TimeOfDay is when the job starts every day of the run, after UTC
	// midnight; clients follow each other by Spacing.
	TimeOfDay, Spacing time.Duration
	Bytes              uint64 // per client and night (+-20 %)
	Mbps               float64
}

// DefaultBackup pushes 5 GB per file server over SSH at 01:00.
func DefaultBackup() Backup {
	return Backup{
		Clients:   []netip.Addr{fileServer(0), fileServer(1)},
		Server:    backupServer(),
		Port:      22,
		TimeOfDay: time.Hour,
		Spacing:   10 * time.Minute,
		Bytes:     5e9,
		Mbps:      800,
	}
}

// Admin is an IT administrator's host: interactive SSH and RDP sessions
// to a few servers during working hours, plus a morning round of SSH
// logins to every server in turn, which looks like lateral movement.
type Admin struct {
	Src     netip.Addr // zero means 10.30.0.10
	Servers []netip.Addr
	// SessionsPerDay are spread over 08:00-18:00 UTC.
	SessionsPerDay float64
	// Round is the time of day of the morning round; negative disables it.
	Round time.Duration
}

// DefaultAdmin is 12 sessions a day to 6 servers and a 09:00 round.
func DefaultAdmin() Admin {
	return Admin{Servers: adminServers(6), SessionsPerDay: 12, Round: 9 * time.Hour}
}

// CloudUpload is a user uploading a large file once to a popular cloud
// storage provider over HTTPS, split over a few parallel connections as
// sync clients do.
type CloudUpload struct {
	Src    netip.Addr // zero picks a workstation
	Dst    netip.Addr // zero means the provider's first address
	Offset time.Duration
	Bytes  uint64
	Conns  int
	Mbps   float64
}

// DefaultCloudUpload uploads 400 MB over 4 connections.
func DefaultCloudUpload() CloudUpload {
	return CloudUpload{Offset: 20 * time.Minute, Bytes: 400e6, Conns: 4, Mbps: 80}
}

// maxHosts bounds workstation indexes so that addresses stay in 10.10/16.
const maxHosts = 250 * 256

// Validate reports every problem of the spec, each with the instance it
// concerns, joined.
func (s *Spec) Validate() error {
	var errs []error
	bad := func(where, format string, args ...any) {
		errs = append(errs, fmt.Errorf("scenario: %s: %s", where, fmt.Sprintf(format, args...)))
	}
	if s.Start.IsZero() {
		bad("start", "must be set")
	}
	if s.Duration <= 0 {
		bad("duration", "must be positive")
	}
	b := s.Background
	if b.Hosts < 0 || b.Hosts > maxHosts {
		bad("background.hosts", "%d is outside [0, %d]", b.Hosts, maxHosts)
	}
	if b.Hosts > 0 {
		if b.SessionsPerHour <= 0 {
			bad("background.sessions_per_hour", "must be positive")
		}
		if b.Destinations < 1 || b.Destinations > 250*256 {
			bad("background.destinations", "%d is outside [1, %d]", b.Destinations, 250*256)
		}
	}
	jit := func(where string, j float64) {
		if !(j >= 0 && j <= 0.9) {
			bad(where, "jitter %v is outside [0, 0.9]", j)
		}
	}
	prob := func(where string, p float64) {
		if !(p >= 0 && p <= 1) {
			bad(where, "%v is not a probability", p)
		}
	}
	offset := func(where string, d time.Duration) {
		if d < 0 {
			bad(where+".offset", "must not be negative")
		}
	}
	addr4 := func(where string, a netip.Addr) {
		if a.IsValid() && !a.Is4() {
			bad(where, "%s: only IPv4 is generated", a)
		}
	}
	for i, l := range s.Lateral {
		w := fmt.Sprintf("lateral[%d]", i)
		offset(w, l.Offset)
		addr4(w+".src", l.Src)
		if !l.TargetNet.IsValid() || !l.TargetNet.Addr().Is4() || l.TargetNet.Bits() > 24 {
			bad(w+".target_net", "must be an IPv4 prefix of /24 or wider")
		} else if l.Targets < 1 || l.Targets > 1<<(32-l.TargetNet.Bits())-20 {
			bad(w+".targets", "%d does not fit %s", l.Targets, l.TargetNet)
		}
		if len(l.Ports) == 0 {
			bad(w+".ports", "must not be empty")
		}
		if l.ProbeInterval <= 0 {
			bad(w+".probe_interval", "must be positive")
		}
		if l.Logins < 0 {
			bad(w+".logins", "must not be negative")
		}
	}
	for i, c := range s.C2 {
		w := fmt.Sprintf("c2[%d]", i)
		offset(w, c.Offset)
		addr4(w+".src", c.Src)
		addr4(w+".dst", c.Dst)
		if c.Interval < time.Second {
			bad(w+".interval", "%s is under a second", c.Interval)
		}
		if c.Length < 0 {
			bad(w+".length", "must not be negative")
		}
		jit(w+".jitter", c.Jitter)
		prob(w+".miss_rate", c.MissRate)
		if c.MissRate >= 1 {
			bad(w+".miss_rate", "must be below 1")
		}
		prob(w+".command_rate", c.CommandRate)
		if c.Port == 0 {
			bad(w+".port", "must be set")
		}
	}
	for i, e := range s.Exfil {
		w := fmt.Sprintf("exfil[%d]", i)
		offset(w, e.Offset)
		addr4(w+".src", e.Src)
		if len(e.StageBytes) > 0 && len(e.StageFrom) == 0 {
			bad(w+".stage_from", "must name file servers when stage_bytes is set")
		}
		if len(e.Uploads) == 0 {
			bad(w+".uploads", "must not be empty")
		}
		if len(e.Dsts) > 0 && len(e.Dsts) != len(e.Uploads) {
			bad(w+".dsts", "has %d addresses for %d uploads", len(e.Dsts), len(e.Uploads))
		}
		for j, d := range e.Dsts {
			addr4(fmt.Sprintf("%s.dsts[%d]", w, j), d)
		}
		if e.UploadMbps <= 0 {
			bad(w+".upload_mbps", "must be positive")
		}
		if e.Port == 0 {
			bad(w+".port", "must be set")
		}
		if e.StageGap < 0 || e.UploadDelay < 0 || e.UploadGap < 0 {
			bad(w, "gaps must not be negative")
		}
	}
	for i, l := range s.LowSlow {
		w := fmt.Sprintf("low_slow[%d]", i)
		offset(w, l.Offset)
		addr4(w+".src", l.Src)
		if l.Chunk == 0 {
			bad(w+".chunk", "must be positive")
		}
		if l.Every < time.Second {
			bad(w+".every", "%s is under a second", l.Every)
		}
		if l.Length < 0 {
			bad(w+".length", "must not be negative")
		}
		jit(w+".jitter", l.Jitter)
		if l.Port == 0 {
			bad(w+".port", "must be set")
		}
	}
	for i, n := range s.NTP {
		w := fmt.Sprintf("ntp[%d]", i)
		if n.Hosts < 1 || n.Hosts > maxHosts {
			bad(w+".hosts", "%d is outside [1, %d]", n.Hosts, maxHosts)
		}
		if len(n.Servers) == 0 {
			bad(w+".servers", "must not be empty")
		}
		if n.PerHost < 1 || n.PerHost > len(n.Servers) {
			bad(w+".per_host", "%d is outside [1, %d]", n.PerHost, len(n.Servers))
		}
		if n.Poll < time.Second {
			bad(w+".poll", "%s is under a second", n.Poll)
		}
	}
	for i, u := range s.Updates {
		w := fmt.Sprintf("updates[%d]", i)
		if u.Hosts < 1 || u.Hosts > maxHosts {
			bad(w+".hosts", "%d is outside [1, %d]", u.Hosts, maxHosts)
		}
		if len(u.CDN) == 0 {
			bad(w+".cdn", "must not be empty")
		}
		if u.Interval < time.Second {
			bad(w+".interval", "%s is under a second", u.Interval)
		}
		jit(w+".jitter", u.Jitter)
		prob(w+".download_rate", u.DownloadRate)
	}
	for i, b := range s.Backups {
		w := fmt.Sprintf("backups[%d]", i)
		if len(b.Clients) == 0 {
			bad(w+".clients", "must not be empty")
		}
		if !b.Server.IsValid() {
			bad(w+".server", "must be set")
		}
		if b.Port == 0 {
			bad(w+".port", "must be set")
		}
		if b.TimeOfDay < 0 || b.TimeOfDay >= 24*time.Hour {
			bad(w+".time_of_day", "%s is outside a day", b.TimeOfDay)
		}
		if b.Spacing < 0 {
			bad(w+".spacing", "must not be negative")
		}
		if b.Bytes == 0 || b.Mbps <= 0 {
			bad(w, "bytes and mbps must be positive")
		}
	}
	for i, a := range s.Admin {
		w := fmt.Sprintf("admin[%d]", i)
		addr4(w+".src", a.Src)
		if len(a.Servers) == 0 {
			bad(w+".servers", "must not be empty")
		}
		if a.SessionsPerDay < 0 {
			bad(w+".sessions_per_day", "must not be negative")
		}
		if a.Round >= 24*time.Hour {
			bad(w+".round", "%s is outside a day", a.Round)
		}
	}
	for i, c := range s.CloudUploads {
		w := fmt.Sprintf("cloud_uploads[%d]", i)
		offset(w, c.Offset)
		addr4(w+".src", c.Src)
		addr4(w+".dst", c.Dst)
		if c.Bytes == 0 || c.Conns < 1 || c.Mbps <= 0 {
			bad(w, "bytes, conns and mbps must be positive")
		}
	}
	if b.Favourites < 0 || b.Favourites > 64 {
		bad("background.favourites", "%d is outside [0, 64]", b.Favourites)
	}
	if b.Favourites > 0 {
		if !(b.FavouriteShare > 0 && b.FavouriteShare < 1) {
			bad("background.favourite_share", "%v is outside (0, 1)", b.FavouriteShare)
		}
		if b.Destinations > webDests-1000 {
			bad("background.destinations", "%d leaves fewer than 1000 addresses for favourites", b.Destinations)
		}
	}
	for i, c := range s.C2 {
		if !(c.SizeJitter >= 0 && c.SizeJitter <= 0.9) {
			bad(fmt.Sprintf("c2[%d].size_jitter", i), "%v is outside [0, 0.9]", c.SizeJitter)
		}
	}
	for i, k := range s.KillChain {
		w := fmt.Sprintf("kill_chain[%d]", i)
		addr4(w+".src", k.Src)
		sub := Spec{Start: s.Start, Duration: s.Duration, C2: []Beacon{k.Beacon}, Exfil: []Exfil{k.Exfil}}
		if err := sub.Validate(); err != nil {
			bad(w, "%v", err)
		}
	}
	for i, m := range s.Telemetry {
		w := fmt.Sprintf("telemetry[%d]", i)
		if m.Hosts < 1 || m.FirstHost < 0 || m.FirstHost+m.Hosts > maxHosts {
			bad(w+".hosts", "hosts %d from %d do not fit [0, %d)", m.Hosts, m.FirstHost, maxHosts)
		}
		if len(m.Endpoints) == 0 {
			bad(w+".endpoints", "must not be empty")
		}
		if m.Interval < time.Second {
			bad(w+".interval", "%s is under a second", m.Interval)
		}
		jit(w+".jitter", m.Jitter)
		if m.Port == 0 {
			bad(w+".port", "must be set")
		}
	}
	for i, c := range s.CloudSync {
		w := fmt.Sprintf("cloud_sync[%d]", i)
		if c.Hosts < 1 || c.FirstHost < 0 || c.FirstHost+c.Hosts > maxHosts {
			bad(w+".hosts", "hosts %d from %d do not fit [0, %d)", c.Hosts, c.FirstHost, maxHosts)
		}
		if len(c.Dsts) == 0 {
			bad(w+".dsts", "must not be empty")
		}
		if c.Interval < time.Second {
			bad(w+".interval", "%s is under a second", c.Interval)
		}
		jit(w+".jitter", c.Jitter)
		prob(w+".upload_rate", c.UploadRate)
		if c.UploadRate > 0 && (c.UploadMin == 0 || c.UploadMax < c.UploadMin) {
			bad(w, "upload_min must be positive and at most upload_max")
		}
	}
	return errors.Join(errs...)
}

// KillChain is one compromised host going through the whole chain: a C2
// implant beaconing, then staging from internal file servers and
// exfiltration. Beacon and Exfil are generated as their own instances
// (with their own labels) from the same source host; the chain has a
// label of its own expecting KILL_CHAIN.
type KillChain struct {
	Src    netip.Addr // zero picks a workstation
	Beacon Beacon
	Exfil  Exfil
}

// DefaultKillChain beacons every 5 minutes from 10 minutes into the run
// and stages and exfiltrates (the reference's volumes) 3 hours later.
func DefaultKillChain() KillChain {
	b := DefaultBeacon()
	b.Interval = 5 * time.Minute
	b.Offset = 10 * time.Minute
	x := DefaultExfil()
	x.Offset = 3 * time.Hour
	return KillChain{Beacon: b, Exfil: x}
}

// Telemetry is an agent on many hosts reporting to a few collector
// addresses at a fixed interval with small, steady payloads: endpoint
// protection, monitoring, chat keepalives. Benign periodic traffic to
// destinations many hosts share.
type Telemetry struct {
	// Hosts workstations from FirstHost run the agent.
	Hosts, FirstHost int
	// Endpoints are the collectors; each report picks one.
	Endpoints []netip.Addr
	Port      uint16
	Interval  time.Duration
	Jitter    float64
	// ReqBytes and RespBytes are a report's sizes (+-10 %).
	ReqBytes, RespBytes uint64
}

// DefaultTelemetry is 50 hosts reporting every 5 minutes to 2 collectors.
func DefaultTelemetry() Telemetry {
	return Telemetry{Hosts: 50, Endpoints: telemetryAddrs(2), Port: 443, Interval: 5 * time.Minute, Jitter: 0.05, ReqBytes: 1200, RespBytes: 300}
}

// CloudSync is a file sync client on many hosts polling a popular cloud
// storage provider, now and then uploading changed files: periodic
// traffic and uploads to a destination many hosts share.
type CloudSync struct {
	Hosts, FirstHost int
	Dsts             []netip.Addr
	Interval         time.Duration
	Jitter           float64
	// UploadRate is the probability that a poll uploads a file of
	// log-uniform size in [UploadMin, UploadMax].
	UploadRate           float64
	UploadMin, UploadMax uint64
}

// DefaultCloudSync is 50 hosts polling every 10 minutes, uploading on 5 %
// of polls between 100 kB and 50 MB.
func DefaultCloudSync() CloudSync {
	return CloudSync{Hosts: 50, Dsts: cloudAddrs(4), Interval: 10 * time.Minute, Jitter: 0.1, UploadRate: 0.05, UploadMin: 100e3, UploadMax: 50e6}
}
