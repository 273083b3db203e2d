package scenario

import (
	"io"
	"testing"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

// BenchmarkStream measures generation alone over the mixed preset's first
// hours; conns/s is the figure that matters for load generation.
func BenchmarkStream(b *testing.B) {
	s, err := Preset("mixed", 1, time.Time{}, 6*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for b.Loop() {
		if _, err := Stream(s, func(*ingest.Conn) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "conns/s")
}

// BenchmarkWriteTSV measures generation and the TSV writer together.
func BenchmarkWriteTSV(b *testing.B) {
	s, err := Preset("mixed", 1, time.Time{}, 6*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := WriteLog(io.Discard, FormatTSV, s); err != nil {
			b.Fatal(err)
		}
	}
}
