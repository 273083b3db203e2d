// Package beacon scores command-and-control beaconing: how periodic, how
// regular, how persistent and how rare each internal -> external pair's
// connections are, as one score in [0, 1].
//
// It sits in Layer 2 beside correlation. Layer 1's pair rows describe 5-
// and 10-minute windows, too short for beacons whose interval is up to
// hours, so the Tracker keeps its own compact history per pair from the
// raw connections (the Analyzer feeds them with Add) over a horizon of a
// day, and scores pairs on an event-time schedule (Advance, driven by
// Layer 1's watermark), emitting BEACON_SCORE signals that correlation
// turns into C2_BEACONING detections (rule C2-BEACON-002) and the store
// keeps beside Layer 1's signals.
//
// The score (Scorer.Score documents the formula) combines
//   - robust interval dispersion: median, MAD and Bowley skew of the gaps,
//     as RITA's timestamp score, made robust to missed beats and to +-50 %
//     jitter and completed by the lower tail of the gaps;
//   - a spectral test: BAYWATCH's periodogram with a permutation-based
//     significance threshold, confirmed on the autocorrelation function as
//     AUTOPERIOD does (spectral.go);
//   - data-size regularity (Elastic's byte CV, RITA's data-size score);
//   - persistence over the hours of the horizon, at the pair's own rate;
//   - destination rarity: how many internal hosts contact the
//     destination (BAYWATCH's popularity filter, RITA's prevalence
//     modifier), which pushes benign periodic traffic to popular services
//     (NTP, update checks, telemetry) to 0.
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
// are evicted; Config.MaxPairs bounds the rest.
//
// # Time and determinism
//
// Only event time exists here. A tick T scores pairs with connections
// since their last scoring, using only connections before T, so that
// batching and arrival order within Layer 1's allowed lateness do not
// change the scores; the permutation test is seeded per pair and tick.
// A Tracker belongs to one goroutine.
package beacon
