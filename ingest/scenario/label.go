package scenario

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Kind is the class of a scenario instance's ground truth.
type Kind string

// Kinds. The three attack kinds are the use cases ndr detects; benign
// instances are look-alikes that must not be detected.
const (
	KindLateral Kind = "lateral"
	KindC2      Kind = "c2"
	KindExfil   Kind = "exfil"
	KindBenign  Kind = "benign"
	// KindKillChain is a host that went through C2, staging and
	// exfiltration; its C2 and exfiltration also have their own labels.
	KindKillChain Kind = "killchain"
)

// Scenario names, as they appear in Label.Scenario and instance ids.
const (
	ScenarioLateral     = "lateral"
	ScenarioC2          = "c2"
	ScenarioExfil       = "exfil"
	ScenarioLowSlow     = "low-slow"
	ScenarioNTP         = "ntp"
	ScenarioUpdateCheck = "update-check"
	ScenarioBackup      = "backup"
	ScenarioAdmin       = "admin"
	ScenarioCloudUpload = "cloud-upload"
	ScenarioBackground  = "background"
	ScenarioKillChain   = "kill-chain"
	ScenarioTelemetry   = "telemetry"
	ScenarioCloudSync   = "cloud-sync"
)

// Detection types a Label expects, spelled as scoring spells them. They
// are repeated here, not imported, because ingest is upstream of scoring.
const (
	ExpectLateralMovement  = "LATERAL_MOVEMENT"
	ExpectC2Beaconing      = "C2_BEACONING"
	ExpectDataExfiltration = "DATA_EXFILTRATION"
	ExpectKillChain        = "KILL_CHAIN"
)

// Label is the ground truth of one scenario instance. A detection is a
// true positive when its type is Expect, its source is in Hosts and, for
// C2, one of its destinations is in Dsts; a detection whose source is only
// in benign labels is a false positive.
type Label struct {
	ID       string `json:"id"` // scenario and index, e.g. "c2-0"
	Kind     Kind   `json:"kind"`
	Scenario string `json:"scenario"`
	// Expect is the detection type ndr should raise; empty for benign.
	Expect string `json:"expect,omitempty"`
	// Hosts originate the traffic: the attacker, or the benign actors.
	Hosts []netip.Addr `json:"hosts"`
	// Dsts are the instance's remote ends: C2 servers, exfiltration
	// drops, scanned hosts, backup or NTP servers. Background traffic
	// leaves it empty (its destinations are the whole web).
	Dsts  []netip.Addr `json:"dsts,omitempty"`
	Ports []uint16     `json:"ports,omitempty"`
	// Staging are the internal servers exfiltration read from.
	Staging []netip.Addr `json:"staging,omitempty"`
	// First and Last are the starts of the instance's first and last
	// connection in the run; zero when it produced none.
	First time.Time `json:"first,omitzero"`
	Last  time.Time `json:"last,omitzero"`
	// Conns and the byte totals count what the run contains.
	Conns     int    `json:"conns"`
	OrigBytes uint64 `json:"orig_bytes"`
	RespBytes uint64 `json:"resp_bytes"`
	// Params are the instance's numeric parameters (interval_s, jitter,
	// miss_rate, ...) for slicing benchmark results.
	Params map[string]float64 `json:"params,omitempty"`
}

// WriteLabels writes labels as a JSON array, one label per line, which
// diffs well and streams into jq.
func WriteLabels(w io.Writer, labels []Label) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("[")
	for i := range labels {
		if i > 0 {
			bw.WriteString(",")
		}
		bw.WriteString("\n")
		b, err := json.Marshal(&labels[i])
		if err != nil {
			return fmt.Errorf("write labels: %w", err)
		}
		bw.Write(b)
	}
	bw.WriteString("\n]\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write labels: %w", err)
	}
	return nil
}

// ReadLabels reads what WriteLabels wrote. Unknown keys are errors, so a
// labels file from a newer generator is not silently misread.
func ReadLabels(r io.Reader) ([]Label, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var labels []Label
	if err := dec.Decode(&labels); err != nil {
		return nil, fmt.Errorf("read labels: %w", err)
	}
	return labels, nil
}
