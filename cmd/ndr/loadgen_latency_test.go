package main

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/loadgen"
	"github.com/ndr-go/ndr/ingest/scenario"
)

func TestWindowsEnd(t *testing.T) {
	js := `{"signals":[{"window":{"start":"2026-11-23T00:20:00Z","end":"2026-11-23T00:25:00Z"}},{"window":{"start":"2026-11-23T00:24:00Z","end":"2026-11-23T00:34:00Z"}}]}`
	if got, want := windowsEnd(js), time.Date(2026, 11, 23, 0, 34, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("windowsEnd = %v, want %v", got, want)
	}
	if !windowsEnd(`{"signals":[]}`).IsZero() || !windowsEnd("not json").IsZero() {
		t.Error("no windows: want the zero time")
	}
}

// TestDetectionLatencies: the pipeline's delay counts from the handover of
// the first event past the last window's end plus the lateness, capped at
// the newest event sent; the evidence latency from last_seen's handover.
func TestDetectionLatencies(t *testing.T) {
	spec, err := scenario.Preset("mixed", 1, time.Date(2026, 2, 6, 10, 0, 0, 0, time.UTC), 20*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	spec.Background.Hosts = 20
	corpus, err := loadgen.NewCorpus(spec)
	if err != nil {
		t.Fatal(err)
	}
	// A fake clock: every batch is handed over one second after the last.
	clock := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	run, err := loadgen.NewRun(t.Context(), corpus, loadgen.Plan{Streams: 1, Copies: 1, Duration: time.Hour, MaxLead: time.Hour,
		EventTimeLimit: corpus.Start().Add(corpus.Span())}, now)
	if err != nil {
		t.Fatal(err)
	}
	run.Start()
	src := run.Sources()[0]
	var b ingest.Batch
	var firsts, lasts []int64
	var at []time.Time
	for {
		b.Conns = b.Conns[:0]
		_, err := src.Next(&b, 100)
		if len(b.Conns) > 0 {
			firsts, lasts = append(firsts, b.Conns[0].TS), append(lasts, b.Conns[len(b.Conns)-1].TS)
			at = append(at, clock)
		}
		if err == io.EOF {
			break
		}
	}
	if len(at) < 10 {
		t.Fatalf("only %d batches", len(at))
	}
	host := netip.MustParseAddr("10.10.0.1")
	lateness := 30 * time.Second
	// A detection whose evidence ends in batch 2, whose last window closes
	// (with the lateness) in batch 5's span, delivered 300 ms after batch 8.
	lastSeen := time.UnixMicro(lasts[2])
	closed := time.UnixMicro(firsts[5] + 1).Add(-lateness)
	delivered := at[8].Add(300 * time.Millisecond)
	w := &detectionWatch{seen: map[string]watched{"d": {src: host, lastSeen: lastSeen, closed: closed, at: delivered}}, done: make(chan struct{})}
	close(w.done)
	var detect, evidence, waited loadgen.Latencies
	if n := w.latencies(run, lateness, &detect, &evidence, &waited); n != 1 {
		t.Fatalf("%d detections", n)
	}
	if got, want := detect.Percentile(50), delivered.Sub(at[5]); got != want {
		t.Errorf("event-to-detection %v, want %v (from batch 5's handover)", got, want)
	}
	if got, want := evidence.Percentile(50), delivered.Sub(at[2]); got != want {
		t.Errorf("from the last evidence %v, want %v (from batch 2's handover)", got, want)
	}
	if got, want := waited.Percentile(50), time.UnixMicro(lasts[8]).Sub(lastSeen); got != want {
		t.Errorf("event time waited %v, want %v", got, want)
	}

	// Decided before its windows could close: counted from the newest
	// event sent, never negative.
	w.seen["d"] = watched{src: host, lastSeen: lastSeen, closed: time.UnixMicro(lasts[len(lasts)-1]).Add(time.Hour), at: delivered}
	detect = loadgen.Latencies{}
	w.latencies(run, lateness, &detect, &evidence, &waited)
	if got := detect.Percentile(50); got != 300*time.Millisecond {
		t.Errorf("early detection: %v, want 300ms from the newest handover", got)
	}
}
