package baseline

import (
	"context"
	"math"
	"math/rand/v2"
	"net/netip"
	"time"
)

// t0 is a Monday 00:00 UTC: hour of week 0.
var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// synth describes one synthetic host's hourly traffic: lognormal sizes
// around a median, active with probability act, optionally only in office
// hours (08-18 UTC on weekdays, else active with probability nightAct and
// nightMedian sizes).
type synth struct {
	median      float64 // bytes out per active hour
	sigma       float64 // log-scale noise
	act         float64
	office      bool
	nightAct    float64
	nightMedian float64
}

// hostHours synthesises days of host-hour aggregates starting at start,
// deterministically from seed. Connections are bytes/1 MB + 5,
// destinations a tenth of connections, fan-out 2, admin use on SSH in
// a tenth of the hours.
func (s synth) hostHours(host netip.Addr, start time.Time, days int, seed uint64) *HostHours {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	h := &HostHours{Host: host}
	first := floorDiv(start.Unix(), 3600)
	for t := first; t < first+int64(days*24); t++ {
		how := hourOfWeek(t)
		act, med := s.act, s.median
		if s.office && (how/24 >= 5 || how%24 < 8 || how%24 >= 18) {
			act, med = s.nightAct, s.nightMedian
		}
		if rng.Float64() >= act || med <= 0 {
			continue
		}
		bytes := med * math.Exp(s.sigma*rng.NormFloat64())
		conns := math.Round(bytes/1e6) + 5
		h.Hours = append(h.Hours, t)
		h.Values[Connections] = append(h.Values[Connections], conns)
		h.Values[BytesOutExternal] = append(h.Values[BytesOutExternal], math.Round(bytes))
		h.Values[ExternalDestinations] = append(h.Values[ExternalDestinations], math.Ceil(conns/10))
		h.Values[InternalDestinations] = append(h.Values[InternalDestinations], 2)
		var admin float64
		var mask uint16
		if rng.IntN(10) == 0 {
			admin, mask = 3, adminBit(22)
		}
		h.Values[AdminConnections] = append(h.Values[AdminConnections], admin)
		h.AdminMask = append(h.AdminMask, mask)
	}
	return h
}

// hostAddr is the i-th host of 10.(i/65536).(i/256%256).(i%256).
func hostAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// setValue overwrites metric m at Unix hour t (which must be active).
func (h *HostHours) setValue(m Metric, t int64, v float64) {
	for i, x := range h.Hours {
		if x == t {
			h.Values[m][i] = v
			return
		}
	}
	panic("hour not active")
}

// sliceHistory is a History over host-hours in memory.
type sliceHistory struct {
	hosts []*HostHours
	dsts  []Destination
}

func (h *sliceHistory) ReadHostHours(_ context.Context, _ HistoryQuery, fn func(*HostHours) error) error {
	for _, x := range h.hosts {
		if err := fn(x); err != nil {
			return err
		}
	}
	return nil
}

func (h *sliceHistory) ReadDestinations(_ context.Context, _ HistoryQuery, fn func(Destination) error) error {
	for _, d := range h.dsts {
		if err := fn(d); err != nil {
			return err
		}
	}
	return nil
}
