package beacon

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// beat is one synthetic connection.
type beat struct {
	t    int64 // µs
	size float64
}

// renewal generates a beacon as the scenario generator does: each gap is
// interval x (1 + u), u uniform in [-jitter, +jitter], and each beat is
// missed with probability miss; sizes are size x (1 + v), v uniform in
// [-sizeJitter, +sizeJitter].
func renewal(r *rand.Rand, start, end int64, interval time.Duration, jitter, miss, size, sizeJitter float64) []beat {
	var out []beat
	for t := start; t < end; t += int64(float64(interval.Microseconds()) * (1 + jitter*(2*r.Float64()-1))) {
		if r.Float64() < miss {
			continue
		}
		out = append(out, beat{t, size * (1 + sizeJitter*(2*r.Float64()-1))})
	}
	return out
}

// poisson generates memoryless arrivals at perHour during working hours
// (08:00-18:00 UTC), sessions of 1-3 connections within half a second,
// sizes log-uniform in [500, 20000] bytes: browsing.
func poisson(r *rand.Rand, start, end int64, perHour float64) []beat {
	var out []beat
	for t := start; ; {
		t += int64(r.ExpFloat64() / perHour * 3600e6)
		if t >= end {
			return out
		}
		if h := t / 3600e6 % 24; h < 8 || h >= 18 {
			continue
		}
		for k := range 1 + r.IntN(3) {
			out = append(out, beat{t + int64(k)*int64(r.IntN(500e3)), math.Exp(math.Log(500) + r.Float64()*math.Log(40))})
		}
	}
}

// series builds what the Tracker would hand the scorer at time T for a
// pair with these connections (those within the day before T).
func series(beats []beat, T int64, sources, hosts int) *Series {
	in := &Series{Sources: sources, Hosts: hosts, Seed: 42}
	hours := map[int64]bool{}
	oldest := int64(math.MaxInt64)
	for _, b := range beats {
		if b.t >= T || b.t < T-24*3600e6 {
			continue
		}
		sec := b.t / 1e6
		if n := len(in.Times); n == 0 || in.Times[n-1] != sec {
			in.Times = append(in.Times, sec)
		}
		in.Sizes = append(in.Sizes, b.size)
		hours[sec/3600] = true
		oldest = min(oldest, sec/3600)
	}
	slices.Sort(in.Times)
	in.Times = slices.Compact(in.Times)
	if n := len(in.Times); n > 0 {
		// The whole span, which the Tracker knows from its hourly
		// bitmap when the kept history is capped.
		in.Span = float64(in.Times[n-1] - in.Times[0])
	}
	in.ActiveHours = len(hours)
	in.ObservedHours = max(1, int(T/3600e6-oldest+1))
	in.Conns = len(in.Sizes)
	return in
}

var day0 = time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC).UnixMicro()

// TestScoreGrid: beacons across the parameter ranges score at or
// above the signal threshold, judged as the Tracker does: the best of the
// scorings over two days (a 4-hour beacon shows only six beats in a
// day).
func TestScoreGrid(t *testing.T) {
	th := DefaultConfig().EmitAbove
	sc := NewScorer(DefaultParams())
	for _, iv := range []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour} {
		for _, jitter := range []float64{0, 0.25, 0.5} {
			for _, miss := range []float64{0, 0.15, 0.3} {
				name := fmt.Sprintf("%s/jitter=%.2f/miss=%.2f", iv, jitter, miss)
				t.Run(name, func(t *testing.T) {
					r := rand.New(rand.NewPCG(uint64(iv), uint64(jitter*100+miss*10)))
					beats := renewal(r, day0, day0+48*3600e6, iv, jitter, miss, 400, 0.1)
					best := Result{}
					for T := day0 + 3600e6; T <= day0+48*3600e6; T += 3600e6 {
						in := series(beats, T, 1, 1000)
						if len(in.Times) > 256 {
							in.Times = in.Times[len(in.Times)-256:]
						}
						if r := sc.Score(in); r.Score > best.Score {
							best = r
						}
					}
					if best.Score < th {
						t.Errorf("best score %.3f < %.2f: %+v", best.Score, th, best)
					}
				})
			}
		}
	}
}

// TestScoreLookAlikes: benign traffic that looks like beaconing in one
// way or another stays below the threshold.
func TestScoreLookAlikes(t *testing.T) {
	th := DefaultConfig().EmitAbove
	sc := NewScorer(DefaultParams())
	r := rand.New(rand.NewPCG(7, 7))
	end := day0 + 24*3600e6
	for _, tc := range []struct {
		name           string
		beats          []beat
		sources, hosts int
		max            float64
	}{
		// The most periodic traffic there is, to a popular destination.
		{"ntp", renewal(r, day0, end, 1024*time.Second, 0.02, 0, 76, 0), 600, 1000, 0},
		{"telemetry", renewal(r, day0, end, 5*time.Minute, 0.05, 0, 1300, 0.1), 400, 1000, 0},
		{"chat keepalive", renewal(r, day0, end, time.Minute, 0.1, 0, 150, 0.1), 100, 1000, 0},
		// Popularity is relative to the network: 5 % of hosts.
		{"update check, small network", renewal(r, day0, end, time.Hour, 0.05, 0, 800, 0.2), 10, 40, 0},
		// A favourite site, visited at random during the day.
		{"browsing a rare site", poisson(r, day0, end, 2), 1, 1000, th},
		{"browsing a rare site often", poisson(r, day0, end, 20), 1, 1000, th},
		// Parallel connections in bursts: median gap under MinPeriod.
		{"bursts", func() []beat {
			var out []beat
			for t := day0 + 9*3600e6; t < day0+9*3600e6+60e6; t += 1e6 {
				out = append(out, beat{t, 600})
			}
			return out
		}(), 1, 1000, 0.01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			best := Result{}
			for T := day0 + 600e6; T <= end; T += 600e6 {
				in := series(tc.beats, T, tc.sources, tc.hosts)
				if len(in.Times) > 256 {
					in.Times = in.Times[len(in.Times)-256:]
				}
				if r := sc.Score(in); r.Score > best.Score {
					best = r
				}
			}
			if best.Score > tc.max || tc.max == th && best.Score >= th {
				t.Errorf("score %.3f, want at most %.2f: %+v", best.Score, tc.max, best)
			}
		})
	}
}

func TestRarity(t *testing.T) {
	p := DefaultParams()
	f := func(sources, hosts int, want float64) {
		t.Helper()
		if got := p.Rarity(sources, hosts); math.Abs(got-want) > 0.01 {
			t.Errorf("Rarity(%d, %d) = %.3f, want %.3f", sources, hosts, got, want)
		}
	}
	f(0, 1000, 1)
	f(2, 1000, 1)
	f(10, 1000, 1-math.Log(5)/math.Log(25)) // popular at 50 of 1,000
	f(50, 1000, 0)
	f(500, 1000, 0)
	f(3, 4, 1-math.Log(1.5)/math.Log(5)) // a small network: popular at 10
	f(10, 4, 0)
}

// TestScoreComponents pins the components on textbook inputs.
func TestScoreComponents(t *testing.T) {
	sc := NewScorer(DefaultParams())
	// A perfect 60 s beacon for 12 hours.
	var b []beat
	for t := day0; t < day0+12*3600e6; t += 60e6 {
		b = append(b, beat{t, 500})
	}
	r := sc.Score(series(b, day0+12*3600e6, 1, 100))
	if r.Dispersion < 0.99 || r.Size != 1 || r.Persistence != 1 || r.Rarity != 1 || r.Score < 0.99 ||
		r.MedianGap != 60 || r.MADGap != 0 || r.LowTail != 1 {
		t.Errorf("perfect beacon: %+v", r)
	}
	if math.Abs(r.Period-60) > 8 || r.Spectral < 0.9 {
		t.Errorf("perfect beacon: spectral %.3f, period %.1f s", r.Spectral, r.Period)
	}
	// Fewer than four distinct times are not scored.
	if r := sc.Score(series(b[:3], day0+12*3600e6, 1, 100)); r.Score != 0 || r.Dispersion != 0 {
		t.Errorf("three times: %+v", r)
	}
}

// TestSpectralFindsPeriodInNoise: a strict 5-minute beacon among as many
// random connections has polluted gaps but a clear spectral line.
func TestSpectralFindsPeriodInNoise(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var times []int64
	for t := int64(0); t < 6*3600; t += 300 {
		times = append(times, 1_770_000_000+t)
		times = append(times, 1_770_000_000+r.Int64N(6*3600))
	}
	slices.Sort(times)
	times = slices.Compact(times)
	sp := newSpectral(20)
	res := sp.test(times, 150, 1)
	if res.strength < 0.3 || math.Abs(res.period-300) > 30 {
		t.Errorf("beacon in noise: %+v", res)
	}
	// The noise alone has no period.
	var noise []int64
	for range 70 {
		noise = append(noise, 1_770_000_000+r.Int64N(6*3600))
	}
	slices.Sort(noise)
	if res := sp.test(slices.Compact(noise), 300, 1); res.strength != 0 {
		t.Errorf("noise: %+v", res)
	}
	// Same input, same seed: same answer.
	if a, b := sp.test(times, 150, 9), sp.test(times, 150, 9); a != b {
		t.Errorf("not reproducible: %+v vs %+v", a, b)
	}
}

func TestRITA(t *testing.T) {
	var ts []int64
	var bytes []float64
	for t := int64(0); t < 86400; t += 60 {
		ts = append(ts, 1_770_000_000+t)
		bytes = append(bytes, 300)
	}
	r := RITA(ts, bytes, 1_770_000_000, 1_770_000_000+86400)
	if !r.OK || r.Timestamp != 1 || r.DataSize != 1 || r.Histogram != 1 || r.Duration != 1 || r.Score != 1 {
		t.Errorf("perfect beacon: %+v", r)
	}
	// RITA's known weakness: a beacon active for 6 hours of the day
	// cannot score high on histogram and duration.
	r = RITA(ts[:360], bytes[:360], 1_770_000_000, 1_770_000_000+86400)
	if r.Timestamp != 1 || r.Score > 0.75 {
		t.Errorf("6-hour beacon: %+v", r)
	}
	if r := RITA(ts[:3], bytes[:3], 1_770_000_000, 1_770_000_000+86400); r.OK {
		t.Errorf("three timestamps scored: %+v", r)
	}
	// Bowley's skew counts only from an IQR of 10 s.
	if got := ritaStat([]float64{10, 11, 12, 19}, 1); got != round3((1+(11.5-1)/11.5)/2) {
		t.Errorf("ritaStat = %v", got)
	}
}

func BenchmarkScore(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct {
		name  string
		beats []beat
	}{
		{"beacon-256", renewal(r, day0, day0+24*3600e6, 5*time.Minute, 0.2, 0.1, 400, 0.1)},
		{"browsing", poisson(r, day0, day0+24*3600e6, 6)},
	} {
		in := series(tc.beats, day0+24*3600e6, 1, 1000)
		if len(in.Times) > 256 {
			in.Times = in.Times[len(in.Times)-256:]
		}
		b.Run(tc.name, func(b *testing.B) {
			sc := NewScorer(DefaultParams())
			for b.Loop() {
				sc.Score(in)
			}
		})
	}
}
