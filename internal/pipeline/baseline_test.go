package pipeline

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/ndr-go/ndr/baseline"
	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/scoring"
)

type signalCounter struct {
	byDay map[int]int // OUTBOUND_SPIKE signals per day since start
	start time.Time
}

func (c *signalCounter) AddSignals(_ context.Context, sigs []features.Signal) error {
	for _, s := range sigs {
		if s.Type == features.OutboundSpike {
			c.byDay[int(time.UnixMicro(s.WindowStart).Sub(c.start)/(24*time.Hour))]++
		}
	}
	return nil
}

// A host that always uploads 200 MB every 5 minutes is an OUTBOUND_SPIKE
// against the prior (50 ± 25 MB: z 6). Replayed with event-time learning,
// it stops being one once a day of history has taught its baseline;
// without learning it stays one.
func TestEventTimeLearningQuietsSpikes(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	src, dst := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("203.0.113.5")
	web := netip.MustParseAddr("198.18.0.1")
	var conns []ingest.Conn
	for i := range 2 * 24 * 60 {
		ts := start.Add(time.Duration(i) * time.Minute).UnixMicro()
		if i%5 == 0 {
			conns = append(conns, ingest.Conn{TS: ts, UID: "u", OrigH: src, RespH: dst, RespP: 443, Proto: ingest.TCP,
				OrigBytes: 200e6, RespBytes: 1e4, ConnState: ingest.SF})
		}
		// Another host browsing, so the population is not the uploader alone.
		conns = append(conns, ingest.Conn{TS: ts + 7, UID: "w", OrigH: netip.MustParseAddr("10.0.0.6"), RespH: web, RespP: 443,
			Proto: ingest.TCP, OrigBytes: 2e3, RespBytes: 5e4, ConnState: ingest.SF})
	}
	rules, err := scoring.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		learn            bool
		day0, day1, day2 int // OUTBOUND_SPIKE signals per day; -1: at least one
	}{
		{learn: false, day0: -1, day1: -1, day2: -1},
		{learn: true, day0: -1, day1: 0, day2: 0},
	} {
		counter := &signalCounter{byDay: map[int]int{}, start: start}
		cfg := Config{Features: features.DefaultConfig(), Rules: rules}
		var reg baseline.Registry
		if tc.learn {
			lc := baseline.DefaultLearnerConfig()
			cfg.Baselines, cfg.Learn = &reg, &lc
		}
		an, err := NewAnalyzer(cfg, Outputs{Signals: counter}, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(conns); i += 500 {
			if err := an.Process(t.Context(), conns[i:min(i+500, len(conns))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := an.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		for day, want := range []int{tc.day0, tc.day1} {
			got := counter.byDay[day]
			if (want < 0 && got == 0) || (want >= 0 && got != want) {
				t.Errorf("learn %v, day %d: %d OUTBOUND_SPIKE signals, want %d (-1: some)", tc.learn, day, got, want)
			}
		}
		if st := an.LearnerStats(); tc.learn && (st.Fits < 4 || reg.Version() != st.Fits) {
			t.Errorf("learner stats %+v, registry version %d", st, reg.Version())
		}
	}
}
