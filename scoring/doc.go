// Package scoring is Layer 2 of ndr's pipeline: it turns Layer 1's signals
// and those of its own scorers (scoring/beacon: BEACON_SCORE per internal
// -> external pair; scoring/upload: UPLOAD_ANOMALY, STAGING_ANOMALY and
// MULTI_DESTINATION_UPLOAD per host against its baseline) into few,
// high-confidence detections.
//
// It owns the correlation rules (data: JSON files with the reference's
// fields, defaults embedded from rules/*.json), the correlation Engine that
// matches signals per entity within a rule's time window and suppresses
// repeats, the Detection record with its evidence, confidence and score,
// and the JSON lines encoding of detections. It consumes features.Signal
// and hands Events to a Sink: the JSON lines writer here, or the
// ClickHouse store in internal/store, which upserts by detection id and
// Version.
//
// Correlation is driven by signal event time (WindowEnd), never the wall
// clock, so a replay of the same signals and a live run produce the same
// detections with the same ids.
package scoring
