// Package beacon scores command-and-control beaconing: how periodic, how
// regular, how persistent and how rare each internal -> external pair's
// connections are, as one score in [0, 1].
//
// It sits in Layer 2 beside correlation. Layer 1's pair rows describe 5-
// and 10-minute windows, too short for beacons whose interval is up to
// hours, so the Tracker keeps its own compact history per pair from the
// raw connections (the Analyzer feeds them with Add) over a horizon of a
// day, and scores pairs every hour of event time (Advance, driven by
// Layer 1's watermark), emitting BEACON_SCORE signals that the store keeps
// beside Layer 1's and correlation turns into C2_BEACONING detections
// (rule C2-BEACON-002; confidence follows the score through the signal's
// evidence_strength metric, ramp(score, 0.5, 1)).
//
// # The score
//
// With x the gaps between a pair's distinct connection times (n times, at
// most Config.MaxHistory connections of the last Config.Horizon), s its
// connection sizes, ramp(v, lo, hi) the linear map of [lo, hi] onto [0,
// 1] clamped, and P0 = median(x):
//
//	Dispersion  = f(n, span) x mean(1 - |Bowley(x folded)|,
//	                                1 - ramp(MAD(x)/P0, 0.15, 0.6),
//	                                ramp(Q10(x)/P0, 0.15, 0.5))
//	Spectral    = ramp(log(P*/threshold), 0, log 3) x ramp(ACF at the hill, 0.05, 0.35)
//	Timing      = 1 - (1 - Dispersion)(1 - Spectral)
//	Size        = 1 - ramp(MAD(s)/median(s), 0.05, 0.5)
//	Persistence = ramp(active hours / expected hours, 0.3, 0.9) x min(1, observed hours / 6)
//	Rarity      = 1 for <= 2 internal sources of the destination, falling in
//	              log(sources) to 0 at max(10, 5 % of internal hosts)
//	Support     = min(1, 0.55 + 0.25 ramp(n, 10, 50) + 0.3 Size + 0.25 Persistence)
//	Duration    = ramp(span of the pair's connections, 15 min, 1 h)
//	Score       = Rarity x Timing x Support x Duration
//
// f(n, span) = max(1 - exp(-(n-2)/6), min(1, span / 12 h)); "folded" counts
// a gap of 2 or 3 periods (within 25 %) as one (missed beats); P* is the
// periodogram's peak and threshold the largest peak of 20 shuffled copies
// of the binned series. Scorer.Score and spectral.go give each term's
// reasoning. Sources:
//
//   - robust interval dispersion: median, MAD and Bowley skew of the gaps,
//     as RITA's timestamp score (activecm/rita v5, analysis/beacons.go),
//     made robust to missed beats and to +-50 % jitter and completed by
//     the lower tail of the gaps;
//   - the spectral test: BAYWATCH's periodogram with a permutation-based
//     significance threshold (Hu et al., IEEE/IFIP DSN 2016, section IV-B),
//     confirmed on a hill of the autocorrelation function as AUTOPERIOD
//     does (Vlachos, Yu and Castelli, SDM 2005) (spectral.go);
//   - data-size regularity: Elastic's beaconing package (byte CV <= 0.05)
//     and RITA's data-size score, on MAD/median;
//   - persistence over the hours of the horizon, at the pair's own rate:
//     RITA's duration score, normalised by the period;
//   - destination rarity: how many internal hosts contact the destination
//     (BAYWATCH's popularity filter, RITA's prevalence modifier), which
//     pushes benign periodic traffic to popular services (NTP, update
//     checks, telemetry) to 0. The baseline snapshot's prevalence adds to
//     the Tracker's own when the Analyzer has one.
//
// The constants were set on the quality benchmark (ingest/scenario's
// Benchmark, seed 1) and are checked by `ndr quality` on other seeds; the
// README's "Detection quality" section has the measured table.
//
// RITA computes RITA v5's published score on the same data, for the
// quality benchmark's comparison row.
//
// # State
//
// Per pair: a 40-byte slot in a slab (no Go pointers), 4 bytes of open
// addressing index per pair at a load of at most 3/4, and, beyond the first
// connection, about 3 bytes per connection (a zigzag varint of the time
// step and a log-quantised size) in a size-classed byte arena, up to
// Config.MaxHistory connections; older connections are dropped in halves,
// and an hourly activity bitmap still covers the horizon. Destination
// prevalence is recounted from the bitmaps at every scoring tick, so that
// it only counts connections before the tick. Pairs idle for the horizon
// are evicted; Config.MaxPairs bounds the rest. Measured by Stats.Bytes
// at the end of `ndr quality` (1,000 hosts x 4 days, 220,216 pairs): 95.6
// bytes per pair, all of it included (slab, index, arena chunks with
// their free blocks, prevalence maps).
//
// # Time and determinism
//
// Only event time exists here. A tick T scores pairs with connections
// since their last scoring, using only connections before T, so that
// batching and arrival order within Layer 1's allowed lateness do not
// change the scores; the permutation test is seeded per pair and tick.
// A Tracker belongs to one goroutine.
package beacon
