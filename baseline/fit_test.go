package baseline

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func build(t testing.TB, p Params, days int, hosts ...*HostHours) *Snapshot {
	t.Helper()
	b, err := NewBuilder(p, t0, t0.Add(time.Duration(days)*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if err := b.AddHost(h); err != nil {
			t.Fatal(err)
		}
	}
	s, err := b.Build(1, t0.Add(time.Duration(days)*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

// A host with one 10 GB hour among 30 days of ~100 MB hours keeps a sane
// baseline: the median and MAD ignore the outlier, which itself scores as
// extreme.
func TestRobustFitIgnoresOutliers(t *testing.T) {
	t.Parallel()
	const days = 30
	host := hostAddr(1)
	for _, tc := range []struct {
		name     string
		outliers int
	}{{"clean", 0}, {"one 10 GB hour", 1}, {"five 10 GB hours", 5}} {
		h := synth{median: 100e6, sigma: 0.3, act: 1}.hostHours(host, t0, days, 7)
		for i := range tc.outliers {
			h.setValue(BytesOutExternal, h.Hours[100+i*50], 10e9)
		}
		s := build(t, DefaultParams(), days, h)
		m, ok := s.HostModel(host)
		if !ok {
			t.Fatalf("%s: no model", tc.name)
		}
		loc, scale := m.Expected(BytesOutExternal, 10)
		if typical := math.Expm1(loc); !near(typical, 100e6, 10e6) {
			t.Errorf("%s: typical hour %.3g, want about 100 MB", tc.name, typical)
		}
		if !near(scale, 0.3, 0.06) {
			t.Errorf("%s: scale %.3f, want about 0.3 (the noise)", tc.name, scale)
		}
		if p := m.TailProb(BytesOutExternal, 10, 150e6); p < 0.01 {
			t.Errorf("%s: TailProb(150 MB) = %.3g, want an ordinary value", tc.name, p)
		}
		if p := m.TailProb(BytesOutExternal, 10, 10e9); p > 1e-20 {
			t.Errorf("%s: TailProb(10 GB) = %.3g, want extreme", tc.name, p)
		}
		if z := m.Z(BytesOutExternal, 10, 10e9); z < 3.5 {
			t.Errorf("%s: modified z of 10 GB %.1f, want > 3.5", tc.name, z)
		}
	}
}

// Seasonal offsets come only with enough history: hour of day after 7
// days, weekday after 14; an office-hours host then expects far more at
// 10:00 on a Tuesday than at 03:00 or on a Sunday.
func TestSeasonality(t *testing.T) {
	t.Parallel()
	host := hostAddr(2)
	office := synth{median: 500e6, sigma: 0.2, act: 1, office: true, nightAct: 0.5, nightMedian: 2e6}
	tue10, tue03, sun10 := 24+10, 24+3, 6*24+10
	for _, tc := range []struct {
		days               int
		wantHOD, wantWeek  bool
		wantDayOverNight   bool
		wantWeekdayOverSun bool
	}{
		{days: 5},
		{days: 6},
		{days: 7, wantHOD: true, wantDayOverNight: true},
		{days: 13, wantHOD: true, wantDayOverNight: true},
		{days: 14, wantHOD: true, wantWeek: true, wantDayOverNight: true, wantWeekdayOverSun: true},
		{days: 30, wantHOD: true, wantWeek: true, wantDayOverNight: true, wantWeekdayOverSun: true},
	} {
		s := build(t, DefaultParams(), tc.days, office.hostHours(host, t0, tc.days, 3))
		m, _ := s.HostModel(host)
		hod, week := m.Seasonal()
		if hod != tc.wantHOD || week != tc.wantWeek {
			t.Errorf("%d days: seasonal (hour of day %v, weekday %v), want (%v, %v)", tc.days, hod, week, tc.wantHOD, tc.wantWeek)
		}
		day, _ := m.Expected(BytesOutExternal, tue10)
		night, _ := m.Expected(BytesOutExternal, tue03)
		sun, _ := m.Expected(BytesOutExternal, sun10)
		if got := day-night > 2; got != tc.wantDayOverNight {
			t.Errorf("%d days: location 10:00 %.2f vs 03:00 %.2f: day over night %v, want %v", tc.days, day, night, got, tc.wantDayOverNight)
		}
		if got := day-sun > 2; got != tc.wantWeekdayOverSun {
			t.Errorf("%d days: location Tue 10:00 %.2f vs Sun 10:00 %.2f: weekday over Sunday %v, want %v", tc.days, day, sun, got, tc.wantWeekdayOverSun)
		}
		if tc.wantWeek {
			// A 500 MB Tuesday-morning hour is normal; the same at 03:00 on
			// Sunday is not.
			if p := m.TailProb(BytesOutExternal, tue10, 500e6); p < 0.1 {
				t.Errorf("%d days: TailProb(500 MB, Tue 10:00) = %.3g, want ordinary", tc.days, p)
			}
			if p := m.TailProb(BytesOutExternal, 6*24+3, 500e6); p > 1e-6 {
				t.Errorf("%d days: TailProb(500 MB, Sun 03:00) = %.3g, want tiny", tc.days, p)
			}
		}
	}
}

// A new host borrows from its peers or the population: with n active
// hours it keeps w = n/(n+k) of its own location, k = EPV/VHM of its
// prior (Bühlmann): large where hosts are alike, small where they differ.
// A host without a model gets the prior itself.
func TestShrinkage(t *testing.T) {
	t.Parallel()
	p := DefaultParams()
	const days = 14
	newHost := func(a netip.Addr, median float64) *HostHours {
		h := synth{median: median, sigma: 0.01, act: 1}.hostHours(a, t0.Add((days*24-8)*time.Hour), 1, 9)
		h.Hours, h.AdminMask = h.Hours[:8], h.AdminMask[:8]
		for m := range h.Values {
			h.Values[m] = h.Values[m][:8]
		}
		return h
	}
	for _, tc := range []struct {
		name     string
		spread   float64 // hosts' medians are 100 MB x (1 + spread·i/20)
		sigma    float64 // noise of each host's hours
		minK     float64
		maxK     float64
		maxOwnLn float64 // the newcomer's location stays this far below its own at most
	}{
		// Alike hosts with noisy hours: a newcomer's 8 hours count little.
		{name: "alike", spread: 0.2, sigma: 1, minK: 20, maxK: p.ShrinkHours, maxOwnLn: -2},
		// Hosts 1 to 1000x apart, steady hours: 8 hours are plenty.
		{name: "diverse", spread: 999, sigma: 0.2, minK: 0, maxK: 0.1, maxOwnLn: 0.1},
	} {
		var hosts []*HostHours
		for i := range 20 {
			med := 100e6 * (1 + tc.spread*float64(i)/20)
			hosts = append(hosts, synth{median: med, sigma: tc.sigma, act: 1}.hostHours(hostAddr(1000+i*256), t0, days, uint64(i)))
		}
		newcomer := netip.MustParseAddr("10.7.7.7")
		s := build(t, p, days, append(hosts, newHost(newcomer, 10e9))...)
		k := float64(s.pop.m[BytesOutExternal].k)
		if k < tc.minK || k > tc.maxK {
			t.Errorf("%s: k = %.3g, want [%v, %v]", tc.name, k, tc.minK, tc.maxK)
		}
		m, ok := s.HostModel(newcomer)
		if !ok {
			t.Fatalf("%s: newcomer: no model", tc.name)
		}
		w := m.Weight(BytesOutExternal)
		if want := 8 / (8 + k); !near(w, want, 1e-4) {
			t.Errorf("%s: newcomer weight %.4f, want 8/(8+k) = %.4f", tc.name, w, want)
		}
		loc, _ := m.Expected(BytesOutExternal, 0)
		popLoc, _ := Model{s: s, pr: &s.pop}.Expected(BytesOutExternal, 0)
		own := math.Log1p(10e9)
		if want := w*own + (1-w)*popLoc; !near(loc, want, 0.02) {
			t.Errorf("%s: newcomer location %.3f, want w·own + (1-w)·population = %.3f", tc.name, loc, want)
		}
		if tc.maxOwnLn < 0 && loc-own > tc.maxOwnLn {
			t.Errorf("%s: newcomer location %.3f not shrunk from its own %.3f", tc.name, loc, own)
		}
		if tc.maxOwnLn > 0 && own-loc > tc.maxOwnLn {
			t.Errorf("%s: newcomer location %.3f shrunk from its own %.3f", tc.name, loc, own)
		}
	}

	// Hosts without a model get their prior: the peer group's when it is
	// big enough, else the population's.
	var hosts []*HostHours
	for i := range 20 {
		hosts = append(hosts, synth{median: 100e6, sigma: 0.2, act: 1}.hostHours(hostAddr(1000+i*256), t0, days, uint64(i)))
	}
	for i := range 6 {
		hosts = append(hosts, synth{median: 1e9, sigma: 0.2, act: 1}.hostHours(netip.AddrFrom4([4]byte{10, 0, 9, byte(10 + i)}), t0, days, uint64(100+i)))
	}
	s := build(t, p, days, hosts...)
	for _, tc := range []struct {
		host string
		want float64 // typical active hour
	}{
		{"10.0.9.200", 1e9},   // in the 1 GB peer group
		{"10.0.1.200", 100e6}, // /24 with one modelled host: population
		{"192.168.5.5", 100e6},
	} {
		m, ok := s.HostModel(netip.MustParseAddr(tc.host))
		if ok {
			t.Errorf("%s: has a model of its own", tc.host)
		}
		loc, _ := m.Expected(BytesOutExternal, 0)
		if got := math.Expm1(loc); got < tc.want/2 || got > tc.want*2 {
			t.Errorf("%s: prior typical hour %.3g, want about %.3g", tc.host, got, tc.want)
		}
		if m.HistoryHours() != 0 || m.Host().IsValid() {
			t.Errorf("%s: prior claims history %d or host %s", tc.host, m.HistoryHours(), m.Host())
		}
	}
}

// The absolute floor: a host that sends almost nothing does not alarm on
// a few megabytes, hourly or in a spike window, but still does on a lot.
func TestFloor(t *testing.T) {
	t.Parallel()
	host := hostAddr(3)
	s := build(t, DefaultParams(), 14, synth{median: 1e3, sigma: 0.1, act: 1}.hostHours(host, t0, 14, 5))
	m, _ := s.HostModel(host)
	for _, tc := range []struct {
		value   float64
		anomaly bool
	}{{0, false}, {1e3, false}, {10e6, false}, {50e6, false}, {60e6, true}, {1e9, true}} {
		p := m.TailProb(BytesOutExternal, 10, tc.value)
		if got := p < 1e-6; got != tc.anomaly {
			t.Errorf("TailProb(%.3g) = %.3g: anomaly %v, want %v", tc.value, p, got, tc.anomaly)
		}
	}
	// Without the floor 10 MB is far out for this host.
	p := DefaultParams()
	p.Floors = [NumMetrics]float64{}
	s0 := build(t, p, 14, synth{median: 1e3, sigma: 0.1, act: 1}.hostHours(host, t0, 14, 5))
	m0, _ := s0.HostModel(host)
	if pr := m0.TailProb(BytesOutExternal, 10, 10e6); pr > 1e-6 {
		t.Errorf("no floor: TailProb(10 MB) = %.3g, want tiny", pr)
	}
	// Spike windows: mean + FloorZ·sd reaches the 50 MB spike floor.
	at := t0.Add(15*24*time.Hour + 10*time.Hour)
	mean, sd, ok := s.WindowStats(host, BytesOutExternal, at, 5*time.Minute)
	if !ok {
		t.Fatal("WindowStats: not ok")
	}
	if th := mean + 3*sd; th < 50e6*0.999 {
		t.Errorf("5 min threshold %.3g, want >= 50 MB floor", th)
	}
	if z := (40e6 - mean) / sd; z > 3 {
		t.Errorf("40 MB in 5 min scores z %.2f, want <= 3 (below the floor)", z)
	}
	if z := (200e6 - mean) / sd; z <= 3 {
		t.Errorf("200 MB in 5 min scores z %.2f, want > 3", z)
	}
}

// Spike windows scale the hourly model: a host sending 2.4 GB every hour
// (200 MB per 5 min) expects about 200 MB per 5-minute window.
func TestWindowStats(t *testing.T) {
	t.Parallel()
	host := hostAddr(4)
	s := build(t, DefaultParams(), 3, synth{median: 2.4e9, sigma: 0.05, act: 1}.hostHours(host, t0, 3, 1))
	at := t0.Add(3*24*time.Hour + 5*time.Minute)
	mean, sd, ok := s.WindowStats(host, BytesOutExternal, at, 5*time.Minute)
	if !ok || !near(mean, 200e6, 10e6) {
		t.Fatalf("5 min window: mean %.3g ok %v, want about 200 MB", mean, ok)
	}
	if z := (200e6 - mean) / sd; math.Abs(z) > 1 {
		t.Errorf("200 MB in 5 min: z %.2f, want about 0", z)
	}
	if z := (2e9 - mean) / sd; z < 10 {
		t.Errorf("2 GB in 5 min: z %.2f, want far out", z)
	}
	cm, _, ok := s.WindowStats(host, Connections, at, time.Minute)
	if want := (2400.0 + 5) / 60; !ok || !near(cm, want, want*0.1) {
		t.Errorf("connections per minute %.2f ok %v, want about %.1f", cm, ok, want)
	}
	if _, _, ok := s.WindowStats(hostAddr(99), BytesOutExternal, at, 5*time.Minute); ok {
		t.Error("unknown host: ok")
	}
	var nilSnap *Snapshot
	if _, _, ok := nilSnap.WindowStats(host, BytesOutExternal, at, 5*time.Minute); ok {
		t.Error("nil snapshot: ok")
	}
}

func TestPrevalence(t *testing.T) {
	t.Parallel()
	p := DefaultParams()
	p.MaxDestinations = 3
	b, err := NewBuilder(p, t0, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	day := func(d int) time.Time { return t0.Add(time.Duration(d) * 24 * time.Hour) }
	for _, d := range []Destination{
		{netip.MustParseAddr("198.51.100.1"), 1, day(-10)},
		{netip.MustParseAddr("198.51.100.2"), 500, day(-100)},
		{netip.MustParseAddr("2001:db8::1"), 2, day(0)},
		{netip.MustParseAddr("198.51.100.3"), 1, day(-1)}, // newer than .1 at the same count
		{netip.MustParseAddr("::ffff:198.51.100.2"), 400, day(-200)},
	} {
		b.AddDestination(d)
	}
	s, err := b.Build(1, day(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dst   string
		hosts int
		first time.Time
		ok    bool
	}{
		{"198.51.100.2", 500, day(-200), true}, // repeats merge: most hosts, earliest
		{"::ffff:198.51.100.2", 500, day(-200), true},
		{"2001:db8::1", 2, day(0), true},
		{"198.51.100.3", 1, day(-1), true},
		{"198.51.100.1", 0, time.Time{}, false}, // dropped at the cap: least prevalent, oldest
		{"203.0.113.9", 0, time.Time{}, false},
	} {
		n, first, ok := s.Prevalence(netip.MustParseAddr(tc.dst))
		if n != tc.hosts || !first.Equal(tc.first) || ok != tc.ok {
			t.Errorf("Prevalence(%s) = %d, %s, %v; want %d, %s, %v", tc.dst, n, first, ok, tc.hosts, tc.first, tc.ok)
		}
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	host := hostAddr(5)
	h := synth{median: 1e6, sigma: 0.1, act: 1}.hostHours(host, t0, 10, 11)
	s := build(t, DefaultParams(), 10, h)
	f, ok := s.FanOut(host)
	if !ok || f.Median != 2 || f.P99 != 2 || f.Max != 2 {
		t.Errorf("FanOut = %+v, %v; want 2, 2, 2", f, ok)
	}
	a, ok := s.AdminPorts(host)
	if !ok || !a.Uses(22) || a.Uses(3389) || a.Hours == 0 || a.Hours > a.HistoryHours/5 || a.MedianConnections != 3 {
		t.Errorf("AdminPorts = %+v, %v; want SSH only in about a tenth of the hours, 3 connections", a, ok)
	}
	if got := a.Ports(); len(got) != 1 || got[0] != 22 {
		t.Errorf("Ports() = %v, want [22]", got)
	}
	if _, ok := s.FanOut(hostAddr(6)); ok {
		t.Error("FanOut of an unknown host: ok")
	}
}

func TestBuilderErrors(t *testing.T) {
	t.Parallel()
	if _, err := NewBuilder(DefaultParams(), t0, t0); !errors.Is(err, ErrBadWindow) {
		t.Errorf("empty window: %v, want ErrBadWindow", err)
	}
	p := DefaultParams()
	p.MinScale, p.FloorZ, p.MinHours = 0, -1, 0
	err := p.Validate()
	for _, want := range []string{"min_scale", "floor_z", "min_hours"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	b, _ := NewBuilder(DefaultParams(), t0, t0.Add(48*time.Hour))
	bad := &HostHours{Host: hostAddr(1), Hours: []int64{t0.Unix() / 3600, t0.Unix() / 3600}}
	for m := range bad.Values {
		bad.Values[m] = []float64{1, 2}
	}
	if err := b.AddHost(bad); !errors.Is(err, ErrUnsorted) {
		t.Errorf("repeated hour: %v, want ErrUnsorted", err)
	}
	bad.Values[0] = bad.Values[0][:1]
	if err := b.AddHost(bad); !errors.Is(err, ErrUnsorted) {
		t.Errorf("short column: %v, want ErrUnsorted", err)
	}
	if _, err := b.Build(1, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(2, t0); !errors.Is(err, ErrBuilt) {
		t.Errorf("second Build: %v, want ErrBuilt", err)
	}
}

func TestHourOfWeek(t *testing.T) {
	t.Parallel()
	f := func(ts string, want int) {
		t.Helper()
		tm, _ := time.Parse(time.RFC3339, ts)
		if got := HourOfWeek(tm); got != want {
			t.Errorf("HourOfWeek(%s) = %d, want %d", ts, got, want)
		}
	}
	f("2026-03-02T00:00:00Z", 0) // Monday
	f("2026-03-02T10:59:59Z", 10)
	f("2026-03-05T00:30:00Z", 72) // Thursday
	f("2026-03-08T23:00:00Z", 167)
	f("1970-01-01T00:00:00Z", 72)
	f("1969-12-29T00:00:00Z", 0) // before the epoch
}
