package beacon

import (
	"math"
	"slices"
)

// Series is what the Tracker knows about one internal -> external pair
// when it scores it: the input of Scorer.Score.
type Series struct {
	// Times are the distinct connection start times in whole seconds,
	// sorted: connections in the same second count once (RITA's unique
	// timestamps), so parallel connections do not make short gaps.
	Times []int64
	// Sizes are the orig_ip_bytes of the connections kept, in any order.
	Sizes []float64
	// Conns counts the pair's connections kept (at most the history cap).
	Conns int
	// ActiveHours counts the clock hours of the horizon with at least one
	// connection; ObservedHours the clock hours from the pair's first
	// connection within the horizon to the scoring time (at least 1).
	ActiveHours, ObservedHours int
	// Span is the seconds from the pair's first to its last connection
	// within the horizon when the Tracker knows more than Times show (a
	// capped history); 0 means the span of Times.
	Span float64
	// Sources is how many internal hosts contacted the destination within
	// the horizon; Hosts how many internal hosts were seen at all.
	Sources, Hosts int
	// Seed makes the permutation test reproducible per pair.
	Seed uint64
}

// Result is a pair's beacon score and its components, each in [0, 1].
type Result struct {
	Score float64
	// Timing is the periodicity evidence: the noisy-OR of Dispersion and
	// Spectral.
	Timing      float64
	Dispersion  float64
	Spectral    float64
	Size        float64
	Persistence float64
	Rarity      float64
	// Period is the estimated beacon period in seconds: the spectral
	// test's when it confirmed one, else the median gap.
	Period float64
	// Interval statistics of the gaps between distinct times (seconds)
	// and of the miss-folded gaps (see Scorer.Score).
	MedianGap, MADGap, Bowley float64
	// LowTail is the 10th percentile gap over the median gap.
	LowTail float64
	// SizeMAD is MAD/median of the connection sizes.
	SizeMAD float64
	// PowerRatio is the best periodogram peak over the permutation
	// threshold; ACF the autocorrelation at the confirmed period.
	PowerRatio, ACF float64
	// Timestamps is len(Series.Times); Span the seconds from the first
	// to the last.
	Timestamps int
	Span       float64
}

// Params are the constants of the score. DefaultParams documents each.
type Params struct {
	// MinTimestamps: fewer distinct times are not scored (RITA: 4).
	MinTimestamps int
	// MinPeriod: a median gap below this many seconds is a burst of
	// parallel connections, not a beacon (Layer 1 uses 1 s).
	MinPeriod float64
	// Permutations of the spectral test (threshold at level 1/(m+1)).
	Permutations int
	// PopularMin and PopularShare set the number of internal sources at
	// which a destination counts as popular and its rarity reaches 0:
	// max(PopularMin, PopularShare x Hosts).
	PopularMin   int
	PopularShare float64
	// FullPersistenceHours: a pair present for this many hours at its
	// expected rate has persistence 1.
	FullPersistenceHours float64
	// MinSpan (seconds): pairs whose connections span less score less,
	// from 0 at a quarter of it to full weight at MinSpan.
	MinSpan float64
}

// DefaultParams are the calibrated constants; see Scorer.Score.
func DefaultParams() Params {
	return Params{
		MinTimestamps:        4,
		MinPeriod:            4,
		Permutations:         20,
		PopularMin:           10,
		PopularShare:         0.05,
		FullPersistenceHours: 6,
		MinSpan:              3600,
	}
}

// Scorer computes beacon scores. It holds scratch space: one goroutine
// owns it.
type Scorer struct {
	p     Params
	spec  *spectral
	gaps  []float64
	fold  []float64
	tmp   []float64
	sizes []float64
}

// NewScorer returns a Scorer with p.
func NewScorer(p Params) *Scorer {
	return &Scorer{p: p, spec: newSpectral(p.Permutations)}
}

// Rarity maps a destination's internal source count to [0, 1]: 1 for one
// or two sources, falling linearly in log(sources) to 0 at the popular
// count max(PopularMin, PopularShare x hosts). RITA's prevalence modifier
// (<= 2 % of hosts: more suspicious, >= 50 %: less) and BAYWATCH's
// popularity whitelist are the same idea as steps; a log ramp avoids a
// cliff.
func (p *Params) Rarity(sources, hosts int) float64 {
	pop := math.Max(float64(p.PopularMin), p.PopularShare*float64(hosts))
	if sources <= 2 {
		return 1
	}
	return clamp01(1 - math.Log(float64(sources)/2)/math.Log(pop/2))
}

// Score rates one pair. With x the gaps between distinct connection
// times (n times), s the connection sizes and ramp(v, lo, hi) the linear
// map of [lo, hi] onto [0, 1], clamped:
//
//	P0          = median(x): the period estimate. Missed beats only lengthen
//	              gaps, so with up to 30 % of beats missed most gaps are still
//	              single periods.
//	Dispersion  = mean of three robust terms, times a sample-size factor:
//	              1 - |Bowley skew|              RITA's skew term, on gaps with
//	                                             missed beats folded (a gap of 2
//	                                             or 3 periods within 25 % counts
//	                                             as one period)
//	              1 - ramp(MAD(x)/P0, 0.15, 0.6) RITA's (median - MAD)/median,
//	                                             rescaled so that +-50 % uniform
//	                                             jitter (MAD/median 0.25, 0.3
//	                                             with misses) still scores and
//	                                             memoryless arrivals (0.6) do not
//	              ramp(Q10(x)/P0, 0.15, 0.5)     the lower tail: a beacon's gaps
//	                                             are never much shorter than its
//	                                             period whatever its jitter and
//	                                             misses (>= 0.5); memoryless
//	                                             arrivals give 0.15, bursts 0
//	              factor max(1 - exp(-(n-2)/6), min(1, span/12 h)): few gaps are
//	              weak evidence unless they span half a day, since human-driven
//	              traffic does not keep a rhythm through the night. 0 when
//	              P0 < MinPeriod (parallel connections are not a beacon).
//	Spectral    = the BAYWATCH periodogram test's strength (spectral.go).
//	Timing      = 1 - (1 - Dispersion)(1 - Spectral): noisy-OR of the tests.
//	Size        = 1 - ramp(MAD(s)/median(s), 0.05, 0.5): Elastic's byte-size
//	              regularity (CV <= 0.05) made robust; RITA's data-size score.
//	Persistence = ramp(active hours / expected hours, 0.3, 0.9) x
//	              min(1, observed hours / FullPersistenceHours), expected
//	              hours = observed hours x min(1, 3600 s / period): whether the
//	              pair shows up steadily at its own rate, and for how long
//	              (RITA's duration score, normalised by the period).
//	Rarity      = Params.Rarity(sources, hosts).
//	Support     = min(1, 0.55 + 0.25 ramp(n, 10, 50) + 0.3 Size + 0.25 Persistence)
//	Duration    = ramp(span of the pair's connections, MinSpan/4, MinSpan):
//	              a run of
//	              equal chunks of one upload (20 x 100 MB at 30 s) is
//	              regular but is not a beacon.
//	Score       = Rarity x Timing x Support x Duration
//
// Timing gates the score: regular sizes and persistence corroborate a
// periodic pair but cannot make an aperiodic one score, and with 50 or
// more distinct times timing alone may carry it (padded payloads). Rarity
// gates it too: benign periodic traffic (NTP, update checks, telemetry)
// goes to destinations that many internal hosts contact.
//
// The constants were set on the quality benchmark's seed-1 corpus (300
// hosts, 2 days) and checked on seed 7 (1,000 hosts, 3 days): every C2
// pair of the interval x jitter x missed-beat grid scores at least 0.85,
// and no benign pair reaches 0.75.
func (sc *Scorer) Score(in *Series) Result {
	p := &sc.p
	r := Result{Timestamps: len(in.Times)}
	if len(in.Times) > 0 {
		r.Span = float64(in.Times[len(in.Times)-1] - in.Times[0])
	}
	r.Rarity = p.Rarity(in.Sources, in.Hosts)
	if len(in.Times) < p.MinTimestamps {
		return r
	}
	gaps := sc.gaps[:0]
	for i := 1; i < len(in.Times); i++ {
		gaps = append(gaps, float64(in.Times[i]-in.Times[i-1]))
	}
	slices.Sort(gaps)
	sc.gaps = gaps
	p0 := quantile(gaps, 0.5)
	r.MedianGap = p0
	sc.tmp = slices.Grow(sc.tmp[:0], len(gaps))
	r.MADGap = mad(gaps, p0, sc.tmp)
	r.LowTail = quantile(gaps, 0.1) / p0

	// Bowley's skew on gaps with missed beats folded: a gap of two or
	// three periods (one or two missed beats) close to it counts as one
	// period, so that a few misses do not skew the quartiles. Only the
	// skew term folds: folding would also pull memoryless gaps towards
	// the median and make them look regular.
	fold := sc.fold[:0]
	for _, g := range gaps {
		if k := math.Round(g / p0); k >= 2 && k <= 3 && math.Abs(g/k-p0) <= 0.25*p0 {
			g /= k
		}
		fold = append(fold, g)
	}
	slices.Sort(fold)
	sc.fold = fold
	r.Bowley = bowley(quantile(fold, 0.25), quantile(fold, 0.5), quantile(fold, 0.75))
	n := float64(len(in.Times))
	if p0 >= p.MinPeriod {
		r.Dispersion = (1 - math.Abs(r.Bowley) + 1 - ramp(r.MADGap/p0, 0.15, 0.6) + ramp(r.LowTail, 0.15, 0.5)) / 3
		// Few gaps are weak evidence, unless they span half a day:
		// human-driven traffic does not keep a rhythm through the night.
		r.Dispersion *= math.Max(1-math.Exp(-(n-2)/6), math.Min(1, r.Span/(12*3600)))
	}

	r.Period = p0
	if r.Rarity > 0 {
		// The permutation test is the expensive part: a popular
		// destination's score is 0 whatever it finds (BAYWATCH's funnel
		// also filters on popularity first).
		sp := sc.spec.test(in.Times, p0, in.Seed)
		r.Spectral, r.PowerRatio, r.ACF = sp.strength, sp.ratio, sp.acf
		if sp.period > 0 {
			r.Period = sp.period
		}
	}
	r.Timing = 1 - (1-r.Dispersion)*(1-r.Spectral)

	if len(in.Sizes) > 0 {
		sizes := append(sc.sizes[:0], in.Sizes...)
		slices.Sort(sizes)
		sc.sizes = sizes
		sm := quantile(sizes, 0.5)
		if sm > 0 {
			r.SizeMAD = mad(sizes, sm, sc.tmp) / sm
			r.Size = 1 - ramp(r.SizeMAD, 0.05, 0.5)
		}
	}

	obs := math.Max(1, float64(in.ObservedHours))
	expected := obs * math.Min(1, 3600/math.Max(r.Period, 1))
	r.Persistence = ramp(float64(in.ActiveHours)/math.Max(1, expected), 0.3, 0.9) *
		math.Min(1, obs/p.FullPersistenceHours)

	r.Score = r.Rarity * r.Timing * math.Min(1, 0.55+0.25*ramp(n, 10, 50)+0.3*r.Size+0.25*r.Persistence)
	// A beacon lasts: a regular run of connections shorter than
	// MinSpan (an upload in equal chunks, a retry loop) is not one.
	// The kept history of a fast beacon may span less than the pair has
	// been active: the Tracker's hourly activity tells (Series.Span).
	r.Score *= ramp(math.Max(r.Span, in.Span), p.MinSpan/4, p.MinSpan)
	return r
}
