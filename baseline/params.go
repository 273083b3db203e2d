package baseline

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Params are the fit's settings. They are recorded in every Snapshot
// (and in ndr.baselines.params as JSON) so a model says how it was made.
// Start from DefaultParams.
type Params struct {
	// MinHours: hours of history (from a host's first active hour to the
	// end of the data window) a host needs for a model of its own. Hosts
	// with fewer count for prevalence but get the prior.
	MinHours int `json:"min_hours"`
	// HourOfDayAfter: history before hour-of-day offsets are fitted (each
	// hour of the day seen that many days).
	HourOfDayAfter time.Duration `json:"hour_of_day_after"`
	// WeekdayAfter: history before weekday offsets are fitted.
	WeekdayAfter time.Duration `json:"weekday_after"`
	// CellPrior: pseudo-observations that shrink each seasonal offset
	// towards 0 (and each seasonal activity rate towards the host's
	// rate): an offset from c observations keeps c/(c+CellPrior).
	CellPrior float64 `json:"cell_prior"`
	// ShrinkHours caps k in the shrinkage weight n/(n+k) towards the peer
	// or population prior (n: active hours); k itself is estimated from
	// the hosts (Bühlmann's EPV/VHM, see takePrior) and is ShrinkHours
	// when the hosts' locations do not vary.
	ShrinkHours float64 `json:"shrink_hours"`
	// ActivityPriorHours is k for the activity rate: a Beta prior worth
	// that many hours. Smaller than ShrinkHours because a rate is known
	// well after a few hours (its standard error is sqrt(p(1-p)/n)) while
	// a location needs active hours.
	ActivityPriorHours float64 `json:"activity_prior_hours"`
	// MinPeers: fitted hosts a peer group (/24, /64) needs to serve as a
	// host's prior; smaller groups defer to the population.
	MinPeers int `json:"min_peers"`
	// MinScale bounds the log-scale scale from below: a host whose active
	// hours are all alike (MAD 0) is still allowed ±MinScale (0.1: about
	// ±10 %) before values look unusual.
	MinScale float64 `json:"min_scale"`
	// Floors: hourly value of each metric at or below which nothing is
	// anomalous (TailProb 1), indexed by Metric.
	Floors [NumMetrics]float64 `json:"floors"`
	// SpikeFloors: the same per spike window (see SpikeBaselines),
	// indexed by Metric; only Connections and BytesOutExternal have spike
	// windows.
	SpikeFloors [NumMetrics]float64 `json:"spike_floors"`
	// FloorZ is the z at which a spike window at its floor scores; it
	// should be the features config's z_over (3 by default).
	FloorZ float64 `json:"floor_z"`
	// MaxDestinations caps destination prevalence entries (the most
	// prevalent, then the most recently first-seen, are kept); a
	// destination not in the snapshot reports ok false.
	MaxDestinations int `json:"max_destinations"`
}

// DefaultParams are the defaults; the comment of each field says why.
//
// Floors: 100 connections, 50 MB to external destinations, 20 external
// destinations, 10 internal destinations and 5 admin-port connections in
// an hour are unremarkable for any host (50 MB/hour and 100
// connections/hour are the examples). Spike floors are per
// window: 20 connections per CONNECTION_SPIKE window (the prior's
// threshold is 10 + 3·3 = 19) and 50 MB per OUTBOUND_SPIKE window (the
// prior's mean: the reference's normal host sends that much in 5 min).
func DefaultParams() Params {
	var floors, spike [NumMetrics]float64
	floors[Connections] = 100
	floors[BytesOutExternal] = 50e6
	floors[ExternalDestinations] = 20
	floors[InternalDestinations] = 10
	floors[AdminConnections] = 5
	spike[Connections] = 20
	spike[BytesOutExternal] = 50e6
	return Params{
		MinHours:           6,
		HourOfDayAfter:     7 * 24 * time.Hour,
		WeekdayAfter:       14 * 24 * time.Hour,
		CellPrior:          2,
		ShrinkHours:        24,
		ActivityPriorHours: 6,
		MinPeers:           5,
		MinScale:           0.1,
		Floors:             floors,
		SpikeFloors:        spike,
		FloorZ:             3,
		MaxDestinations:    1_000_000,
	}
}

// Validate reports every problem at once.
func (p Params) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("baseline params: "+format, args...)) }
	if p.MinHours < 1 {
		bad("min_hours %d: want >= 1", p.MinHours)
	}
	if p.HourOfDayAfter < 24*time.Hour || p.HourOfDayAfter%time.Hour != 0 {
		bad("hour_of_day_after %s: want whole hours, >= 24h", p.HourOfDayAfter)
	}
	if p.WeekdayAfter < 7*24*time.Hour || p.WeekdayAfter%time.Hour != 0 {
		bad("weekday_after %s: want whole hours, >= 168h", p.WeekdayAfter)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"cell_prior", p.CellPrior}, {"shrink_hours", p.ShrinkHours}, {"activity_prior_hours", p.ActivityPriorHours}} {
		if !(f.v >= 0) || math.IsInf(f.v, 0) {
			bad("%s %v: want a finite value >= 0", f.name, f.v)
		}
	}
	if p.MinPeers < 1 {
		bad("min_peers %d: want >= 1", p.MinPeers)
	}
	if !(p.MinScale > 0) || p.MinScale > 10 {
		bad("min_scale %v: want (0, 10]", p.MinScale)
	}
	for m := range Metric(NumMetrics) {
		if !(p.Floors[m] >= 0) || math.IsInf(p.Floors[m], 0) {
			bad("floors[%s] %v: want a finite value >= 0", m, p.Floors[m])
		}
		if !(p.SpikeFloors[m] >= 0) || math.IsInf(p.SpikeFloors[m], 0) {
			bad("spike_floors[%s] %v: want a finite value >= 0", m, p.SpikeFloors[m])
		}
	}
	if !(p.FloorZ > 0) || math.IsInf(p.FloorZ, 0) {
		bad("floor_z %v: want > 0", p.FloorZ)
	}
	if p.MaxDestinations < 0 || p.MaxDestinations > 1<<27 {
		bad("max_destinations %d: want [0, %d]", p.MaxDestinations, 1<<27)
	}
	return errors.Join(errs...)
}
