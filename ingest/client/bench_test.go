package client

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/server"
)

// nopSink acknowledges at once: the benchmark measures the protocol, the
// encoding and the server's mapping and validation, not storage.
type nopSink struct{}

func (nopSink) Write(_ context.Context, _ *ingest.Batch, done func(error)) error {
	done(nil)
	return nil
}

// BenchmarkSendOverBufconn streams b.N events from a Sender to a real server
// over an in-memory connection. Run with -benchmem; reports events/s.
func BenchmarkSendOverBufconn(b *testing.B) {
	h := newHarness(b, server.DefaultConfig(), nopSink{})
	cfg := DefaultConfig()
	snd, err := New(h.cc, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	src := &repeatSource{conn: events(1)[0], n: b.N}
	b.ResetTimer()
	if err := snd.Run(b.Context(), src); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

type repeatSource struct {
	conn ingest.Conn
	n    int
}

func (s *repeatSource) Next(b *ingest.Batch, max int) (string, error) {
	for len(b.Conns) < max && s.n > 0 {
		c := s.conn
		c.TS += int64(s.n)
		b.Conns = append(b.Conns, c)
		s.n--
	}
	if s.n == 0 {
		return "bench", io.EOF
	}
	return "bench", nil
}
