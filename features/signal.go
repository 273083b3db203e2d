package features

import (
	"fmt"
	"net/netip"
	"strings"
)

// SignalType names a Layer 1 signal. The names are the reference's.
type SignalType string

// Signal types. UC-01 lateral movement, UC-02 C2 beaconing, UC-07
// exfiltration, and the two that defenders expect beside them.
const (
	PortScan              SignalType = "PORT_SCAN"
	ConnectionSpike       SignalType = "CONNECTION_SPIKE"
	PrivilegedAccess      SignalType = "PRIVILEGED_ACCESS"
	HostSweep             SignalType = "HOST_SWEEP"
	FailedConnections     SignalType = "FAILED_CONNECTIONS"
	PeriodicBeacon        SignalType = "PERIODIC_BEACON"
	PersistentDestination SignalType = "PERSISTENT_DESTINATION"
	CommandExchange       SignalType = "COMMAND_EXCHANGE"
	DataStaging           SignalType = "DATA_STAGING"
	OutboundSpike         SignalType = "OUTBOUND_SPIKE"
	DestinationDiversity  SignalType = "DESTINATION_DIVERSITY"
)

// Severity is ordered: a higher value is more severe.
type Severity uint8

// Severities; the zero value is not a valid severity.
const (
	SeverityNone Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL"}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("Severity(%d)", s)
}

// ParseSeverity accepts the names String returns, in any case.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(n, s) && i > 0 {
			return Severity(i), nil
		}
	}
	return SeverityNone, fmt.Errorf("features: unknown severity %q", s)
}

// MarshalText writes the name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// Metric is one named measurement carried as evidence, e.g.
// {"unique_ports", 24}. Order is meaningful for display.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// Signal is a Layer 1 finding about one entity in one closed window: a
// behaviour worth correlating, not yet a detection. Signals are few (they
// pass thresholds), so they are plain Go values; the per-entity feature rows
// they come from travel as Arrow records.
type Signal struct {
	Type SignalType
	// Src is the internal host the signal is about.
	Src netip.Addr
	// Dst and DstPort are set for host-pair signals (beacon, persistence,
	// command exchange); zero otherwise.
	Dst     netip.Addr
	DstPort uint16
	// WindowStart and WindowEnd bound the window, microseconds since the
	// Unix epoch, [start, end).
	WindowStart, WindowEnd int64
	// FirstSeen and LastSeen are the event times of the first and last
	// connection that contributed.
	FirstSeen, LastSeen int64
	Severity            Severity
	// Value is the measured quantity the threshold was applied to (distinct
	// ports, z score, bytes, coefficient of variation...), Threshold the
	// threshold it crossed.
	Value, Threshold float64
	// Metrics are the evidence, in display order.
	Metrics []Metric
	// Dsts lists the destinations involved (bounded; Metrics holds counts).
	Dsts []netip.Addr
	// Ports lists destination ports involved (bounded).
	Ports []uint16
	// Services names services involved, e.g. "SSH", "SMB" for privileged access.
	Services []string
}

// Metric returns the value of the named metric and whether it is present.
func (s *Signal) Metric(name string) (float64, bool) {
	for _, m := range s.Metrics {
		if m.Name == name {
			return m.Value, true
		}
	}
	return 0, false
}
