package baseline

import (
	"errors"
	"time"
)

// Errors reported by baseline.
var (
	// ErrCorrupt: an encoded snapshot is truncated, of an unknown format,
	// or inconsistent.
	ErrCorrupt = errors.New("baseline: corrupt snapshot")
	// ErrBadWindow: a data window whose end is not after its start.
	ErrBadWindow = errors.New("baseline: empty data window")
	// ErrUnsorted: a host's hours are not strictly increasing or its value
	// columns do not match them.
	ErrUnsorted = errors.New("baseline: host hours not sorted")
	// ErrBuilt: the Builder was used after Build.
	ErrBuilt = errors.New("baseline: builder already built")
	// ErrNoSnapshot: the store holds no snapshot yet.
	ErrNoSnapshot = errors.New("baseline: no snapshot")
)

// Metric is a per-host hourly quantity with a model.
type Metric uint8

// Metrics. Their names are the values of ndr.baseline_hosts.metric.
const (
	// Connections: connections the host originated in the hour.
	Connections Metric = iota
	// BytesOutExternal: orig_bytes the host sent to external destinations.
	BytesOutExternal
	// ExternalDestinations: distinct external destinations contacted.
	ExternalDestinations
	// InternalDestinations: distinct internal destinations contacted: the
	// host's fan-out.
	InternalDestinations
	// AdminConnections: connections to AdminPorts of internal hosts.
	AdminConnections

	// NumMetrics counts the metrics.
	NumMetrics = 5
)

var metricNames = [NumMetrics]string{
	"connections", "bytes_out_external", "external_destinations", "internal_destinations", "admin_connections",
}

// String is the metric's name (e.g. "bytes_out_external").
func (m Metric) String() string {
	if int(m) < NumMetrics {
		return metricNames[m]
	}
	return "invalid"
}

// ParseMetric maps a name from String back to the Metric.
func ParseMetric(s string) (Metric, bool) {
	for i, n := range metricNames {
		if n == s {
			return Metric(i), true
		}
	}
	return 0, false
}

// AdminPorts are the remote administration ports whose use is modelled
// (AdminConnections, Snapshot.AdminPorts): SSH, Telnet, MS RPC, NetBIOS,
// SMB, RDP, VNC, WinRM over HTTP and HTTPS. Elastic's "sensitive ports"
// list without the directory and file-transfer ones. Bit i of an admin
// mask is AdminPorts()[i]; migration 0004 spells the same list.
func AdminPorts() [9]uint16 { return [9]uint16{22, 23, 135, 139, 445, 3389, 5900, 5985, 5986} }

// adminBit returns the mask bit of port p, or 0.
func adminBit(p uint16) uint16 {
	for i, a := range AdminPorts() {
		if a == p {
			return 1 << uint(i)
		}
	}
	return 0
}

// HoursPerWeek is the number of hour-of-week slots.
const HoursPerWeek = 168

// HourOfWeek is t's hour of the week in UTC: 0 is Monday 00:00-01:00, 167
// Sunday 23:00-24:00. Models are seasonal in UTC; a site's local hours are
// a fixed relabelling of these (daylight saving shifts them by one hour
// twice a year, which the hour-of-day offsets absorb over a few days).
func HourOfWeek(t time.Time) int { return hourOfWeek(floorDiv(t.Unix(), 3600)) }

// hourOfWeek of a Unix hour (seconds/3600): the epoch was a Thursday,
// three days after a Monday.
func hourOfWeek(unixHour int64) int { return int(floorMod(unixHour+72, HoursPerWeek)) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }
