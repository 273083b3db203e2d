package baseline

import (
	"math"
	"net/netip"
	"time"
)

// Snapshot is one fitted, immutable set of models: every host's, the
// priors, and destination prevalence, with the time it was fitted and the
// data window it learnt from. Build it with a Builder or Decode it; it is
// safe for concurrent use, and its query methods neither lock nor
// allocate.
type Snapshot struct {
	version  uint64
	fittedAt time.Time
	from, to time.Time
	params   Params

	hosts   []hostModel
	index   map[netip.Addr]int32 // unmapped address -> hosts index
	pop     prior
	peers   []peerPrior
	peerIdx map[netip.Prefix]int32
	// internalHosts counts every internal host seen in the window, with
	// or without a model: the denominator of prevalence shares.
	internalHosts int
	dsts          map[[16]byte]dstEntry
}

// metricModel is one host's (or prior's) model of one metric. Offsets and
// rates are zero-valued until the host has the history for them.
type metricModel struct {
	loc, scale, act float32 // log1p location and scale of active hours; activity rate
	weight          float32 // the host's own share in loc and scale after shrinkage
	k               float32 // priors: the credibility constant hosts shrink with
	active          uint32  // active hours in the window
	hod             [24]float32
	dow             [7]float32
	actHod          [24]float32 // activity rate per hour of day (0: use act)
	actDow          [7]float32
}

// hostModel is one host's models and usage summaries.
type hostModel struct {
	host     netip.Addr
	hours    uint32 // hours of history
	seasonal uint8  // bit 0: hour of day, bit 1: weekday
	m        [NumMetrics]metricModel
	// fan-out: distinct internal destinations per hour over all history
	// hours (zeros included): median, 99th percentile, maximum.
	fanMed, fanP99, fanMax float32
	adminMask              uint16
	adminHours             uint32
	adminMed               float32 // median admin connections of the hours with any
}

type prior struct {
	hosts int // hosts the prior was taken from
	m     [NumMetrics]metricModel
}

type peerPrior struct {
	net netip.Prefix
	prior
}

type dstEntry struct {
	hosts uint32
	first int64 // Unix seconds
}

// Version identifies the snapshot; later fits have larger versions.
func (s *Snapshot) Version() uint64 { return s.version }

// FittedAt is when the fit ran (wall clock for `ndr retrain`, event time
// for a Learner).
func (s *Snapshot) FittedAt() time.Time { return s.fittedAt }

// DataFrom and DataTo bound the data window [DataFrom, DataTo) the models
// learnt from.
func (s *Snapshot) DataFrom() time.Time { return s.from }

// DataTo: see DataFrom.
func (s *Snapshot) DataTo() time.Time { return s.to }

// Params are the settings of the fit.
func (s *Snapshot) Params() Params { return s.params }

// Hosts counts the hosts with a model of their own.
func (s *Snapshot) Hosts() int { return len(s.hosts) }

// InternalHosts counts every internal host seen in the window, modelled
// or not: the denominator for a destination's prevalence share.
func (s *Snapshot) InternalHosts() int { return s.internalHosts }

// Destinations counts destination prevalence entries.
func (s *Snapshot) Destinations() int { return len(s.dsts) }

// Model is one host's models (or a prior standing in for them). It is a
// small value that points into its Snapshot; the zero Model scores every
// value as unremarkable.
type Model struct {
	s  *Snapshot
	h  *hostModel // nil for a prior
	pr *prior
}

// HostModel returns host's model. When the host has no model of its own
// (new, or too little history), ok is false and the Model is its prior:
// its peer group's (/24 or /64 with at least Params.MinPeers modelled
// hosts) or the population's.
func (s *Snapshot) HostModel(host netip.Addr) (m Model, ok bool) {
	if s == nil {
		return Model{}, false
	}
	host = host.Unmap()
	if i, found := s.index[host]; found {
		return Model{s: s, h: &s.hosts[i]}, true
	}
	return Model{s: s, pr: s.priorFor(host)}, false
}

// priorFor is the host's peer prior, or the population prior.
func (s *Snapshot) priorFor(host netip.Addr) *prior {
	if len(s.peerIdx) > 0 {
		if p, err := host.Prefix(peerBits(host)); err == nil {
			if i, ok := s.peerIdx[p]; ok {
				return &s.peers[i].prior
			}
		}
	}
	return &s.pop
}

// peerBits is the peer-group prefix length: /24 for IPv4, /64 for IPv6.
func peerBits(a netip.Addr) int {
	if a.Is4() {
		return 24
	}
	return 64
}

func (m Model) metric(k Metric) *metricModel {
	switch {
	case int(k) >= NumMetrics:
		return nil
	case m.h != nil:
		return &m.h.m[k]
	case m.pr != nil:
		return &m.pr.m[k]
	}
	return nil
}

// Host is the host the model belongs to (invalid for a prior).
func (m Model) Host() netip.Addr {
	if m.h == nil {
		return netip.Addr{}
	}
	return m.h.host
}

// HistoryHours is the hours of history the host's model learnt from (0
// for a prior).
func (m Model) HistoryHours() int {
	if m.h == nil {
		return 0
	}
	return int(m.h.hours)
}

// Seasonal reports whether hour-of-day and weekday offsets were fitted.
func (m Model) Seasonal() (hourOfDay, weekday bool) {
	if m.h == nil {
		return false, false
	}
	return m.h.seasonal&1 != 0, m.h.seasonal&2 != 0
}

// Weight is the host's own share w = n/(n+k) in the metric's shrunk
// location and scale, n its active hours (0 for a prior).
func (m Model) Weight(k Metric) float64 {
	if m.h == nil || int(k) >= NumMetrics {
		return 0
	}
	return float64(m.h.m[k].weight)
}

// Expected returns the metric's location and scale at hourOfWeek
// (HourOfWeek; taken mod 168) on the log1p scale, for an hour in which the
// host is active: expm1(location) is the typical active hour, and
// (log1p(x) - location)/scale is the modified z-score of x.
func (m Model) Expected(k Metric, hourOfWeek int) (location, scale float64) {
	mm := m.metric(k)
	if mm == nil {
		return 0, 0
	}
	h := int(floorMod(int64(hourOfWeek), HoursPerWeek))
	return float64(mm.loc + mm.hod[h%24] + mm.dow[h/24]), float64(mm.scale)
}

// Activity is the probability that the metric is non-zero in an hour at
// hourOfWeek.
func (m Model) Activity(k Metric, hourOfWeek int) float64 {
	mm := m.metric(k)
	if mm == nil {
		return 0
	}
	return mm.activity(int(floorMod(int64(hourOfWeek), HoursPerWeek)))
}

// activity combines the hour-of-day and weekday rates as independent
// factors of the overall rate: p_hw = p · (p_hod/p) · (p_dow/p), within
// [0, 1].
func (mm *metricModel) activity(h int) float64 {
	p := float64(mm.act)
	if p <= 0 {
		return 0
	}
	q := p
	if a := mm.actHod[h%24]; a > 0 {
		q *= float64(a) / p
	}
	if a := mm.actDow[h/24]; a > 0 {
		q *= float64(a) / p
	}
	return min(q, 1)
}

// Z is the modified z-score (Iglewicz and Hoaglin 1993: 0.6745(x -
// median)/MAD, with scale = 1.4826·MAD) of value on the log1p scale at
// hourOfWeek; an outlier is over 3.5. It ignores activity and the floor.
func (m Model) Z(k Metric, hourOfWeek int, value float64) float64 {
	loc, scale := m.Expected(k, hourOfWeek)
	if scale <= 0 {
		return 0
	}
	return (math.Log1p(max(value, 0)) - loc) / scale
}

// TailProb is the probability, under the model, of an hour at hourOfWeek
// with at least value: p_hw · Q(z), Q the standard normal upper tail of
// the modified z-score. Values at or below the metric's floor
// (Params.Floors) and values <= 0 score 1: never anomalous. Small is
// anomalous; TailProb is 0 only beyond the float64 range of Q.
func (m Model) TailProb(k Metric, hourOfWeek int, value float64) float64 {
	mm := m.metric(k)
	if mm == nil || !(value > 0) || value <= m.s.params.Floors[k] {
		return 1
	}
	h := int(floorMod(int64(hourOfWeek), HoursPerWeek))
	p := mm.activity(h)
	if mm.scale <= 0 {
		return p
	}
	z := (math.Log1p(value) - float64(mm.loc+mm.hod[h%24]+mm.dow[h/24])) / float64(mm.scale)
	// Q(z) = erfc(z/√2)/2; erfc keeps precision far into the tail where
	// 1 - Φ(z) rounds to 0, so extreme values still rank.
	return p * 0.5 * math.Erfc(z/math.Sqrt2)
}

// Band returns the metric's typical range at hourOfWeek for an active
// hour, in the metric's units: expm1(location ± z·scale).
func (m Model) Band(k Metric, hourOfWeek int, z float64) (lo, hi float64) {
	loc, scale := m.Expected(k, hourOfWeek)
	return max(math.Expm1(loc-z*scale), 0), math.Expm1(loc + z*scale)
}

// hourMoments are the metric's hourly mean and variance in its units at
// hour-of-week h under the hurdle model: activity p times a lognormal on
// the log1p scale (see the package doc).
func (mm *metricModel) hourMoments(h int) (mean, variance float64) {
	p := mm.activity(h)
	if p <= 0 {
		return 0, 0
	}
	mu := float64(mm.loc + mm.hod[h%24] + mm.dow[h/24])
	s2 := float64(mm.scale) * float64(mm.scale)
	e1 := math.Exp(mu + s2/2)   // E[1+X | active]
	e2 := math.Exp(2*mu + 2*s2) // E[(1+X)² | active]
	m1 := e1 - 1                // E[X | active]
	m2 := e2 - 2*e1 + 1         // E[X² | active]
	mean = p * m1
	variance = max(p*m2-mean*mean, 0)
	return mean, variance
}

// WindowStats returns the host's mean and standard deviation of metric
// over a window of length window ending at end, derived from the hourly
// model at the window's hour of week (see "Spike windows" in the package
// doc), with sd raised to honour the metric's spike floor. ok is false
// when the host has no model of its own or the window is not positive.
func (s *Snapshot) WindowStats(host netip.Addr, k Metric, end time.Time, window time.Duration) (mean, sd float64, ok bool) {
	return s.windowStats(host, k, end.UnixMicro(), window)
}

func (s *Snapshot) windowStats(host netip.Addr, k Metric, endMicros int64, window time.Duration) (mean, sd float64, ok bool) {
	if s == nil || window <= 0 || int(k) >= NumMetrics {
		return 0, 0, false
	}
	i, found := s.index[host.Unmap()]
	if !found {
		return 0, 0, false
	}
	mm := &s.hosts[i].m[k]
	w := window.Microseconds()
	mid := endMicros - w/2
	h := hourOfWeek(floorDiv(mid, int64(time.Hour/time.Microsecond)))
	em, ev := mm.hourMoments(h)
	f := float64(w) / float64(time.Hour/time.Microsecond)
	mean = f * em
	sd = math.Sqrt(f * ev)
	if fl := s.params.SpikeFloors[k]; fl > mean {
		sd = max(sd, (fl-mean)/s.params.FloorZ)
	}
	if !(sd > 0) || math.IsNaN(mean) || math.IsInf(mean, 0) || math.IsInf(sd, 0) {
		return 0, 0, false
	}
	return mean, sd, true
}

// Prevalence returns how many internal hosts contacted the external
// destination dst in the data window and when it was first seen (over all
// stored history, which may predate the window). ok is false for a
// destination not in the snapshot: never seen, or dropped at
// Params.MaxDestinations (the least prevalent go first).
func (s *Snapshot) Prevalence(dst netip.Addr) (internalHosts int, firstSeen time.Time, ok bool) {
	if s == nil {
		return 0, time.Time{}, false
	}
	e, found := s.dsts[dst.Unmap().As16()]
	if !found {
		return 0, time.Time{}, false
	}
	return int(e.hosts), time.Unix(e.first, 0).UTC(), true
}

// FanOut is a host's usual number of distinct internal destinations per
// hour over its history hours (idle hours count as 0).
type FanOut struct {
	Median, P99, Max float64
}

// FanOut returns host's usual fan-out; ok is false without a model.
func (s *Snapshot) FanOut(host netip.Addr) (FanOut, bool) {
	if s == nil {
		return FanOut{}, false
	}
	i, found := s.index[host.Unmap()]
	if !found {
		return FanOut{}, false
	}
	h := &s.hosts[i]
	return FanOut{Median: float64(h.fanMed), P99: float64(h.fanP99), Max: float64(h.fanMax)}, true
}

// AdminUse is a host's use of AdminPorts on internal hosts over its
// history.
type AdminUse struct {
	// Mask has bit i set when the host used AdminPorts()[i].
	Mask uint16
	// Hours with at least one admin-port connection.
	Hours int
	// HistoryHours is the host's history, for Hours/HistoryHours.
	HistoryHours int
	// MedianConnections: median admin-port connections in those hours.
	MedianConnections float64
}

// Uses reports whether the host used port (an admin port) in its history.
func (a AdminUse) Uses(port uint16) bool { return a.Mask&adminBit(port) != 0 }

// Ports lists the admin ports the host used, ascending. It allocates.
func (a AdminUse) Ports() []uint16 {
	var out []uint16
	for i, p := range AdminPorts() {
		if a.Mask&(1<<uint(i)) != 0 {
			out = append(out, p)
		}
	}
	return out
}

// AdminPorts returns host's admin-port use; ok is false without a model.
func (s *Snapshot) AdminPorts(host netip.Addr) (AdminUse, bool) {
	if s == nil {
		return AdminUse{}, false
	}
	i, found := s.index[host.Unmap()]
	if !found {
		return AdminUse{}, false
	}
	h := &s.hosts[i]
	return AdminUse{Mask: h.adminMask, Hours: int(h.adminHours), HistoryHours: int(h.hours),
		MedianConnections: float64(h.adminMed)}, true
}

// HostBand is one row of a host's expected band, for ndr.baseline_hosts.
type HostBand struct {
	Host              netip.Addr
	Metric            Metric
	HistoryHours      int
	ActiveHours       int
	Weight            float64
	Location, Scale   float64   // log1p scale, before seasonal offsets
	Activity          float64   // overall activity rate
	HourOfDay         []float64 // 24 location offsets (zeros when not seasonal)
	Weekday           []float64 // 7 location offsets, Monday first
	ActivityHourOfDay []float64 // 24 activity rates (0: the overall rate)
	ActivityWeekday   []float64 // 7
}

// Bands calls fn for every host and metric, in host order, for tables
// analysts query. The slices are reused between calls.
func (s *Snapshot) Bands(fn func(*HostBand) error) error {
	b := HostBand{HourOfDay: make([]float64, 24), Weekday: make([]float64, 7),
		ActivityHourOfDay: make([]float64, 24), ActivityWeekday: make([]float64, 7)}
	for i := range s.hosts {
		h := &s.hosts[i]
		for k := range Metric(NumMetrics) {
			mm := &h.m[k]
			b.Host, b.Metric, b.HistoryHours, b.ActiveHours, b.Weight = h.host, k, int(h.hours), int(mm.active), float64(mm.weight)
			b.Location, b.Scale, b.Activity = float64(mm.loc), float64(mm.scale), float64(mm.act)
			for j := range 24 {
				b.HourOfDay[j], b.ActivityHourOfDay[j] = float64(mm.hod[j]), float64(mm.actHod[j])
			}
			for j := range 7 {
				b.Weekday[j], b.ActivityWeekday[j] = float64(mm.dow[j]), float64(mm.actDow[j])
			}
			if err := fn(&b); err != nil {
				return err
			}
		}
	}
	return nil
}
