// Package ingest is the edge of the pipeline where connection records enter ndr.
//
// It owns the Conn record that every later stage consumes, its validation, and
// the readers that turn Zeek conn.log files (TSV and JSON) and the reference
// repository's simple JSON events into Conns. The gRPC service that receives
// records from sensors lives in ingest/server, the sending client in
// ingest/client, and the mapping between wire messages and Conn in ingest/wire.
//
// ingest imports nothing else from ndr; features, scoring and the store import it.
package ingest

import (
	"net/netip"
	"time"
)

// Conn is one connection record with the fields of Zeek's conn.log.
//
// Counters that Zeek leaves unset ("-") are 0, as RITA and Zeek's own
// summaries treat them. LocalOrig and LocalResp keep "unknown" apart from
// false because the internal/external decision falls back to configured
// networks only when the sensor did not say.
type Conn struct {
	TS          int64 // connection start, microseconds since the Unix epoch, UTC
	UID         string
	OrigH       netip.Addr // originator; IPv4 addresses are kept as 4-byte addresses
	RespH       netip.Addr // responder
	OrigP       uint16
	RespP       uint16
	Proto       Transport
	Service     string
	Duration    time.Duration // microsecond resolution
	OrigBytes   uint64
	RespBytes   uint64
	ConnState   ConnState
	LocalOrig   Tristate
	LocalResp   Tristate
	MissedBytes uint64
	History     string
	OrigPkts    uint64
	OrigIPBytes uint64
	RespPkts    uint64
	RespIPBytes uint64
	Sensor      string // id of the sensor that observed the connection
}

// Time returns the connection start as a time.Time in UTC.
func (c *Conn) Time() time.Time { return time.UnixMicro(c.TS).UTC() }

// Transport is the transport protocol of a connection.
type Transport uint8

// Transport values; the zero value means the sensor did not know.
const (
	TransportUnknown Transport = iota
	TCP
	UDP
	ICMP
)

var transportNames = [...]string{"unknown_transport", "tcp", "udp", "icmp"}

func (t Transport) String() string {
	if int(t) < len(transportNames) {
		return transportNames[t]
	}
	return "invalid"
}

// ParseTransport maps Zeek's proto field to a Transport. Unrecognised names
// report ok=false.
func ParseTransport(s string) (Transport, bool) {
	switch s {
	case "tcp", "TCP":
		return TCP, true
	case "udp", "UDP":
		return UDP, true
	case "icmp", "ICMP", "icmp6", "ICMP6":
		return ICMP, true
	case "unknown_transport", "":
		return TransportUnknown, true
	}
	return TransportUnknown, false
}

// ConnState is Zeek's conn_state summary of a connection's TCP state machine.
type ConnState uint8

// ConnState values in Zeek's documented order; the zero value means unset.
const (
	StateUnset ConnState = iota
	S0                   // attempt seen, no reply
	S1                   // established, not terminated
	SF                   // normal establishment and termination
	REJ                  // attempt rejected
	S2                   // established, close attempt by originator only
	S3                   // established, close attempt by responder only
	RSTO                 // established, originator aborted
	RSTR                 // responder sent a RST
	RSTOS0               // originator sent SYN then RST, no SYN-ACK
	RSTRH                // responder sent SYN-ACK then RST, no SYN from originator
	SH                   // originator sent SYN then FIN, no SYN-ACK
	SHR                  // responder sent SYN-ACK then FIN, no SYN from originator
	OTH                  // no SYN, midstream traffic
)

var stateNames = [...]string{"", "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"}

func (s ConnState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "invalid"
}

// ParseConnState maps Zeek's conn_state text to a ConnState.
func ParseConnState(s string) (ConnState, bool) {
	for i, n := range stateNames {
		if n == s {
			return ConnState(i), true
		}
	}
	return StateUnset, false
}

// Failed reports whether the state is a connection attempt that never
// completed a handshake (S0, REJ and their reset variants).
func (s ConnState) Failed() bool {
	switch s {
	case S0, REJ, RSTOS0, RSTRH, SH, SHR:
		return true
	}
	return false
}

// Tristate is a boolean that may be unknown.
type Tristate uint8

// Tristate values.
const (
	Unknown Tristate = iota
	False
	True
)

// TristateOf converts a bool.
func TristateOf(b bool) Tristate {
	if b {
		return True
	}
	return False
}

func (t Tristate) String() string {
	switch t {
	case False:
		return "F"
	case True:
		return "T"
	}
	return "-"
}

// Batch is an ordered group of Conns that travels through the pipeline as
// one unit: one gRPC EventBatch or one chunk of a file.
type Batch struct {
	Sensor string // sensor that sent the batch
	Stream string // the sender's stream id; with Seq it names the batch uniquely
	Seq    uint64 // sender-assigned, increasing within a stream, starting at 1
	Conns  []Conn
}
