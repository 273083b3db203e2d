package hunt_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/scenario"
	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/pipeline"
	"github.com/ndr-go/ndr/internal/store"
	"github.com/ndr-go/ndr/scoring"
)

// seeded is a database filled by the real pipeline (store writers,
// Layer 1, correlation) from a generated day, and what was generated.
type seeded struct {
	st         *store.Store
	conns      []ingest.Conn
	labels     map[string]scenario.Label // by id: "c2-0", "exfil-0", ...
	detections []scoring.Detection       // latest versions, as replay collects them
}

// secondBeaconSrc is a host that calls the same C2 server for half an
// hour, so that "who else talked to it" has an answer.
var secondBeaconSrc = netip.MustParseAddr("10.10.9.9")

// hunterDay is the "mixed" preset (every attack and look-alike over
// 24 h) with 8 workstations, plus a second, short beacon to the C2
// server.
func hunterDay(t testing.TB) scenario.Spec {
	t.Helper()
	spec, err := scenario.Preset("mixed", 1, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	spec.Background.Hosts = 8
	b := scenario.DefaultBeacon()
	b.Src, b.Dst = secondBeaconSrc, spec.C2[0].Dst
	b.Offset, b.Length = 20*time.Hour, 30*time.Minute
	spec.C2 = append(spec.C2, b)
	return spec
}

// seed runs spec through the pipeline into a fresh database, as `ndr
// replay` does.
func seed(t *testing.T, spec scenario.Spec) *seeded {
	t.Helper()
	ctx := t.Context()
	st := chtest.OpenStore(t)
	conns, labels, err := scenario.Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	s := &seeded{st: st, conns: conns, labels: map[string]scenario.Label{}}
	for _, l := range labels {
		s.labels[l.ID] = l
	}
	cw, err := st.NewConnWriter(st.Config().Writer)
	if err != nil {
		t.Fatal(err)
	}
	if err := cw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	aw, err := st.NewAnalysisWriter(st.Config().Writer)
	if err != nil {
		t.Fatal(err)
	}
	aw.Start(ctx)
	rules, err := scoring.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	collector := &scoring.Collector{}
	outs := pipeline.Outputs{Signals: aw, Features: aw, Detections: []scoring.Sink{collector,
		scoring.SinkFunc(func(ctx context.Context, ev scoring.Event) error { return aw.AddDetection(ctx, ev.Detection) })}}
	logger := chtest.Logger(t)
	an, err := pipeline.NewAnalyzer(pipeline.Config{Features: features.DefaultConfig(), Rules: rules}, outs, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	tee := pipeline.NewTee(cw, an, 16, logger)
	tee.Start(ctx)
	// On a failure below, stop every goroutine before the test ends (they
	// log to t). Shutdown is safe to repeat.
	t.Cleanup(func() {
		sctx := context.WithoutCancel(ctx)
		tee.Shutdown(sctx)
		aw.Shutdown(sctx)
		cw.Shutdown(sctx)
	})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	const batch = 8192
	for i, seq := 0, uint64(1); i < len(conns); i, seq = i+batch, seq+1 {
		b := &ingest.Batch{Sensor: "test", Stream: "seed", Seq: seq, Conns: conns[i:min(i+batch, len(conns))]}
		wg.Add(1)
		if err := tee.Write(ctx, b, func(err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cw.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, stop := range []func(context.Context) error{tee.Shutdown, aw.Shutdown, cw.Shutdown} {
		if err := stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st := aw.Stats(); st.Failures > 0 {
		t.Fatalf("analysis writer: %d failed inserts", st.Failures)
	}
	s.detections = collector.Detections()
	return s
}
