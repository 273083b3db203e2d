package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/ndr-go/ndr/baseline"
	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest/scenario"
	"github.com/ndr-go/ndr/scoring"
)

// transcript records, in order, everything an Analyzer outputs.
type transcript struct{ lines []string }

func (t *transcript) AddSignals(_ context.Context, sigs []features.Signal) error {
	for _, s := range sigs {
		t.lines = append(t.lines, fmt.Sprintf("signal %+v", s))
	}
	return nil
}

func (t *transcript) AddFeatures(_ context.Context, out *features.WindowOutput) error {
	t.lines = append(t.lines, fmt.Sprintf("window %d wm %d %v", out.End, out.Watermark, out.Windows))
	for _, r := range []arrow.Record{out.Hosts, out.Pairs} {
		for i := range int(r.NumRows()) {
			var b strings.Builder
			for _, col := range r.Columns() {
				b.WriteString(col.ValueStr(i))
				b.WriteByte(' ')
			}
			t.lines = append(t.lines, b.String())
		}
	}
	return nil
}

func (t *transcript) Emit(_ context.Context, ev scoring.Event) error {
	j, err := json.Marshal(ev.Detection)
	if err != nil {
		return err
	}
	t.lines = append(t.lines, fmt.Sprintf("detection %v %s", ev.Kind, j))
	return nil
}

// TestParallelMatchesSerial: Process in parallel (Layer 1 beside the
// scorers and the Learner) gives exactly the outputs of the serial one, in
// the same order, with event-time learning installing snapshots along the
// way.
func TestParallelMatchesSerial(t *testing.T) {
	t.Parallel()
	spec, err := scenario.Preset("mixed", 3, time.Date(2026, 2, 6, 0, 0, 0, 0, time.UTC), 20*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	spec.Background.Hosts = 40
	conns, _, err := scenario.Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := scoring.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	run := func(parallel bool) ([]string, baseline.LearnerStats) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		var reg baseline.Registry
		lc := baseline.DefaultLearnerConfig()
		lc.MinHistory, lc.RefitEvery = 6*time.Hour, time.Hour
		cfg := Config{Features: features.DefaultConfig(), Rules: rules, Baselines: &reg, Learn: &lc, Serial: !parallel}
		tr := &transcript{}
		an, err := NewAnalyzer(cfg, Outputs{Signals: tr, Features: tr, Detections: []scoring.Sink{tr}}, slog.New(slog.DiscardHandler), mem)
		if err != nil {
			t.Fatal(err)
		}
		if parallel {
			an.parallel = true // even where GOMAXPROCS is 1
		} else if an.parallel {
			t.Fatal("Config.Serial did not make the Analyzer serial")
		}
		for i := 0; i < len(conns); i += 3000 {
			if err := an.Process(t.Context(), conns[i:min(i+3000, len(conns))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := an.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		return tr.lines, an.LearnerStats()
	}
	want, wantSt := run(false)
	got, gotSt := run(true)
	if wantSt.Fits < 5 {
		t.Fatalf("only %d fits: the learner must install snapshots during the run", wantSt.Fits)
	}
	var dets int
	for _, l := range want {
		if strings.HasPrefix(l, "detection") {
			dets++
		}
	}
	if dets == 0 {
		t.Fatal("no detections to compare")
	}
	if gotSt != wantSt {
		t.Errorf("learner stats %+v, serial %+v", gotSt, wantSt)
	}
	if !slices.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		g, w := "(end)", "(end)"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		t.Fatalf("parallel output differs from serial at line %d of %d/%d:\n got %s\nwant %s", i, len(got), len(want), g, w)
	}
	t.Logf("%d conns, %d output lines, %d detection events, %d fits: identical", len(conns), len(want), dets, wantSt.Fits)
}
