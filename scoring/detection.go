package scoring

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/netip"
	"time"

	"github.com/ndr-go/ndr/features"
)

// Detection is a correlated finding: one rule matched for one entity. It
// is created on the first match and updated (Count, Version, LastSeen,
// signals, evidence) by further matches within the rule's suppression
// window. Times are microseconds since the Unix epoch, UTC.
type Detection struct {
	// ID is deterministic: the rule id and a hash of the rule, the entity
	// and the earliest window of the signals that created it, e.g.
	// "LM-001-3f9a0c1b2d4e". Replay and live runs give the same id.
	ID     string
	RuleID string
	// Type is the rule's detection type, e.g. LATERAL_MOVEMENT.
	Type string
	Src  netip.Addr
	// Dsts are the destinations of the contributing signals, sorted,
	// at most maxDsts.
	Dsts []netip.Addr
	// FirstSeen and LastSeen span the contributing connections (the
	// signals' FirstSeen and LastSeen, or their windows when unset).
	FirstSeen, LastSeen int64
	Severity            features.Severity
	// Confidence in [0, 1] and Score in [0, 100]; see assess.
	Confidence float64
	Score      int
	// Signals are the contributing signals in event-time order, at most
	// maxSignals; Evidence.Summary.SignalCounts counts all of them.
	Signals            []SignalRef
	Evidence           Evidence
	MITRE              MITRE
	RecommendedActions []string
	// Count is how many matches the detection stands for: 1 on creation,
	// one more per update.
	Count int
	// Version increases with every update, starting at 1, so that a store
	// keyed by ID keeps the latest (ClickHouse ReplacingMergeTree(version)).
	Version uint64
}

// SignalRef is a contributing signal as a detection lists it: what, how
// bad, when, and the measurement that crossed the threshold.
type SignalRef struct {
	Type                   features.SignalType
	Severity               features.Severity
	WindowStart, WindowEnd int64
	Dst                    netip.Addr
	DstPort                uint16
	Value, Threshold       float64
}

// Evidence is why the detection fired: per signal the metrics, and
// detection-level totals.
type Evidence struct {
	Summary Summary
	Signals []SignalEvidence
	// Deviations say which feature deviated from which baseline by how
	// much: per signal type and feature the largest, sorted.
	Deviations []Deviation
}

// Summary is the detection-level evidence. Volumes and distinct counts
// are the largest any contributing signal reported (its metric, or the
// length of its bounded lists), not sums: signals of one window describe
// the same connections. Ports and Services are unions.
type Summary struct {
	// RequiredSignals is how many signal types the rule requires,
	// MatchedSignals how many of them are present: fewer for a partial
	// match.
	RequiredSignals, MatchedSignals int
	// SignalCounts counts contributing signals by type, including those
	// beyond the Signals list's bound.
	SignalCounts map[features.SignalType]int
	// SpanSeconds is the spread of the signals' event times (WindowEnd),
	// the reference's "time delta", at creation.
	SpanSeconds          float64
	Connections          uint64
	BytesOut, BytesIn    uint64
	BytesStaged          uint64
	DistinctDestinations int
	DistinctPorts        int
	Ports                []uint16
	Services             []string
}

// SignalEvidence is one contributing signal's evidence.
type SignalEvidence struct {
	Type      features.SignalType
	WindowEnd int64
	Dst       netip.Addr
	DstPort   uint16
	Metrics   []features.Metric
	Dsts      []netip.Addr
	Ports     []uint16
	Services  []string
}

// The JSON shape. Field names are the (detection_id, type, src_ip,
// dst_ips, first_seen, last_seen, severity, confidence, score, signals,
// evidence, mitre) plus rule_id, recommended_actions and count. Times are
// RFC 3339 in UTC with the fraction Zeek gave (RFC3339Nano trims zeros).
// Version is not written: count orders the lines of one detection, and the
// store carries Version itself.

type detectionJSON struct {
	ID                 string            `json:"detection_id"`
	RuleID             string            `json:"rule_id"`
	Type               string            `json:"type"`
	Src                netip.Addr        `json:"src_ip"`
	Dsts               []netip.Addr      `json:"dst_ips"`
	FirstSeen          jsonTime          `json:"first_seen"`
	LastSeen           jsonTime          `json:"last_seen"`
	Severity           features.Severity `json:"severity"`
	Confidence         float64           `json:"confidence"`
	Score              int               `json:"score"`
	Signals            []signalJSON      `json:"signals"`
	Evidence           evidenceJSON      `json:"evidence"`
	MITRE              MITRE             `json:"mitre"`
	RecommendedActions []string          `json:"recommended_actions"`
	Count              int               `json:"count"`
}

type windowJSON struct {
	Start jsonTime `json:"start"`
	End   jsonTime `json:"end"`
}

type signalJSON struct {
	Type      features.SignalType `json:"type"`
	Severity  features.Severity   `json:"severity"`
	Window    windowJSON          `json:"window"`
	Dst       netip.Addr          `json:"dst_ip,omitzero"`
	DstPort   uint16              `json:"dst_port,omitempty"`
	Value     float64             `json:"value"`
	Threshold float64             `json:"threshold"`
}

type evidenceJSON struct {
	Summary    summaryJSON          `json:"summary"`
	Signals    []signalEvidenceJSON `json:"signals"`
	Deviations []deviationJSON      `json:"deviations,omitempty"`
}

type deviationJSON struct {
	Signal   features.SignalType `json:"signal"`
	Feature  string              `json:"feature"`
	Baseline string              `json:"baseline"`
	Observed float64             `json:"observed"`
	Expected float64             `json:"expected"`
	Ratio    float64             `json:"ratio"`
	Z        float64             `json:"z"`
	TailProb float64             `json:"tail_prob"`
}

type summaryJSON struct {
	RequiredSignals      int                         `json:"required_signals"`
	MatchedSignals       int                         `json:"matched_signals"`
	SignalCounts         map[features.SignalType]int `json:"signal_counts"`
	SpanSeconds          float64                     `json:"span_seconds"`
	Connections          uint64                      `json:"connections"`
	BytesOut             uint64                      `json:"bytes_out"`
	BytesIn              uint64                      `json:"bytes_in"`
	BytesStaged          uint64                      `json:"bytes_staged"`
	DistinctDestinations int                         `json:"distinct_destinations"`
	DistinctPorts        int                         `json:"distinct_ports"`
	Ports                []uint16                    `json:"ports"`
	Services             []string                    `json:"services"`
}

type signalEvidenceJSON struct {
	Type      features.SignalType `json:"type"`
	WindowEnd jsonTime            `json:"window_end"`
	Dst       netip.Addr          `json:"dst_ip,omitzero"`
	DstPort   uint16              `json:"dst_port,omitempty"`
	Metrics   []features.Metric   `json:"metrics"`
	Dsts      []netip.Addr        `json:"dst_ips,omitempty"`
	Ports     []uint16            `json:"ports,omitempty"`
	Services  []string            `json:"services,omitempty"`
}

// jsonTime is microseconds since the epoch, written as RFC 3339.
type jsonTime int64

func (t jsonTime) MarshalText() ([]byte, error) {
	return time.UnixMicro(int64(t)).UTC().AppendFormat(nil, time.RFC3339Nano), nil
}

func (t *jsonTime) UnmarshalText(b []byte) error {
	v, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return err
	}
	*t = jsonTime(v.UnixMicro())
	return nil
}

// nonNil keeps empty lists as [] in JSON, which consumers index without a
// null check.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// MarshalJSON writes the detection in the JSON lines shape.
func (d Detection) MarshalJSON() ([]byte, error) {
	j := detectionJSON{
		ID: d.ID, RuleID: d.RuleID, Type: d.Type, Src: d.Src, Dsts: nonNil(d.Dsts),
		FirstSeen: jsonTime(d.FirstSeen), LastSeen: jsonTime(d.LastSeen),
		Severity: d.Severity, Confidence: round3(d.Confidence), Score: d.Score,
		Signals: make([]signalJSON, len(d.Signals)), MITRE: d.MITRE,
		RecommendedActions: nonNil(d.RecommendedActions), Count: d.Count,
	}
	j.MITRE.Techniques = nonNil(j.MITRE.Techniques)
	for i, s := range d.Signals {
		j.Signals[i] = signalJSON{
			Type: s.Type, Severity: s.Severity,
			Window: windowJSON{jsonTime(s.WindowStart), jsonTime(s.WindowEnd)},
			Dst:    s.Dst, DstPort: s.DstPort, Value: finite(s.Value), Threshold: finite(s.Threshold),
		}
	}
	sm := d.Evidence.Summary
	j.Evidence.Summary = summaryJSON{
		RequiredSignals: sm.RequiredSignals, MatchedSignals: sm.MatchedSignals,
		SignalCounts: sm.SignalCounts, SpanSeconds: sm.SpanSeconds, Connections: sm.Connections,
		BytesOut: sm.BytesOut, BytesIn: sm.BytesIn, BytesStaged: sm.BytesStaged,
		DistinctDestinations: sm.DistinctDestinations, DistinctPorts: sm.DistinctPorts,
		Ports: nonNil(sm.Ports), Services: nonNil(sm.Services),
	}
	if j.Evidence.Summary.SignalCounts == nil {
		j.Evidence.Summary.SignalCounts = map[features.SignalType]int{}
	}
	j.Evidence.Signals = make([]signalEvidenceJSON, len(d.Evidence.Signals))
	for i, s := range d.Evidence.Signals {
		ms := make([]features.Metric, len(s.Metrics))
		for k, m := range s.Metrics {
			ms[k] = features.Metric{Name: m.Name, Value: finite(m.Value)}
		}
		j.Evidence.Signals[i] = signalEvidenceJSON{
			Type: s.Type, WindowEnd: jsonTime(s.WindowEnd), Dst: s.Dst, DstPort: s.DstPort,
			Metrics: ms, Dsts: s.Dsts, Ports: s.Ports, Services: s.Services,
		}
	}
	for _, v := range d.Evidence.Deviations {
		j.Evidence.Deviations = append(j.Evidence.Deviations, deviationJSON{
			Signal: v.Signal, Feature: v.Feature, Baseline: v.Baseline, Observed: finite(v.Observed),
			Expected: finite(v.Expected), Ratio: finite(v.Ratio), Z: finite(v.Z), TailProb: finite(v.TailProb),
		})
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote (Version is not in JSON and
// stays 0), so tools can read detections files back.
func (d *Detection) UnmarshalJSON(b []byte) error {
	var j detectionJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*d = Detection{
		ID: j.ID, RuleID: j.RuleID, Type: j.Type, Src: j.Src, Dsts: j.Dsts,
		FirstSeen: int64(j.FirstSeen), LastSeen: int64(j.LastSeen),
		Severity: j.Severity, Confidence: j.Confidence, Score: j.Score,
		MITRE: j.MITRE, RecommendedActions: j.RecommendedActions, Count: j.Count,
	}
	for _, s := range j.Signals {
		d.Signals = append(d.Signals, SignalRef{
			Type: s.Type, Severity: s.Severity, WindowStart: int64(s.Window.Start), WindowEnd: int64(s.Window.End),
			Dst: s.Dst, DstPort: s.DstPort, Value: s.Value, Threshold: s.Threshold,
		})
	}
	sm := j.Evidence.Summary
	d.Evidence.Summary = Summary{
		RequiredSignals: sm.RequiredSignals, MatchedSignals: sm.MatchedSignals,
		SignalCounts: sm.SignalCounts, SpanSeconds: sm.SpanSeconds, Connections: sm.Connections,
		BytesOut: sm.BytesOut, BytesIn: sm.BytesIn, BytesStaged: sm.BytesStaged,
		DistinctDestinations: sm.DistinctDestinations, DistinctPorts: sm.DistinctPorts,
		Ports: sm.Ports, Services: sm.Services,
	}
	for _, s := range j.Evidence.Signals {
		d.Evidence.Signals = append(d.Evidence.Signals, SignalEvidence{
			Type: s.Type, WindowEnd: int64(s.WindowEnd), Dst: s.Dst, DstPort: s.DstPort,
			Metrics: s.Metrics, Dsts: s.Dsts, Ports: s.Ports, Services: s.Services,
		})
	}
	for _, v := range j.Evidence.Deviations {
		d.Evidence.Deviations = append(d.Evidence.Deviations, Deviation(v))
	}
	return nil
}

// round3 keeps confidence stable in text: float noise in the last digits
// would make golden files and diffs flap.
func round3(x float64) float64 { return math.Round(finite(x)*1000) / 1000 }

// finite maps NaN and infinities, which JSON cannot carry, to 0: a
// malformed metric must not make the whole detection unwritable.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}

// WriteJSONLines writes detections as JSON lines, one per detection.
func WriteJSONLines(w io.Writer, ds []Detection) error {
	bw := bufio.NewWriter(w)
	for i := range ds {
		b, err := ds[i].MarshalJSON()
		if err != nil {
			return fmt.Errorf("encode detection %s: %w", ds[i].ID, err)
		}
		bw.Write(b)
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write detections: %w", err)
	}
	return nil
}

// ReadJSONLines reads detections written by WriteJSONLines or the JSON
// lines sink; blank lines are skipped.
func ReadJSONLines(r io.Reader) ([]Detection, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var out []Detection
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var d Detection
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return nil, fmt.Errorf("read detections: line %d: %w", line, err)
		}
		out = append(out, d)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read detections: %w", err)
	}
	return out, nil
}

// clone returns a deep copy, so that what a Sink keeps shares nothing with
// the engine's state.
func (d *Detection) clone() Detection {
	c := *d
	c.Dsts = cloneSlice(d.Dsts)
	c.Signals = cloneSlice(d.Signals)
	c.RecommendedActions = cloneSlice(d.RecommendedActions)
	c.MITRE.Techniques = make([]Technique, len(d.MITRE.Techniques))
	for i, t := range d.MITRE.Techniques {
		t.SubTechniques = cloneSlice(t.SubTechniques)
		c.MITRE.Techniques[i] = t
	}
	if d.MITRE.Techniques == nil {
		c.MITRE.Techniques = nil
	}
	sm := &c.Evidence.Summary
	if d.Evidence.Summary.SignalCounts != nil {
		sm.SignalCounts = make(map[features.SignalType]int, len(d.Evidence.Summary.SignalCounts))
		for k, v := range d.Evidence.Summary.SignalCounts {
			sm.SignalCounts[k] = v
		}
	}
	sm.Ports = cloneSlice(sm.Ports)
	sm.Services = cloneSlice(sm.Services)
	c.Evidence.Signals = make([]SignalEvidence, len(d.Evidence.Signals))
	for i, s := range d.Evidence.Signals {
		s.Metrics = cloneSlice(s.Metrics)
		s.Dsts = cloneSlice(s.Dsts)
		s.Ports = cloneSlice(s.Ports)
		s.Services = cloneSlice(s.Services)
		c.Evidence.Signals[i] = s
	}
	if d.Evidence.Signals == nil {
		c.Evidence.Signals = nil
	}
	c.Evidence.Deviations = cloneSlice(d.Evidence.Deviations)
	return c
}

func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append([]T(nil), s...)
}
