// Package upload scores data leaving internal hosts against each host's
// own baseline: Layer 2's exfiltration evidence, beside Layer 1's fixed
// thresholds (OUTBOUND_SPIKE, DATA_STAGING, DESTINATION_DIVERSITY).
//
// A Scorer is fed the raw connections (Add) and evaluated on an
// event-time schedule (Advance, driven by Layer 1's watermark). Every
// Config.Every (10 minutes) it looks at each host's last hour and emits:
//
//   - UPLOAD_ANOMALY, mode burst: the hour's upload to rare destinations is
//     improbable under the host's model: TailProb <= BurstTail and at least
//     BurstBytes (a 2 GB upload);
//
//   - UPLOAD_ANOMALY, mode sustained: evidence accumulated over complete
//     hours crosses a threshold although no hour is extreme (10 MB every 10
//     minutes for hours): a one-sided CUSUM (Page, "Continuous inspection
//     schemes", Biometrika 1954) of the hours' modified z-scores,
//
//     S_h = max(0, S_{h-1} + min(z_h, ZCap) - K), alarm at S_h >= H,
//
//     z_h = (log1p(x_h) - location)/scale from the baseline, 0 for hours at
//     or below SlowFloor; K is the allowance (a shift of K scales is
//     ignored), and H with K = 1 needs e.g. three hours at z = 3;
//
//   - STAGING_ANOMALY: data pulled into the host from internal hosts on
//     staging ports (SMB, SSH, FTP, NFS) far above the host's own usual
//     inbound staging volume;
//
//   - MULTI_DESTINATION_UPLOAD: bulk uploads to several rare external
//     destinations within DropWindow (an exfiltration drop spread to
//     evade per-destination limits).
//
// Volumes are weighted by destination rarity (the beacon Tracker's live
// prevalence and the baseline's): bytes to a destination many internal
// hosts use (cloud storage, video conferencing, update servers) count
// little or nothing, so legitimate cloud uploads do not alarm, while the
// same volume to an address no other host talks to counts in full. Only
// bulk transfers (connections of at least BulkBytes) are attributed to
// destinations; smaller ones count in the host's total but not in the
// weighted volume.
//
// The host model is the baseline package's hourly hurdle model of
// bytes_out_external (log1p location and robust scale, activity, floor),
// through the Baseline interface; before any snapshot exists a static
// prior (PriorLocation, PriorScale) stands in. The staging baseline is the
// scorer's own: an exponentially weighted location and mean absolute
// deviation of log1p(staged bytes) over the host's staging hours, from a
// static prior, because the baseline package has no inbound metric yet.
//
// Everything is driven by connection event time; a Scorer belongs to one
// goroutine.
package upload

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/scoring/beacon"
)

// Signal types the Scorer emits.
const (
	SignalUpload  features.SignalType = "UPLOAD_ANOMALY"
	SignalStaging features.SignalType = "STAGING_ANOMALY"
	SignalSpread  features.SignalType = "MULTI_DESTINATION_UPLOAD"
)

// MetricStrength rates a signal as evidence in [0, 1] for correlation
// (scoring.MetricStrength): the burst's -log10 tail probability from 2 to
// 10, the CUSUM from H/2 to 3H, the staging z from 2 to 8, and the drop's
// rare destinations from 1 to twice DropDestinations.
const MetricStrength = "evidence_strength"

func ramp(x, lo, hi float64) float64 { return math.Min(1, math.Max(0, (x-lo)/(hi-lo))) }

// Upload anomaly modes, the "mode" metric.
const (
	ModeBurst     = 1
	ModeSustained = 2
)

// Baseline kinds, the "baseline_kind" metric: which model judged.
const (
	KindStaticPrior = 0
	KindHost        = 1
	KindPrior       = 2 // the snapshot's peer or population prior
	KindOwnHistory  = 3 // the scorer's own staging history
)

// ErrConfig: a Config field has a bad value.
var ErrConfig = errors.New("upload: invalid config")

// Config configures a Scorer. Start from DefaultConfig.
type Config struct {
	LocalNetworks []netip.Prefix
	// Every is the evaluation cadence; the window is the hour before.
	Every time.Duration
	// StagingPorts are the internal file-transfer ports.
	StagingPorts []uint16
	// BulkBytes: connections sending at least this are attributed to
	// their destination.
	BulkBytes uint64
	// BurstTail and BurstBytes define a burst.
	BurstTail  float64
	BurstBytes uint64
	// K, H and ZCap are the CUSUM's allowance, threshold and cap on one
	// hour's contribution; SlowFloor is the hourly volume below which an
	// hour adds no evidence, SlowBytes the weighted volume a sustained
	// alarm needs in total.
	K, H, ZCap float64
	SlowFloor  uint64
	SlowBytes  uint64
	// PriorLocation and PriorScale (log1p bytes per hour) stand in for the
	// host model before any baseline snapshot exists; PriorFloor is their
	// floor.
	PriorLocation, PriorScale float64
	PriorFloor                uint64
	// Staging: an hour of staged bytes of at least StagingFloor with z >=
	// StagingZ against the host's own history (or the staging prior)
	// alarms; StagingAlpha is the history's weight of a new hour.
	StagingFloor                            uint64
	StagingZ                                float64
	StagingPriorLocation, StagingPriorScale float64
	StagingAlpha                            float64
	// A drop: at least DropDestinations rare destinations (rarity >= 0.5)
	// each receiving DropBytes within DropWindow.
	DropDestinations int
	DropBytes        uint64
	DropWindow       time.Duration
	// PopularMin and PopularShare: destination rarity as the beacon
	// score's (beacon.Params.Rarity).
	PopularMin   int
	PopularShare float64
	// MaxHosts caps tracked hosts; HostIdle evicts hosts without
	// connections (and with nothing pending) after this long.
	MaxHosts int
	HostIdle time.Duration
}

// DefaultConfig: hourly windows every 10 minutes, bursts from 100 MB at a
// tail probability of 1e-4 (against the static prior a 2 GB hour has
// z = 4.6, p = 2e-6, and 540 MB is the least that passes), the CUSUM at K = 1, H = 6, staging from
// 200 MB at z >= 3, drops to 3 destinations of 20 MB within 30 minutes.
func DefaultConfig() Config {
	bp := beacon.DefaultParams()
	return Config{
		LocalNetworks: beacon.DefaultConfig().LocalNetworks,
		Every:         10 * time.Minute,
		StagingPorts:  []uint16{445, 22, 21, 2049},
		BulkBytes:     256e3,
		BurstTail:     1e-4, BurstBytes: 100e6,
		K: 1, H: 6, ZCap: 5, SlowFloor: 20e6, SlowBytes: 100e6,
		// A workstation's upload hour to destinations other hosts do not
		// share: about 2 MB, spread over a factor of e^1.5 = 4.5.
		PriorLocation: math.Log1p(2e6), PriorScale: 1.5, PriorFloor: 20e6,
		StagingFloor: 200e6, StagingZ: 3,
		// A workstation reads a few MB an hour from file shares.
		StagingPriorLocation: math.Log1p(5e6), StagingPriorScale: 1.5,
		StagingAlpha:     0.2,
		DropDestinations: 3, DropBytes: 20e6, DropWindow: 30 * time.Minute,
		PopularMin: bp.PopularMin, PopularShare: bp.PopularShare,
		MaxHosts: 500_000, HostIdle: 7 * 24 * time.Hour,
	}
}

// Validate reports every bad field, joined.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...)))
	}
	if c.Every < time.Minute || time.Hour%c.Every != 0 {
		bad("every %s: must divide an hour and be at least a minute", c.Every)
	}
	if c.DropWindow < c.Every || c.DropWindow > time.Hour || c.DropWindow%c.Every != 0 {
		bad("drop_window %s: must be a multiple of every within an hour", c.DropWindow)
	}
	if !(c.BurstTail > 0 && c.BurstTail < 1) {
		bad("burst_tail %v: must be within (0, 1)", c.BurstTail)
	}
	if !(c.K >= 0) || !(c.H > 0) || !(c.ZCap > c.K) {
		bad("cusum: want k >= 0, h > 0 and z_cap > k")
	}
	if !(c.PriorScale > 0) || !(c.StagingPriorScale > 0) {
		bad("prior scales must be positive")
	}
	if !(c.StagingAlpha > 0 && c.StagingAlpha <= 1) {
		bad("staging_alpha %v: must be within (0, 1]", c.StagingAlpha)
	}
	if c.DropDestinations < 2 {
		bad("drop_destinations %d: must be at least 2", c.DropDestinations)
	}
	if c.PopularMin < 3 || !(c.PopularShare >= 0 && c.PopularShare <= 1) {
		bad("popular_min must be at least 3 and popular_share within [0, 1]")
	}
	if c.MaxHosts < 1 {
		bad("max_hosts %d: must be positive", c.MaxHosts)
	}
	if c.HostIdle < 2*time.Hour {
		bad("host_idle %s: must be at least 2h", c.HostIdle)
	}
	return errors.Join(errs...)
}

// Prevalence is live destination prevalence (the beacon Tracker's).
type Prevalence interface {
	Sources(dst netip.Addr) (int, bool)
	Hosts() int
}

// Options are a Scorer's collaborators; all may be nil.
type Options struct {
	Logger     *slog.Logger
	Baseline   Baseline
	Prevalence Prevalence
}

// Stats count what a Scorer did.
type Stats struct {
	Conns, Counted, Refused uint64
	Evaluations             uint64
	Signals                 uint64
	Hosts                   int
}

const (
	ringLen = 8  // buckets kept: the hour and a margin for early arrivals
	maxBulk = 32 // (destination, bucket) bulk entries per host
)

type bucket struct {
	start  int64 // seconds; which bucket the slot holds
	out    uint64
	staged uint64
}

type bulk struct {
	dst    netip.Addr
	bucket int64
	bytes  uint64
}

type emitState struct {
	at       int64 // tick of the last signal, seconds
	strength float64
}

type host struct {
	addr      netip.Addr
	ring      [ringLen]bucket
	bulks     []bulk
	cusum     float64
	cusumH    int     // hours the CUSUM has been positive
	slowBytes float64 // weighted bytes while positive
	stLoc     float64 // staging history: EW location and MAD, log1p
	stDev     float64
	stN       int
	last      int64
	emitted   [3]emitState
}

// Scorer is the upload anomaly scorer; see the package doc.
type Scorer struct {
	cfg      Config
	opts     Options
	log      *slog.Logger
	local    ingest.LocalNetworks
	staging  [65536 / 64]uint64
	every    int64
	rarity   beacon.Params
	hosts    map[netip.Addr]*host
	next     int64
	maxTS    int64
	lastWarn int64
	stats    Stats
	sigs     []features.Signal
}

// NewScorer validates cfg and returns a Scorer.
func NewScorer(cfg Config, opts Options) (*Scorer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Scorer{cfg: cfg, opts: opts, log: opts.Logger, every: int64(cfg.Every / time.Second), hosts: map[netip.Addr]*host{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.local = ingest.NewLocalNetworks(cfg.LocalNetworks)
	for _, p := range cfg.StagingPorts {
		s.staging[p/64] |= 1 << (p % 64)
	}
	s.rarity = beacon.DefaultParams()
	s.rarity.PopularMin, s.rarity.PopularShare = cfg.PopularMin, cfg.PopularShare
	return s, nil
}

func (s *Scorer) internal(a netip.Addr, local ingest.Tristate) bool {
	return s.local.Internal(a, local)
}

func (s *Scorer) isStaging(p uint16) bool { return s.staging[p/64]&(1<<(p%64)) != 0 }

// Add records connections; Advance evaluates. conns stays the caller's.
func (s *Scorer) Add(conns []ingest.Conn) {
	for i := range conns {
		c := &conns[i]
		s.stats.Conns++
		if c.TS < 0 || !c.OrigH.IsValid() || !c.RespH.IsValid() {
			continue
		}
		oi, ri := s.internal(c.OrigH, c.LocalOrig), s.internal(c.RespH, c.LocalResp)
		sec := c.TS / 1e6
		switch {
		case oi && !ri && c.OrigBytes > 0:
			h := s.host(c.OrigH.Unmap(), sec)
			if h == nil {
				continue
			}
			b := s.slot(h, sec)
			if b == nil {
				continue
			}
			b.out += c.OrigBytes
			if c.OrigBytes >= s.cfg.BulkBytes {
				s.addBulk(h, c.RespH.Unmap(), b.start, c.OrigBytes)
			}
		case oi && ri && s.isStaging(c.RespP):
			// Data into an internal host over a file-transfer port: what
			// the originator read (resp bytes), and what it pushed into
			// the responder (orig bytes).
			if c.RespBytes > 0 {
				if h := s.host(c.OrigH.Unmap(), sec); h != nil {
					if b := s.slot(h, sec); b != nil {
						b.staged += c.RespBytes
					}
				}
			}
			if c.OrigBytes > 0 {
				if h := s.host(c.RespH.Unmap(), sec); h != nil {
					if b := s.slot(h, sec); b != nil {
						b.staged += c.OrigBytes
					}
				}
			}
		default:
			continue
		}
		s.stats.Counted++
		if sec > s.maxTS {
			s.maxTS = sec
		}
		if s.next == 0 {
			s.next = (sec/s.every + 1) * s.every
		}
	}
}

func (s *Scorer) host(a netip.Addr, sec int64) *host {
	h := s.hosts[a]
	if h == nil {
		if len(s.hosts) >= s.cfg.MaxHosts {
			s.stats.Refused++
			if sec-s.lastWarn >= 3600 {
				s.lastWarn = sec
				s.log.Warn("upload: host state at its cap, new hosts refused until idle ones expire", "cap", s.cfg.MaxHosts)
			}
			return nil
		}
		h = &host{addr: a}
		s.hosts[a] = h
	}
	h.last = max(h.last, sec)
	return h
}

// slot returns the bucket of sec, recycling the ring slot of a bucket
// more than the ring old; nil for a connection older than the ring.
func (s *Scorer) slot(h *host, sec int64) *bucket {
	start := sec - floorMod(sec, s.every)
	b := &h.ring[floorMod(start/s.every, ringLen)]
	switch {
	case b.start == start:
	case b.start < start:
		*b = bucket{start: start}
	default:
		return nil // later than its slot's bucket: too old
	}
	return b
}

func floorMod(a, b int64) int64 { return ((a % b) + b) % b }

func (s *Scorer) addBulk(h *host, dst netip.Addr, start int64, bytes uint64) {
	for i := range h.bulks {
		if e := &h.bulks[i]; e.dst == dst && e.bucket == start {
			e.bytes += bytes
			return
		}
	}
	if len(h.bulks) < maxBulk {
		h.bulks = append(h.bulks, bulk{dst, start, bytes})
		return
	}
	// Full: replace the oldest, then smallest, entry if this one is
	// larger (the window's big transfers are what matter).
	w := 0
	for i := range h.bulks {
		a, b := &h.bulks[i], &h.bulks[w]
		if a.bucket < b.bucket || a.bucket == b.bucket && a.bytes < b.bytes {
			w = i
		}
	}
	if h.bulks[w].bucket < start || h.bulks[w].bytes < bytes {
		h.bulks[w] = bulk{dst, start, bytes}
	}
}

// Advance evaluates every tick at or before the watermark wm (µs) and
// returns the signals, sorted by source and type; they are the caller's.
func (s *Scorer) Advance(ctx context.Context, wm int64) ([]features.Signal, error) {
	s.sigs = nil
	for s.next != 0 && s.next*1e6 <= wm {
		if err := s.tick(ctx, s.next); err != nil {
			return s.sigs, err
		}
		s.next += s.every
	}
	return s.sigs, nil
}

// Flush evaluates the window ending at the next tick after the newest
// connection, as at the end of input.
func (s *Scorer) Flush(ctx context.Context) ([]features.Signal, error) {
	s.sigs = nil
	if s.next == 0 {
		return nil, nil
	}
	for s.next <= s.maxTS+s.every {
		if err := s.tick(ctx, s.next); err != nil {
			return s.sigs, err
		}
		s.next += s.every
	}
	return s.sigs, nil
}

func (s *Scorer) sources(dst netip.Addr) int {
	n := 0
	if s.opts.Prevalence != nil {
		n, _ = s.opts.Prevalence.Sources(dst)
	}
	if s.opts.Baseline != nil {
		if m, ok := s.opts.Baseline.Prevalence(dst); ok {
			n = max(n, m)
		}
	}
	return n
}

func (s *Scorer) population() int {
	if s.opts.Prevalence != nil {
		return s.opts.Prevalence.Hosts()
	}
	return len(s.hosts)
}

// window is one host's hour before a tick.
type window struct {
	out, staged  uint64
	weighted     float64 // bulk bytes x destination rarity
	bulkBytes    uint64
	rare         []netip.Addr // rare bulk destinations, by bytes
	spreadDsts   []netip.Addr // rare destinations of DropBytes within DropWindow
	spreadBytes  uint64
	lastBucketAt int64
}

func (s *Scorer) tick(ctx context.Context, T int64) error {
	lo := T - 3600
	hourEnd := T%3600 == 0
	pop := s.population()
	keys := make([]netip.Addr, 0, len(s.hosts))
	for a, h := range s.hosts {
		if h.last < T-int64(s.cfg.HostIdle/time.Second) && h.cusum == 0 {
			delete(s.hosts, a)
			continue
		}
		keys = append(keys, a)
	}
	slices.SortFunc(keys, netip.Addr.Compare)
	for i, a := range keys {
		if i&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		h := s.hosts[a]
		if h.last < lo && h.cusum == 0 {
			continue
		}
		s.stats.Evaluations++
		w := s.window(h, T, pop)
		s.evaluate(h, &w, T, hourEnd)
		h.bulks = slices.DeleteFunc(h.bulks, func(b bulk) bool { return b.bucket < lo+s.every })
	}
	s.stats.Hosts = len(s.hosts)
	slices.SortStableFunc(s.sigs, func(a, b features.Signal) int {
		if c := a.Src.Compare(b.Src); c != 0 {
			return c
		}
		return cmp.Compare(a.Type, b.Type)
	})
	return nil
}

func (s *Scorer) window(h *host, T int64, pop int) window {
	lo := T - 3600
	var w window
	for _, b := range h.ring {
		if b.start >= lo && b.start < T {
			w.out += b.out
			w.staged += b.staged
		}
	}
	type dstSum struct {
		dst           netip.Addr
		bytes, recent uint64
		rarity        float64
	}
	var sums []dstSum
	dropLo := T - int64(s.cfg.DropWindow/time.Second)
	for _, b := range h.bulks {
		if b.bucket < lo || b.bucket >= T {
			continue
		}
		i := slices.IndexFunc(sums, func(d dstSum) bool { return d.dst == b.dst })
		if i < 0 {
			sums = append(sums, dstSum{dst: b.dst, rarity: s.rarity.Rarity(s.sources(b.dst), pop)})
			i = len(sums) - 1
		}
		sums[i].bytes += b.bytes
		if b.bucket >= dropLo {
			sums[i].recent += b.bytes
		}
	}
	slices.SortFunc(sums, func(a, b dstSum) int {
		if c := cmp.Compare(b.bytes, a.bytes); c != 0 {
			return c
		}
		return a.dst.Compare(b.dst)
	})
	for _, d := range sums {
		w.bulkBytes += d.bytes
		w.weighted += float64(d.bytes) * d.rarity
		if d.rarity >= 0.5 {
			w.rare = append(w.rare, d.dst)
			if d.recent >= s.cfg.DropBytes {
				w.spreadDsts = append(w.spreadDsts, d.dst)
				w.spreadBytes += d.recent
			}
		}
	}
	return w
}

// expect rates x for host at the hour ending T, from the baseline or the
// static prior.
func (s *Scorer) expect(h *host, T int64, x float64) (Expectation, int) {
	if s.opts.Baseline != nil {
		if e, ok := s.opts.Baseline.ExpectUpload(h.addr, T*1e6, x); ok {
			return e, e.Kind
		}
	}
	c := &s.cfg
	e := Expectation{Location: c.PriorLocation, Scale: c.PriorScale, Expected: math.Expm1(c.PriorLocation), Source: "static prior", Kind: KindStaticPrior}
	e.Z = (math.Log1p(max(x, 0)) - c.PriorLocation) / c.PriorScale
	e.TailProb = 1
	if x > float64(c.PriorFloor) {
		e.TailProb = 0.5 * math.Erfc(e.Z/math.Sqrt2)
	}
	return e, KindStaticPrior
}

func (s *Scorer) evaluate(h *host, w *window, T int64, hourEnd bool) {
	c := &s.cfg
	e, kind := s.expect(h, T, w.weighted)

	// Burst.
	if w.weighted >= float64(c.BurstBytes) && e.TailProb <= c.BurstTail {
		strength := -math.Log10(math.Max(e.TailProb, 1e-300))
		if s.admit(h, 0, T, strength) {
			sig := s.signal(h, SignalUpload, T, w, tailSeverity(e.TailProb), w.weighted, float64(c.BurstBytes))
			sig.Metrics = s.uploadMetrics(ModeBurst, w, &e, kind, h)
			sig.Metrics = append(sig.Metrics, features.Metric{Name: MetricStrength, Value: ramp(strength, 2, 10)})
			s.emit(sig)
		}
	}

	// Sustained: the CUSUM over complete clock hours.
	if hourEnd {
		z := 0.0
		if w.weighted > float64(c.SlowFloor) {
			z = math.Min(e.Z, c.ZCap)
		}
		h.cusum = math.Max(0, h.cusum+z-c.K)
		if h.cusum > 0 {
			h.cusumH++
			h.slowBytes += w.weighted
		} else {
			h.cusumH, h.slowBytes = 0, 0
		}
		if h.cusum >= c.H && h.slowBytes >= float64(c.SlowBytes) && s.admit(h, 0, T, h.cusum) {
			sev := features.Medium
			switch {
			case h.cusum >= 4*c.H:
				sev = features.Critical
			case h.cusum >= 2*c.H:
				sev = features.High
			}
			sig := s.signal(h, SignalUpload, T, w, sev, h.slowBytes, float64(c.SlowBytes))
			sig.WindowStart = (T - int64(h.cusumH)*3600) * 1e6
			sig.Metrics = s.uploadMetrics(ModeSustained, w, &e, kind, h)
			sig.Metrics = append(sig.Metrics, features.Metric{Name: MetricStrength, Value: ramp(h.cusum, c.H/2, 3*c.H)})
			s.emit(sig)
		}
	}

	// Staging against the host's own staging hours.
	if w.staged > 0 {
		loc, scale, sk := c.StagingPriorLocation, c.StagingPriorScale, KindStaticPrior
		if h.stN >= 3 {
			loc, scale, sk = h.stLoc, math.Max(1.2533*h.stDev, 0.5), KindOwnHistory // mean abs dev x sqrt(pi/2) = sd
		}
		y := math.Log1p(float64(w.staged))
		z := (y - loc) / scale
		if w.staged >= c.StagingFloor && z >= c.StagingZ && s.admit(h, 1, T, z) {
			sev := features.Medium
			switch {
			case z >= 6:
				sev = features.Critical
			case z >= 4.5:
				sev = features.High
			}
			sig := s.signal(h, SignalStaging, T, w, sev, float64(w.staged), float64(c.StagingFloor))
			sig.Dsts, sig.Dst = nil, netip.Addr{}
			p := 0.5 * math.Erfc(z/math.Sqrt2)
			sig.Metrics = []features.Metric{
				{Name: "total_bytes_staged", Value: float64(w.staged)},
				{Name: "observed", Value: float64(w.staged)},
				{Name: "expected", Value: math.Expm1(loc)},
				{Name: "location", Value: loc}, {Name: "scale", Value: scale},
				{Name: "z", Value: z}, {Name: "tail_prob", Value: p},
				{Name: "baseline_kind", Value: float64(sk)}, {Name: "baseline_hours", Value: float64(h.stN)},
				{Name: "window_seconds", Value: 3600},
				{Name: MetricStrength, Value: ramp(z, 2, 8)},
			}
			s.emit(sig)
		}
		if hourEnd {
			// Learn from the hour after judging it.
			if h.stN == 0 {
				h.stLoc, h.stDev = y, c.StagingPriorScale/1.2533
			} else {
				a := c.StagingAlpha
				h.stDev += a * (math.Abs(y-h.stLoc) - h.stDev)
				h.stLoc += a * (y - h.stLoc)
			}
			h.stN++
		}
	}

	// A drop spread over rare destinations.
	if len(w.spreadDsts) >= c.DropDestinations && s.admit(h, 2, T, float64(len(w.spreadDsts))) {
		sev := features.High
		if len(w.spreadDsts) >= 2*c.DropDestinations {
			sev = features.Critical
		}
		sig := s.signal(h, SignalSpread, T, w, sev, float64(len(w.spreadDsts)), float64(c.DropDestinations))
		sig.Dsts = slices.Clone(w.spreadDsts)
		sig.WindowStart = (T - int64(c.DropWindow/time.Second)) * 1e6
		sig.Metrics = []features.Metric{
			{Name: "unique_destinations", Value: float64(len(w.spreadDsts))},
			{Name: "total_bytes_sent", Value: float64(w.spreadBytes)},
			{Name: "window_seconds", Value: c.DropWindow.Seconds()},
			{Name: MetricStrength, Value: ramp(float64(len(w.spreadDsts)), 1, 2*float64(c.DropDestinations))},
		}
		s.emit(sig)
	}
}

// admit suppresses repeats: a signal of the same kind for the host within
// the hour is emitted again only when its strength grew by a quarter.
func (s *Scorer) admit(h *host, kind int, T int64, strength float64) bool {
	st := &h.emitted[kind]
	if st.at > 0 && T-st.at < 3600 && strength < 1.25*st.strength {
		return false
	}
	*st = emitState{at: T, strength: strength}
	return true
}

func tailSeverity(p float64) features.Severity {
	switch {
	case p <= 1e-12:
		return features.Critical
	case p <= 1e-8:
		return features.High
	case p <= 1e-4:
		return features.Medium
	}
	return features.Low
}

func (s *Scorer) signal(h *host, typ features.SignalType, T int64, w *window, sev features.Severity, v, th float64) features.Signal {
	sig := features.Signal{
		Type: typ, Src: h.addr, WindowStart: (T - 3600) * 1e6, WindowEnd: T * 1e6,
		Severity: sev, Value: v, Threshold: th,
	}
	if len(w.rare) > 0 {
		sig.Dst = w.rare[0]
		sig.Dsts = slices.Clone(w.rare[:min(len(w.rare), 16)])
	}
	return sig
}

func (s *Scorer) uploadMetrics(mode int, w *window, e *Expectation, kind int, h *host) []features.Metric {
	return []features.Metric{
		{Name: "mode", Value: float64(mode)},
		{Name: "bytes_uploaded", Value: float64(w.out)},
		{Name: "bytes_bulk", Value: float64(w.bulkBytes)},
		{Name: "observed", Value: w.weighted},
		{Name: "expected", Value: e.Expected},
		{Name: "location", Value: e.Location}, {Name: "scale", Value: e.Scale},
		{Name: "z", Value: e.Z}, {Name: "tail_prob", Value: e.TailProb},
		{Name: "baseline_kind", Value: float64(kind)}, {Name: "baseline_version", Value: float64(e.Version)},
		{Name: "cusum", Value: h.cusum}, {Name: "cusum_hours", Value: float64(h.cusumH)},
		{Name: "sustained_bytes", Value: h.slowBytes},
		{Name: "unique_destinations", Value: float64(len(w.rare))},
		{Name: "window_seconds", Value: 3600},
	}
}

func (s *Scorer) emit(sig features.Signal) {
	s.stats.Signals++
	s.sigs = append(s.sigs, sig)
}

// Stats returns the counters.
func (s *Scorer) Stats() Stats {
	st := s.stats
	st.Hosts = len(s.hosts)
	return st
}
