package baseline

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

// LearnerConfig configures a Learner.
type LearnerConfig struct {
	Params Params
	// LocalNetworks decide which addresses are internal when the sensor
	// did not say (Zeek local_orig/local_resp win), as in features.
	LocalNetworks []netip.Prefix
	// Window is the history each fit uses, and kept.
	Window time.Duration
	// RefitEvery: event time between fits.
	RefitEvery time.Duration
	// MinHistory: event time seen before the first fit.
	MinHistory time.Duration
	// MaxHosts caps tracked internal hosts; connections of further hosts
	// are counted in Stats and ignored.
	MaxHosts int
	// MaxDestinations caps tracked external destinations (prevalence).
	MaxDestinations int
	// MaxSetElements caps each distinct-destination set of one host-hour
	// and each destination's set of internal hosts: counts saturate there.
	MaxSetElements int
}

// DefaultLearnerConfig: 30 days of history, a refit every 6 hours of
// event time once a day has been seen.
func DefaultLearnerConfig() LearnerConfig {
	return LearnerConfig{
		Params: DefaultParams(),
		LocalNetworks: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
			netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fc00::/7"),
		},
		Window:          30 * 24 * time.Hour,
		RefitEvery:      6 * time.Hour,
		MinHistory:      24 * time.Hour,
		MaxHosts:        100_000,
		MaxDestinations: 500_000,
		MaxSetElements:  4096,
	}
}

// Validate reports every problem at once.
func (c LearnerConfig) Validate() error {
	var errs []error
	if err := c.Params.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, p := range c.LocalNetworks {
		if !p.IsValid() {
			errs = append(errs, errors.New("baseline learner: invalid local network"))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"window", c.Window}, {"refit_every", c.RefitEvery}, {"min_history", c.MinHistory}} {
		if d.v < time.Hour || d.v%time.Hour != 0 {
			errs = append(errs, fmt.Errorf("baseline learner: %s %s: want whole hours, >= 1h", d.name, d.v))
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"max_hosts", c.MaxHosts}, {"max_destinations", c.MaxDestinations}, {"max_set_elements", c.MaxSetElements}} {
		if n.v < 1 {
			errs = append(errs, fmt.Errorf("baseline learner: %s %d: want >= 1", n.name, n.v))
		}
	}
	return errors.Join(errs...)
}

// LearnerStats count what a Learner saw and did.
type LearnerStats struct {
	Conns, External, HostsRefused, DestinationsRefused uint64
	Hosts, Destinations                                int
	Fits                                               uint64
}

// Learner fits baselines in event time from the connections the pipeline
// analyses (`ndr replay`): it accumulates the same host-hour aggregates
// ClickHouse's materialized views keep (compactly: counters per host-hour,
// distinct sets only for a host's newest hour) and, every RefitEvery of
// event time once MinHistory has been seen, fits a Snapshot over the
// complete hours so far and installs it in the Registry. Fits run in
// Observe, so a replayed week learns from its first days the same way on
// every run. A Learner belongs to one goroutine.
type Learner struct {
	cfg     LearnerConfig
	reg     *Registry
	log     *slog.Logger
	local   ingest.LocalNetworks
	hosts   map[netip.Addr]*hostAcc
	dsts    map[netip.Addr]*dstAcc
	first   int64 // first Unix hour seen; newest
	newest  int64
	lastFit int64 // data end (Unix hour) of the last fit
	version uint64
	scratch HostHours
	stats   LearnerStats
}

// hourRec is one host-hour's aggregates.
type hourRec struct {
	hour          int64
	conns, bytes  float64
	ext, internal uint32
	admin         uint32
	mask          uint16
}

type hostAcc struct {
	hours []hourRec
	// distinct destinations of the newest hour only; an older hour's
	// late connections update its counters but not its distinct counts.
	// ext maps each to its dstAcc (nil: refused at MaxDestinations), so
	// a repeat within the hour, most external connections, costs one
	// lookup: the host is already in the destination's set, or that set
	// is full, and either stays so.
	ext      map[netip.Addr]*dstAcc
	internal map[netip.Addr]struct{}
}

type dstAcc struct {
	first int64 // µs
	hosts map[netip.Addr]struct{}
}

// NewLearner returns a Learner that installs its fits in reg.
func NewLearner(cfg LearnerConfig, reg *Registry, log *slog.Logger) (*Learner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Learner{
		cfg: cfg, reg: reg, log: log.With("component", "baseline_learner"),
		hosts: map[netip.Addr]*hostAcc{}, dsts: map[netip.Addr]*dstAcc{},
		first: -1, newest: -1, lastFit: -1, version: reg.Version(),
	}
	l.cfg.LocalNetworks = slices.Clone(cfg.LocalNetworks)
	l.local = ingest.NewLocalNetworks(cfg.LocalNetworks)
	return l, nil
}

// internal decides like features: the sensor's word, else the networks.
func (l *Learner) internal(a netip.Addr, local ingest.Tristate) bool {
	return l.local.Internal(a, local)
}

const microsPerHour = int64(time.Hour / time.Microsecond)

// Observe accumulates conns and refits whenever event time enters a new
// hour RefitEvery after the last fit (and MinHistory after the first
// connection), over the hours before it.
func (l *Learner) Observe(conns []ingest.Conn) {
	for i := range conns {
		l.add(&conns[i])
	}
}

// MayFit reports whether Observe(conns) could fit and install a snapshot:
// whether a connection in conns starts an hour after the newest one seen.
// False means Observe will leave the registry as it is, which lets a
// caller run Observe beside readers of the registry without changing what
// they read. It errs towards true (it ignores which connections Observe
// would skip).
func (l *Learner) MayFit(conns []ingest.Conn) bool {
	for i := range conns {
		if floorDiv(conns[i].TS, microsPerHour) > l.newest {
			return true
		}
	}
	return false
}

func (l *Learner) add(c *ingest.Conn) {
	l.stats.Conns++
	if !c.OrigH.IsValid() || !c.RespH.IsValid() || !l.internal(c.OrigH, c.LocalOrig) {
		l.stats.External++
		return
	}
	hour := floorDiv(c.TS, microsPerHour)
	if l.first < 0 {
		l.first = hour
	}
	if hour > l.newest {
		// A new hour: the ones before it are complete. Fitting here, not
		// per batch, makes the fits the same however input is batched.
		l.newest = hour
		l.maybeFit()
	}
	src := c.OrigH.Unmap()
	h := l.hosts[src]
	if h == nil {
		if len(l.hosts) >= l.cfg.MaxHosts {
			l.stats.HostsRefused++
			return
		}
		h = &hostAcc{}
		l.hosts[src] = h
	}
	var r *hourRec
	newest := false
	switch n := len(h.hours); {
	case n > 0 && h.hours[n-1].hour == hour:
		r, newest = &h.hours[n-1], true
	case n == 0 || h.hours[n-1].hour < hour:
		h.hours = append(h.hours, hourRec{hour: hour})
		r, newest = &h.hours[n], true
		clear(h.ext)
		clear(h.internal)
	default:
		j, found := slices.BinarySearchFunc(h.hours, hour, func(x hourRec, t int64) int {
			return int(x.hour - t)
		})
		if !found {
			h.hours = slices.Insert(h.hours, j, hourRec{hour: hour})
		}
		r = &h.hours[j]
	}
	r.conns++
	dst := c.RespH.Unmap()
	if l.internal(c.RespH, c.LocalResp) {
		if newest && l.addSet(&h.internal, dst) {
			r.internal++
		}
		if bit := adminBit(c.RespP); bit != 0 {
			r.admin++
			r.mask |= bit
		}
		return
	}
	r.bytes += float64(c.OrigBytes)
	if newest {
		if h.ext == nil {
			h.ext = make(map[netip.Addr]*dstAcc)
		}
		if d, ok := h.ext[dst]; ok {
			if d == nil {
				l.stats.DestinationsRefused++
				return
			}
			d.first = min(d.first, c.TS)
			return
		}
	}
	d := l.dsts[dst]
	if d == nil && len(l.dsts) >= l.cfg.MaxDestinations {
		l.stats.DestinationsRefused++
	} else {
		if d == nil {
			d = &dstAcc{first: c.TS}
			l.dsts[dst] = d
		}
		d.first = min(d.first, c.TS)
		l.addSet(&d.hosts, src)
	}
	if newest && len(h.ext) < l.cfg.MaxSetElements {
		h.ext[dst] = d
		r.ext++
	}
}

// addSet adds a to the capped set and reports whether it was new.
func (l *Learner) addSet(set *map[netip.Addr]struct{}, a netip.Addr) bool {
	if *set == nil {
		*set = make(map[netip.Addr]struct{})
	}
	if _, ok := (*set)[a]; ok || len(*set) >= l.cfg.MaxSetElements {
		return false
	}
	(*set)[a] = struct{}{}
	return true
}

// maybeFit fits over the complete hours [newest - Window, newest) when due.
func (l *Learner) maybeFit() {
	if l.newest < 0 {
		return
	}
	to := l.newest // the newest hour is still filling
	every := int64(l.cfg.RefitEvery / time.Hour)
	if to-l.first < int64(l.cfg.MinHistory/time.Hour) || (l.lastFit >= 0 && to-l.lastFit < every) {
		return
	}
	if err := l.Fit(time.Unix(to*3600, 0)); err != nil {
		l.log.Warn("event-time baseline fit", "err", err)
	}
}

// Fit fits now over the complete hours before end (at most Window of
// them), installs the snapshot in the registry and forgets older hours.
func (l *Learner) Fit(end time.Time) error {
	to := floorDiv(end.Unix(), 3600)
	from := max(to-int64(l.cfg.Window/time.Hour), l.first)
	if to <= from {
		return ErrBadWindow
	}
	b, err := NewBuilder(l.cfg.Params, time.Unix(from*3600, 0), time.Unix(to*3600, 0))
	if err != nil {
		return err
	}
	for _, d := range l.sortedDsts() {
		a := l.dsts[d]
		b.AddDestination(Destination{Addr: d, InternalHosts: len(a.hosts), FirstSeen: time.UnixMicro(a.first)})
	}
	hh := &l.scratch
	for addr, h := range l.hosts {
		// Forget hours before the window.
		k := 0
		for k < len(h.hours) && h.hours[k].hour < from {
			k++
		}
		if k > 0 {
			h.hours = slices.Delete(h.hours, 0, k)
		}
		if len(h.hours) == 0 {
			delete(l.hosts, addr)
			continue
		}
		hh.Reset()
		hh.Host = addr
		for _, r := range h.hours {
			if r.hour >= to {
				break
			}
			hh.Hours = append(hh.Hours, r.hour)
			hh.Values[Connections] = append(hh.Values[Connections], r.conns)
			hh.Values[BytesOutExternal] = append(hh.Values[BytesOutExternal], r.bytes)
			hh.Values[ExternalDestinations] = append(hh.Values[ExternalDestinations], float64(r.ext))
			hh.Values[InternalDestinations] = append(hh.Values[InternalDestinations], float64(r.internal))
			hh.Values[AdminConnections] = append(hh.Values[AdminConnections], float64(r.admin))
			hh.AdminMask = append(hh.AdminMask, r.mask)
		}
		if err := b.AddHost(hh); err != nil {
			return err
		}
	}
	l.version++
	s, err := b.Build(l.version, time.Unix(to*3600, 0))
	if err != nil {
		return err
	}
	l.reg.Store(s)
	l.lastFit = to
	l.stats.Fits++
	l.log.Debug("event-time baseline fitted", "version", s.Version(), "hosts", s.Hosts(),
		"data_from", s.DataFrom(), "data_to", s.DataTo())
	return nil
}

// sortedDsts lists destinations in address order, so fits are
// deterministic whatever the map order.
func (l *Learner) sortedDsts() []netip.Addr {
	out := make([]netip.Addr, 0, len(l.dsts))
	for a := range l.dsts {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Stats returns the counters so far.
func (l *Learner) Stats() LearnerStats {
	s := l.stats
	s.Hosts, s.Destinations = len(l.hosts), len(l.dsts)
	return s
}
