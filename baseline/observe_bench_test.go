package baseline

import (
	"flag"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

var observeFile = flag.String("bench-file", "", "conn log for BenchmarkObserve instead of the synthetic stream (e.g. the first 1,000,000 lines of ndr gen --preset mixed --hosts 2000 --duration 24h)")

// BenchmarkObserve measures the learner's per-connection path (ndr
// replay feeds it every connection): 2,000 internal hosts over six hours,
// most connections to Zipf-popular external destinations, a fifth to
// internal servers; no fit is due (MinHistory is a day). With -bench-file
// it observes that conn log instead, read beforehand.
func BenchmarkObserve(b *testing.B) {
	conns := observeStream(b)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		var reg Registry
		l, err := NewLearner(DefaultLearnerConfig(), &reg, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < len(conns); i += 8192 {
			l.Observe(conns[i:min(i+8192, len(conns))])
		}
	}
	b.ReportMetric(float64(len(conns)*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(len(conns)*b.N), "cpu-ns/event")
}

func observeStream(b *testing.B) []ingest.Conn {
	if *observeFile != "" {
		f, err := os.Open(*observeFile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		r, err := ingest.NewFileReader(*observeFile, f, ingest.ReaderOptions{Sensor: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		var out []ingest.Conn
		for {
			out, err = r.Read(out)
			if err == io.EOF {
				return out
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	const n, hosts, dsts = 1_000_000, 2_000, 100_000
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.2, 4, dsts-1)
	start := time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC).UnixMicro()
	span := 6 * time.Hour.Microseconds()
	out := make([]ingest.Conn, n)
	for i := range out {
		h := rng.IntN(hosts)
		c := ingest.Conn{
			TS:        start + span*int64(i)/n,
			OrigH:     netip.AddrFrom4([4]byte{10, 1, byte(h >> 8), byte(h)}),
			RespP:     443,
			OrigBytes: uint64(rng.IntN(10_000)),
		}
		if rng.IntN(5) == 0 {
			s := rng.IntN(50)
			c.RespH, c.RespP = netip.AddrFrom4([4]byte{10, 2, 0, byte(s)}), []uint16{445, 22, 3389, 53}[s%4]
		} else {
			d := zipf.Uint64()
			c.RespH = netip.AddrFrom4([4]byte{byte(20 + d>>16), byte(d >> 8), byte(d), 9})
		}
		out[i] = c
	}
	return out
}
