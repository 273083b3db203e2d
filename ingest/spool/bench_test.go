package spool

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/ndr-go/ndr/ingest"
)

type nopInserter struct{}

func (nopInserter) WriteChunk(_ context.Context, _ string, _ []*ingest.Batch, done func(error)) error {
	done(nil)
	return nil
}

// BenchmarkWrite is serve's acknowledgement path: 5,000-event batches
// encoded, appended to the log and fsynced (group commit over 8
// concurrent writers, as streams do), drained by an inserter that
// stores nothing. Reports events/s.
func BenchmarkWrite(b *testing.B) {
	opts := Defaults()
	opts.Dir = b.TempDir()
	sp, err := Open(opts, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	sp.Start(b.Context(), nopInserter{}, nil)
	defer sp.Shutdown(context.WithoutCancel(b.Context()))
	batch := testBatch("bench", 1, 5000)
	const writers = 8
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	n := b.N
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				x := *batch
				x.Stream, x.Seq = "bench", uint64(i+1)
				done := make(chan error, 1)
				if err := sp.Write(b.Context(), &x, func(err error) { done <- err }); err != nil {
					b.Error(err)
					return
				}
				if err := <-done; err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(5000*n)/b.Elapsed().Seconds(), "events/s")
}
