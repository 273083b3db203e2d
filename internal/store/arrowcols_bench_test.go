package store

import (
	"context"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest/scenario"
)

// featureRecords runs the features engine over an hour of the mixed
// scenario (200 hosts) and keeps the pair and host records it emits.
func featureRecords(tb testing.TB) (hosts, pairs []arrow.Record) {
	tb.Helper()
	spec, err := scenario.Preset("mixed", 1, time.Time{}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	spec.Background.Hosts = 200
	conns, _, err := scenario.Generate(spec)
	if err != nil {
		tb.Fatal(err)
	}
	keep := features.EmitterFunc(func(_ context.Context, out *features.WindowOutput) error {
		if out.Hosts != nil && out.Hosts.NumRows() > 0 {
			out.Hosts.Retain()
			hosts = append(hosts, out.Hosts)
		}
		if out.Pairs != nil && out.Pairs.NumRows() > 0 {
			out.Pairs.Retain()
			pairs = append(pairs, out.Pairs)
		}
		return nil
	})
	e, err := features.NewEngine(features.DefaultConfig(), keep, nil, memory.DefaultAllocator)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < len(conns); i += 4096 {
		if err := e.Process(tb.Context(), conns[i:min(i+4096, len(conns))]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := e.Flush(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		for _, r := range append(hosts, pairs...) {
			r.Release()
		}
	})
	return hosts, pairs
}

// BenchmarkArrowTableAdd copies the pair feature rows the engine emits
// into insert columns, as AnalysisWriter.AddFeatures does, and empties the
// table as a flush does: the Arrow-to-ClickHouse step of serve and replay.
func BenchmarkArrowTableAdd(b *testing.B) {
	_, pairs := featureRecords(b)
	t, err := newArrowTable("pair_features", features.PairSchema())
	if err != nil {
		b.Fatal(err)
	}
	rows := 0
	for _, r := range pairs {
		rows += int(r.NumRows())
	}
	if rows == 0 {
		b.Fatal("no pair rows")
	}
	all := func(int) bool { return true }
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, r := range pairs {
			if err := t.add(r, all); err != nil {
				b.Fatal(err)
			}
		}
		t = t.fresh()
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}
