package scoring

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/scenario"
)

// runPipeline streams a generated scenario through Layer 1 with its
// default configuration and this engine with the default rules, as
// `ndr replay` wires them, and returns the detections and the labels.
func runPipeline(t *testing.T, spec scenario.Spec) ([]Detection, []scenario.Label) {
	t.Helper()
	ctx := context.Background()
	var c Collector
	se, err := NewEngine(defaultRules(t), &c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fe, err := features.NewEngine(features.DefaultConfig(), se, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]ingest.Conn, 0, 1024)
	labels, err := scenario.Stream(spec, func(c *ingest.Conn) error {
		batch = append(batch, *c)
		if len(batch) < cap(batch) {
			return nil
		}
		err := fe.Process(ctx, batch)
		batch = batch[:0]
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := fe.Process(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := fe.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := se.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return c.Detections(), labels
}

// covers reports whether label l is the ground truth of detection d: the
// expected type, the attacker as source and, for C2, the server among the
// destinations.
func covers(l scenario.Label, d Detection) bool {
	if l.Expect != d.Type || !slices.Contains(l.Hosts, d.Src) {
		return false
	}
	if l.Kind == scenario.KindC2 {
		return slices.ContainsFunc(d.Dsts, func(a netip.Addr) bool { return slices.Contains(l.Dsts, a) })
	}
	return true
}

// TestPipelineScenarios scores the generator's presets end to end: every
// lateral, C2 and staged-exfiltration instance is detected, and every
// detection is explained by an attack label. Low-and-slow exfiltration is
// below EXFIL-001's thresholds by design (no staging, no spike) and is
// left to the benchmark.
func TestPipelineScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run")
	}
	for _, tc := range []struct {
		preset string
		d      time.Duration
	}{
		{"lateral", 0}, {"c2", 0}, {"exfil", 0}, {"mixed", 4 * time.Hour},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			spec, err := scenario.Preset(tc.preset, 1, time.Time{}, tc.d)
			if err != nil {
				t.Fatal(err)
			}
			ds, labels := runPipeline(t, spec)
			for _, l := range labels {
				if l.Kind == scenario.KindBenign || l.Scenario == scenario.ScenarioLowSlow {
					continue
				}
				if !slices.ContainsFunc(ds, func(d Detection) bool { return covers(l, d) }) {
					t.Errorf("missed %s (%s from %v)", l.ID, l.Expect, l.Hosts)
				}
			}
			for _, d := range ds {
				if !slices.ContainsFunc(labels, func(l scenario.Label) bool { return l.Kind != scenario.KindBenign && covers(l, d) }) {
					t.Errorf("false positive: %s %s from %s to %v", d.ID, d.Type, d.Src, d.Dsts)
				}
			}
		})
	}
}
