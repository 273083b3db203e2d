// Package scenario generates labelled, synthetic Zeek connection traffic:
// the attacks ndr must detect and the benign traffic that looks like them.
//
// It sits beside the readers at the edge of the pipeline and produces what
// a sensor would send: ingest.Conn records in event-time order, written as
// Zeek conn.log TSV or Zeek JSON (WriteTSV, WriteJSON), plus the ground
// truth of every scenario instance as Labels so that tests, benchmarks and
// a quality command can score detections for precision and recall.
//
// Output is a pure function of the Spec: the seed, the start, the duration
// and the scenario parameters. Every scenario instance draws from its own
// PCG stream, keyed by the seed and the instance's id, so adding an
// instance to a Spec leaves the traffic of the others unchanged. Nothing
// reads the wall clock.
//
// Generation streams: each instance is a sequence of sessions with
// non-decreasing start times, and a k-way merge releases a connection only
// once no instance can still produce an earlier one. Memory is bounded by
// the number of instances and the connections of overlapping sessions, not
// by the run's length, so a 2,000-host day can be written without holding
// it.
//
// # Address plan
//
// Internal (RFC 1918):
//
//	10.10.0.0/16   workstations; background host i is 10.10.(i/250).(i%250+1)
//	10.20.0.53     the internal DNS resolver
//	10.20.0.10-19  file servers (exfiltration staging, backups)
//	10.20.0.20-39  servers administered by the IT host
//	10.20.0.100    the backup server
//	10.20.1.0/24   the segment a lateral-movement scan sweeps by default
//	10.30.0.10     the IT administration host
//
// External (reserved ranges that never route on the internet):
//
//	198.18.0.0/16   web destinations, ranked by popularity; the ranks beyond
//	                Background.Destinations are the hosts' favourites
//	198.19.123.0/24 NTP pool servers
//	198.19.200.0/24 a software vendor's update CDN
//	198.19.240.0/24 a telemetry vendor's collectors
//	198.19.250.0/24 a cloud storage provider
//	203.0.113.0/24, 198.51.100.0/24, 192.0.2.0/24
//	                attacker infrastructure: C2 servers and exfiltration drops
//
// Scenario parameters may name other addresses explicitly.
package scenario
