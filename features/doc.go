// Package features is Layer 1 of ndr's pipeline: it turns connection
// records into behaviour.
//
// It owns event-time windowing (tumbling, hopping and session windows
// driven by a watermark), the bounded per-host and per-host-pair state those
// windows need, the per-entity feature rows each closed window produces (as
// Arrow records with versioned schemas), and the reference's threshold
// signals computed from those rows. It consumes ingest.Conn and imports
// nothing downstream: scoring consumes its records and signals.
//
// # Flow
//
// An Engine receives connections through Process and hands each closed
// window to an Emitter (declared here, implemented by scoring and the
// store) as a WindowOutput: a host_features record, a pair_features record
// (schema.go documents both, field by field) and the Signals evaluated
// from their rows. Flush closes everything at the end of input.
//
// # Time
//
// Only event time exists here, never the wall clock. The watermark is the
// newest event time seen minus Config.AllowedLateness; a window [start,
// end) closes when the watermark reaches end. Windows are unions of panes
// (the gcd of the hops of an entity kind: 10 s for hosts, 30 s for pairs
// by default); an event whose pane has already closed is late, counted in
// Stats and ignored by that kind's windows. So any arrival order in which
// no event trails the newest by more than the lateness, cut into batches
// of any size, gives exactly the output of the time-ordered stream: a
// replayed file and a live stream agree.
//
// # State
//
// Hosts are internal originators; pairs are (internal source, destination,
// port) with an external destination (or any, with
// Limits.TrackInternalPairs). Addresses are interned to 24-bit ids, state
// lives in flat slabs, and only non-empty panes are stored. Entities with
// no pane left in any window are evicted as the watermark advances; caps
// on hosts, pairs and distinct-set sizes bound memory against hostile
// input, with a counted and logged overflow policy.
//
// # Ownership
//
// The Engine is not goroutine-safe: one goroutine owns it. Arrow records
// passed to Emit are released by the engine when Emit returns unless the
// consumer retains them; signals belong to the consumer.
package features
