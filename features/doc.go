// Package features is Layer 1 of ndr's pipeline: it turns connection
// records into behaviour.
//
// It owns event-time windowing (tumbling, hopping and session windows
// driven by a watermark), the bounded per-host and per-host-pair state those
// windows need, the per-entity feature rows each closed window produces (as
// Arrow records with versioned schemas), and the reference's threshold
// signals computed from those rows. It consumes ingest.Conn and imports
// nothing downstream: scoring consumes its records and signals.
package features
