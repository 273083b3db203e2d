package baseline

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"gonum.org/v1/gonum/stat"
)

// HostHours is one internal host's hourly aggregates in a data window:
// the hours in which it originated at least one connection. Hours without
// a row are idle (zero in every metric).
type HostHours struct {
	Host netip.Addr
	// Hours are Unix hours (Unix seconds / 3600), strictly increasing.
	Hours []int64
	// Values[m][i] is metric m in Hours[i]; each column has len(Hours)
	// entries.
	Values [NumMetrics][]float64
	// AdminMask[i] has bit j set when the host used AdminPorts()[j] in
	// Hours[i]; nil means none.
	AdminMask []uint16
}

// Reset empties h for reuse, keeping its capacity.
func (h *HostHours) Reset() {
	h.Host = netip.Addr{}
	h.Hours = h.Hours[:0]
	for m := range h.Values {
		h.Values[m] = h.Values[m][:0]
	}
	h.AdminMask = h.AdminMask[:0]
}

// Destination is one external destination's prevalence.
type Destination struct {
	Addr netip.Addr
	// InternalHosts: distinct internal hosts that contacted it in the
	// data window.
	InternalHosts int
	// FirstSeen: its first connection in all stored history.
	FirstSeen time.Time
}

// Builder fits one Snapshot: AddHost and AddDestination feed it (from any
// number of goroutines), Build computes the priors and shrinks every host
// towards its prior. A Builder builds once.
type Builder struct {
	p          Params
	from, to   time.Time
	fromH, toH int64 // Unix hours, [fromH, toH)

	scratch sync.Pool // *fitScratch

	mu    sync.Mutex
	hosts []hostModel
	seen  int
	dsts  []Destination
	built bool
}

// NewBuilder returns a Builder for the data window [from, to): hours that
// start in it count.
func NewBuilder(p Params, from, to time.Time) (*Builder, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	fromH := floorDiv(from.Unix(), 3600)
	toH := -floorDiv(-to.Unix(), 3600)
	if toH <= fromH {
		return nil, fmt.Errorf("%w: [%s, %s)", ErrBadWindow, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	b := &Builder{p: p, from: from.UTC(), to: to.UTC(), fromH: fromH, toH: toH}
	b.scratch.New = func() any { return new(fitScratch) }
	return b, nil
}

// fitScratch is one fit's reusable buffers.
type fitScratch struct {
	y, sorted, r []float64
	how          []int
	bucket       []float64
	dense        []float64
}

// AddHost fits h's own model (before shrinkage) and keeps it. Hours
// outside the window are ignored; a host with fewer than Params.MinHours
// of history is counted (InternalHosts) but gets no model. h is not
// retained. Safe for concurrent use.
func (b *Builder) AddHost(h *HostHours) error {
	n := len(h.Hours)
	for m := range h.Values {
		if len(h.Values[m]) != n {
			return fmt.Errorf("%w: host %s: %d hours, %d values of %s", ErrUnsorted, h.Host, n, len(h.Values[m]), Metric(m))
		}
	}
	if len(h.AdminMask) != 0 && len(h.AdminMask) != n {
		return fmt.Errorf("%w: host %s: %d hours, %d admin masks", ErrUnsorted, h.Host, n, len(h.AdminMask))
	}
	lo, hi := 0, n
	for lo < n && h.Hours[lo] < b.fromH {
		lo++
	}
	for hi > lo && h.Hours[hi-1] >= b.toH {
		hi--
	}
	for i := lo + 1; i < hi; i++ {
		if h.Hours[i] <= h.Hours[i-1] {
			return fmt.Errorf("%w: host %s at %d", ErrUnsorted, h.Host, h.Hours[i])
		}
	}
	if lo == hi {
		return nil
	}
	hist := b.toH - h.Hours[lo]
	if hist < int64(b.p.MinHours) {
		b.mu.Lock()
		b.seen++
		b.mu.Unlock()
		return nil
	}
	sc := b.scratch.Get().(*fitScratch)
	defer b.scratch.Put(sc)
	hm := hostModel{host: h.Host.Unmap(), hours: uint32(hist)}
	hours := h.Hours[lo:hi]
	var seasonal uint8
	for m := range Metric(NumMetrics) {
		s := b.fitMetric(sc, &hm.m[m], hours, h.Values[m][lo:hi], hours[0])
		seasonal |= s
	}
	hm.seasonal = seasonal
	b.fitUsage(sc, &hm, h, lo, hi)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.built {
		return ErrBuilt
	}
	b.seen++
	b.hosts = append(b.hosts, hm)
	return nil
}

// AddDestination records one destination's prevalence. Safe for
// concurrent use.
func (b *Builder) AddDestination(d Destination) {
	b.mu.Lock()
	b.dsts = append(b.dsts, d)
	b.mu.Unlock()
}

// mad is the normal-consistent median absolute deviation's factor:
// 1.4826·MAD estimates sd for normal data (1/Φ⁻¹(3/4)); Iglewicz and
// Hoaglin's 0.6745 is its inverse.
const mad = 1.4826

// median of sorted x with gonum (the empirical quantile: the lower middle
// value for an even count).
func median(sorted []float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return stat.Quantile(0.5, stat.Empirical, sorted, nil)
}

// sortedMedian sorts x in place and returns its median.
func sortedMedian(x []float64) float64 {
	slices.Sort(x)
	return median(x)
}

// fitMetric fits one metric's hurdle model from the host's active hours
// (values > 0) over hist = toH - first hours of history, and reports the
// seasonal parts it fitted (bit 0 hour of day, bit 1 weekday).
//
//  1. y = log1p(x) of the active hours; location = median(y).
//  2. With HourOfDayAfter of history: offset_hod = median of y - location
//     in that hour of day, times c/(c+CellPrior) (c: its observations).
//     With WeekdayAfter: offset_dow likewise on y - location - offset_hod.
//     (One sweep of Tukey's median polish; Sentinel's hourly-bytes
//     anomaly model decomposes seasonality the same way.)
//  3. e = y - location - offsets; location += median(e); scale =
//     max(1.4826·median|e - median(e)|, MinScale).
//  4. Activity: p = active/hist; per hour of day (weekday) p_c = (a_c +
//     CellPrior·p)/(n_c + CellPrior), a Beta-prior shrinkage to p.
func (b *Builder) fitMetric(sc *fitScratch, mm *metricModel, hours []int64, vals []float64, first int64) uint8 {
	hist := b.toH - first
	sc.y, sc.how = sc.y[:0], sc.how[:0]
	for i, v := range vals {
		if v > 0 && !math.IsInf(v, 0) {
			sc.y = append(sc.y, math.Log1p(v))
			sc.how = append(sc.how, hourOfWeek(hours[i]))
		}
	}
	nA := len(sc.y)
	mm.active = uint32(nA)
	mm.act = float32(float64(nA) / float64(hist))
	if nA == 0 {
		return 0
	}
	sc.sorted = append(sc.sorted[:0], sc.y...)
	loc := sortedMedian(sc.sorted)
	sc.r = sc.r[:0]
	for _, y := range sc.y {
		sc.r = append(sc.r, y-loc)
	}
	var seasonal uint8
	p := float64(nA) / float64(hist)
	if hist >= int64(b.p.HourOfDayAfter/time.Hour) {
		seasonal |= 1
		var off [24]float32
		var active, total [24]int
		b.cellOffsets(sc, func(how int) int { return how % 24 }, off[:], active[:])
		countHours(first, b.toH, func(how int) int { return how % 24 }, total[:])
		for i := range 24 {
			mm.hod[i] = off[i]
			mm.actHod[i] = float32((float64(active[i]) + b.p.CellPrior*p) / (float64(total[i]) + b.p.CellPrior))
		}
		for i, how := range sc.how {
			sc.r[i] -= float64(mm.hod[how%24])
		}
	}
	if hist >= int64(b.p.WeekdayAfter/time.Hour) {
		seasonal |= 2
		var off [7]float32
		var active, total [7]int
		b.cellOffsets(sc, func(how int) int { return how / 24 }, off[:], active[:])
		countHours(first, b.toH, func(how int) int { return how / 24 }, total[:])
		for i := range 7 {
			mm.dow[i] = off[i]
			mm.actDow[i] = float32((float64(active[i]) + b.p.CellPrior*p) / (float64(total[i]) + b.p.CellPrior))
		}
		for i, how := range sc.how {
			sc.r[i] -= float64(mm.dow[how/24])
		}
	}
	sc.sorted = append(sc.sorted[:0], sc.r...)
	shift := sortedMedian(sc.sorted)
	for i := range sc.sorted {
		sc.sorted[i] = math.Abs(sc.sorted[i] - shift)
	}
	scale := mad * sortedMedian(sc.sorted)
	mm.loc = float32(loc + shift)
	mm.scale = float32(max(scale, b.p.MinScale))
	return seasonal
}

// cellOffsets sets off[c] to the shrunk median residual of each cell
// (cell(how)) and active[c] to its count. It groups residuals by a
// counting sort into sc.bucket.
func (b *Builder) cellOffsets(sc *fitScratch, cell func(int) int, off []float32, active []int) {
	for _, how := range sc.how {
		active[cell(how)]++
	}
	start := make([]int, len(off)+1) // small: 25 ints at most
	for c := range off {
		start[c+1] = start[c] + active[c]
	}
	pos := slices.Clone(start[:len(off)])
	sc.bucket = slices.Grow(sc.bucket[:0], len(sc.r))[:len(sc.r)]
	for i, how := range sc.how {
		c := cell(how)
		sc.bucket[pos[c]] = sc.r[i]
		pos[c]++
	}
	for c := range off {
		n := active[c]
		if n == 0 {
			continue
		}
		med := sortedMedian(sc.bucket[start[c]:start[c+1]])
		off[c] = float32(med * float64(n) / (float64(n) + b.p.CellPrior))
	}
}

// countHours counts the hours of [first, to) in each cell.
func countHours(first, to int64, cell func(int) int, total []int) {
	// Whole weeks contribute equally; walk only the remainder.
	n := to - first
	weeks := n / HoursPerWeek
	if weeks > 0 {
		for how := range HoursPerWeek {
			total[cell(how)] += int(weeks)
		}
	}
	for t := first + weeks*HoursPerWeek; t < to; t++ {
		total[cell(hourOfWeek(t))]++
	}
}

// fitUsage fills the fan-out quantiles and admin-port use of hm from
// hours [lo, hi) of h.
func (b *Builder) fitUsage(sc *fitScratch, hm *hostModel, h *HostHours, lo, hi int) {
	hist := int(hm.hours)
	sc.dense = slices.Grow(sc.dense[:0], hist)[:hist]
	clear(sc.dense)
	// Zeros first, then the active hours' values: sorted once below.
	k := hist - (hi - lo)
	copy(sc.dense[k:], h.Values[InternalDestinations][lo:hi])
	slices.Sort(sc.dense)
	hm.fanMed = float32(median(sc.dense))
	hm.fanP99 = float32(stat.Quantile(0.99, stat.Empirical, sc.dense, nil))
	hm.fanMax = float32(sc.dense[len(sc.dense)-1])

	sc.sorted = sc.sorted[:0]
	for i := lo; i < hi; i++ {
		if len(h.AdminMask) > 0 {
			hm.adminMask |= h.AdminMask[i]
		}
		if v := h.Values[AdminConnections][i]; v > 0 {
			sc.sorted = append(sc.sorted, v)
		}
	}
	hm.adminHours = uint32(len(sc.sorted))
	hm.adminMed = float32(sortedMedian(sc.sorted))
}

// Build computes the population and peer priors, shrinks every host
// towards its prior (w = n/(n+ShrinkHours)), keeps the Params.MaxDestinations
// most prevalent destinations and returns the snapshot.
func (b *Builder) Build(version uint64, fittedAt time.Time) (*Snapshot, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.built {
		return nil, ErrBuilt
	}
	b.built = true
	s := &Snapshot{
		version: version, fittedAt: fittedAt.UTC(), from: b.from, to: b.to, params: b.p,
		hosts: b.hosts, internalHosts: b.seen,
	}
	b.hosts = nil
	slices.SortFunc(s.hosts, func(x, y hostModel) int { return x.host.Compare(y.host) })
	s.index = make(map[netip.Addr]int32, len(s.hosts))
	for i := range s.hosts {
		s.index[s.hosts[i].host] = int32(i)
	}

	// Priors from the hosts' own fits.
	var vals []float64
	s.pop = takePrior(s.hosts, nil, &vals, b.p)
	groups := map[netip.Prefix][]int32{}
	for i := range s.hosts {
		a := s.hosts[i].host
		p, _ := a.Prefix(peerBits(a))
		groups[p] = append(groups[p], int32(i))
	}
	for net, members := range groups {
		if len(members) < b.p.MinPeers {
			continue
		}
		s.peers = append(s.peers, peerPrior{net: net, prior: takePrior(s.hosts, members, &vals, b.p)})
	}
	slices.SortFunc(s.peers, func(x, y peerPrior) int {
		return cmp.Or(x.net.Addr().Compare(y.net.Addr()), cmp.Compare(x.net.Bits(), y.net.Bits()))
	})
	s.peerIdx = make(map[netip.Prefix]int32, len(s.peers))
	for i := range s.peers {
		s.peerIdx[s.peers[i].net] = int32(i)
	}

	// Shrinkage.
	for i := range s.hosts {
		h := &s.hosts[i]
		pr := s.priorFor(h.host)
		for m := range Metric(NumMetrics) {
			shrink(&h.m[m], &pr.m[m], float64(h.hours), b.p)
		}
	}

	// Destinations: merge repeats, then the most prevalent, then the
	// most recently first-seen, survive the cap.
	merged := make(map[[16]byte]dstEntry, len(b.dsts))
	for _, d := range b.dsts {
		k := d.Addr.Unmap().As16()
		e := dstEntry{hosts: uint32(min(max(d.InternalHosts, 0), math.MaxUint32)), first: d.FirstSeen.Unix()}
		if old, ok := merged[k]; ok {
			e.hosts = max(e.hosts, old.hosts)
			e.first = min(e.first, old.first)
		}
		merged[k] = e
	}
	b.dsts = nil
	if len(merged) > b.p.MaxDestinations {
		type kv struct {
			k [16]byte
			e dstEntry
		}
		all := make([]kv, 0, len(merged))
		for k, e := range merged {
			all = append(all, kv{k, e})
		}
		slices.SortFunc(all, func(x, y kv) int {
			return cmp.Or(cmp.Compare(y.e.hosts, x.e.hosts), cmp.Compare(y.e.first, x.e.first), bytes.Compare(x.k[:], y.k[:]))
		})
		for _, x := range all[b.p.MaxDestinations:] {
			delete(merged, x.k)
		}
	}
	s.dsts = merged
	return s, nil
}

// shrink moves a host's metric model towards the prior's: location and
// scale with weight n/(n+k), n the host's active hours and k the prior's
// credibility constant (see takePrior), activity with
// hours/(hours+ActivityPriorHours).
func shrink(mm, pr *metricModel, hours float64, p Params) {
	wa := hours / (hours + p.ActivityPriorHours)
	mm.act = float32(wa*float64(mm.act) + (1-wa)*float64(pr.act))
	if mm.active == 0 {
		// Never active: the prior's size is the best guess should it be.
		mm.loc, mm.scale = pr.loc, pr.scale
		return
	}
	n := float64(mm.active)
	w := n / (n + float64(pr.k))
	mm.weight = float32(w)
	if pr.active == 0 {
		return // no host of the prior was ever active: keep the host's own
	}
	mm.loc = float32(w*float64(mm.loc) + (1-w)*float64(pr.loc))
	mm.scale = float32(max(w*float64(mm.scale)+(1-w)*float64(pr.scale), p.MinScale))
}

// takePrior is, per metric, the weighted median over hosts (all when
// members is nil) of location and scale, weighted by active hours (hosts
// never active do not count), and of activity, weighted by history hours:
// a host seen for one hour sways the prior as little as it should.
//
// Its credibility constant is Bühlmann's k = EPV/VHM: the expected
// process variance (the median host's scale², the spread of one host's
// hours) over the variance of hypothetical means (the variance of the
// hosts' locations, weighted by active hours so that a newcomer's own
// location barely widens it). A host with n active hours keeps n/(n+k) of its own
// location: where hosts differ much more than hours do, a few hours
// suffice; where hosts are alike, a newcomer leans on its peers. k is at
// most Params.ShrinkHours, which also stands in when the hosts' locations
// do not vary (one host, or identical ones). prior.m[k].active counts the
// hosts the location came from.
func takePrior(hosts []hostModel, members []int32, vals *[]float64, p Params) prior {
	n := len(hosts)
	if members != nil {
		n = len(members)
	}
	at := func(i int) *hostModel {
		if members != nil {
			return &hosts[members[i]]
		}
		return &hosts[i]
	}
	pr := prior{hosts: n}
	buf := (*vals)[:0]
	var locs, ws []float64
	for k := range Metric(NumMetrics) {
		mm := &pr.m[k]
		var act, loc, scale []wv
		locs, ws = locs[:0], ws[:0]
		for i := range n {
			h := at(i)
			hm := &h.m[k]
			act = append(act, wv{float64(hm.act), float64(h.hours)})
			if hm.active > 0 {
				loc = append(loc, wv{float64(hm.loc), float64(hm.active)})
				scale = append(scale, wv{float64(hm.scale), float64(hm.active)})
				locs = append(locs, float64(hm.loc))
				ws = append(ws, float64(hm.active))
			}
		}
		mm.act = float32(weightedMedian(act, &buf))
		mm.loc = float32(weightedMedian(loc, &buf))
		mm.scale = float32(weightedMedian(scale, &buf))
		mm.active = uint32(len(loc))
		mm.k = float32(p.ShrinkHours)
		if len(locs) > 1 {
			if vhm := stat.Variance(locs, ws); vhm > 0 {
				epv := float64(mm.scale) * float64(mm.scale)
				mm.k = float32(min(epv/vhm, p.ShrinkHours))
			}
		}
	}
	*vals = buf
	return pr
}

// wv is a value and its weight.
type wv struct{ v, w float64 }

// weightedMedian sorts x by value and returns gonum's weighted empirical
// median (0 for none).
func weightedMedian(x []wv, buf *[]float64) float64 {
	if len(x) == 0 {
		return 0
	}
	slices.SortFunc(x, func(a, b wv) int { return cmp.Compare(a.v, b.v) })
	b := slices.Grow((*buf)[:0], 2*len(x))[:2*len(x)]
	vs, ws := b[:len(x)], b[len(x):]
	for i, e := range x {
		vs[i], ws[i] = e.v, e.w
	}
	*buf = b
	return stat.Quantile(0.5, stat.Empirical, vs, ws)
}
