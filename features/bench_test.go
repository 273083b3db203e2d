package features

import (
	"context"
	"flag"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/ndr-go/ndr/ingest"
)

// discard is an Emitter that only counts.
type discard struct{ rows, signals int }

func (d *discard) Emit(_ context.Context, out *WindowOutput) error {
	d.rows += int(out.Hosts.NumRows() + out.Pairs.NumRows())
	d.signals += len(out.Signals)
	return nil
}

// synthConn is a connection without pointers, so that a benchmark's
// input of millions of events costs the garbage collector nothing; fill
// turns a run of them into ingest.Conns, as a reader would.
type synthConn struct {
	ts       int64
	src, dst [4]byte
	port     uint16
	proto    ingest.Transport
	state    ingest.ConnState
	out, in  uint64
}

func fill(dst []ingest.Conn, src []synthConn) []ingest.Conn {
	dst = dst[:len(src)]
	for i := range src {
		s := &src[i]
		dst[i] = ingest.Conn{
			TS: s.ts, OrigH: netip.AddrFrom4(s.src), RespH: netip.AddrFrom4(s.dst), OrigP: 50000, RespP: s.port,
			Proto: s.proto, ConnState: s.state, OrigBytes: s.out, RespBytes: s.in,
		}
	}
	return dst
}

// synthStream is a day-in-the-life mix for benchmarks: internal hosts
// browsing popular and rare external destinations (Zipf), DNS to internal
// resolvers, SMB, SSH and RDP between internal hosts, high ports (a
// quarter of them failing), NTP, with event times advancing at rate
// events per second and jittered by up to 20 s (within the lateness).
func synthStream(n, hosts, dsts int, rate float64, seed uint64) []synthConn {
	rng := rand.New(rand.NewPCG(seed, 1))
	zipf := rand.NewZipf(rng, 1.2, 4, uint64(dsts-1))
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixMicro()
	out := make([]synthConn, n)
	host := func(i int) [4]byte { return [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)} }
	ext := func(i uint64) [4]byte { return [4]byte{byte(20 + i>>24%180), byte(i >> 16), byte(i >> 8), byte(i)} }
	for i := range out {
		c := &out[i]
		c.ts = start + int64(float64(i)/rate*1e6) - rng.Int64N(20_000_000)
		c.src, c.proto, c.state = host(rng.IntN(hosts)), ingest.TCP, ingest.SF
		switch r := rng.IntN(100); {
		case r < 60:
			c.dst, c.port = ext(zipf.Uint64()), 443
			c.out, c.in = uint64(500+rng.IntN(5000)), uint64(rng.ExpFloat64()*80_000)
		case r < 72:
			c.dst, c.port = ext(zipf.Uint64()), 80
			c.out, c.in = uint64(300+rng.IntN(800)), uint64(rng.ExpFloat64()*200_000)
		case r < 85:
			c.dst, c.port, c.proto = host(rng.IntN(4)), 53, ingest.UDP
			c.out, c.in = 40, 120
		case r < 90:
			c.dst, c.port = host(rng.IntN(hosts)), []uint16{445, 22, 3389, 135}[rng.IntN(4)]
			c.out, c.in = uint64(rng.IntN(10_000)), uint64(rng.ExpFloat64()*1e6)
		case r < 95:
			c.dst, c.port = ext(uint64(rng.IntN(dsts))), uint16(1024+rng.IntN(60000))
			c.out, c.in = uint64(rng.IntN(2000)), uint64(rng.IntN(4000))
			if rng.IntN(4) == 0 {
				c.state = ingest.S0
			}
		default:
			c.dst, c.port, c.proto = ext(uint64(rng.IntN(16))), 123, ingest.UDP
			c.out, c.in = 48, 48
		}
	}
	return out
}

// BenchmarkProcess measures the engine on an hour of synthetic traffic:
// 2,000 internal hosts at one connection per second each (7.2 million
// connections) to 100,000 destinations: a 10-minute stream of 1.2 million
// connections replayed six times, 10 minutes later each time, fed in
// batches of 1024, Flush included. events/s counts input connections;
// rows/s the feature rows emitted.
func BenchmarkProcess(b *testing.B) {
	const loops = 6
	stream := synthStream(1_200_000, 2_000, 100_000, 2_000, 1)
	span := 10 * time.Minute.Microseconds()
	buf := make([]ingest.Conn, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	rows := 0
	for range b.N {
		d := &discard{}
		e, err := NewEngine(DefaultConfig(), d, nil, memory.DefaultAllocator)
		if err != nil {
			b.Fatal(err)
		}
		for l := range int64(loops) {
			for i := 0; i < len(stream); i += len(buf) {
				batch := fill(buf, stream[i:min(i+len(buf), len(stream))])
				for j := range batch {
					batch[j].TS += l * span
				}
				if err := e.Process(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := e.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		rows += d.rows
	}
	sec := time.Since(start).Seconds()
	b.ReportMetric(float64(len(stream)*loops*b.N)/sec, "events/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(len(stream)*loops*b.N), "cpu-ns/event")
	b.ReportMetric(float64(rows)/sec, "rows/s")
}

// BenchmarkPairState tracks 1,000,000 host pairs (5,000 internal hosts,
// 250,000 external destinations on port 443, one or two connections
// each, all within one retention period) and reports the heap they cost per pair,
// measured with runtime.ReadMemStats (everything the engine holds, its
// 5,000 hosts included, divided by the pairs), and the engine's own
// estimates per pair and per host.
func BenchmarkPairState(b *testing.B) {
	const pairs = 1_000_000
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixMicro()
	conns := make([]ingest.Conn, 0, pairs*5/4)
	for i := range pairs {
		// Host h talks to 200 destinations of its own window of the
		// 250,000, on 443 like most traffic: every pair is distinct.
		h, k := i%5000, i/5000
		d := uint64((h*50 + k) % 250_000)
		c := ingest.Conn{
			TS:    start + int64(i)*200, // 200 s for all: nothing is evicted
			OrigH: netip.AddrFrom4([4]byte{10, 1, byte(h >> 8), byte(h)}),
			RespH: netip.AddrFrom4([4]byte{byte(20 + d>>16), byte(d >> 8), byte(d), 7}),
			RespP: 443, Proto: ingest.TCP, ConnState: ingest.SF,
			OrigBytes: 600, RespBytes: 4000,
		}
		conns = append(conns, c)
		if i%4 == 0 { // a quarter of the pairs get a second connection
			c.TS += 1_000_000
			conns = append(conns, c)
		}
	}
	var perPair, estimate, perHost float64
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		e, err := NewEngine(DefaultConfig(), &discard{}, nil, memory.DefaultAllocator)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < len(conns); i += 4096 {
			if err := e.Process(context.Background(), conns[i:min(i+4096, len(conns))]); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := e.Stats()
		if st.Pairs < pairs*99/100 {
			b.Fatalf("tracking %d pairs, want about %d", st.Pairs, pairs)
		}
		perPair = float64(after.HeapAlloc-before.HeapAlloc) / float64(st.Pairs)
		estimate = e.Memory().BytesPerPair()
		perHost = e.Memory().BytesPerHost()
		runtime.KeepAlive(e)
	}
	b.ReportMetric(perPair, "bytes/pair")
	b.ReportMetric(estimate, "est-bytes/pair")
	b.ReportMetric(perHost, "est-bytes/host")
}

var benchFile = flag.String("bench-file", "", "conn log for BenchmarkProcessFile (e.g. ndr gen --preset mixed --hosts 2000 --duration 24h, first 1,000,000 lines)")

// noBaselines is installed but has no model yet: ndr replay's engine
// before the learner's first fit, whose spike gates pass on any
// connection.
type noBaselines struct{}

func (noBaselines) Lookup(netip.Addr, string, int64) (float64, float64, bool) { return 0, 0, false }

// BenchmarkProcessFile runs the engine over a conn log read into memory
// beforehand (reading is not timed), in batches of 8192 as ndr replay
// sends them, Flush included: the sparse, realistic regime the synthetic
// stream does not cover. Skipped without -bench-file. The baselines case
// installs Baselines as ndr replay does (none fitted yet: priors).
func BenchmarkProcessFile(b *testing.B) {
	for _, bc := range []struct {
		name string
		b    Baselines
	}{{"priors", nil}, {"baselines", noBaselines{}}} {
		b.Run(bc.name, func(b *testing.B) { benchmarkProcessFile(b, bc.b) })
	}
}

func benchmarkProcessFile(b *testing.B, bl Baselines) {
	if *benchFile == "" {
		b.Skip("no -bench-file")
	}
	// Held without pointers (a million ingest.Conns would make every
	// garbage collection scan them), rebuilt batch by batch as a reader
	// would.
	type compact struct {
		c          ingest.Conn
		orig, resp [16]byte
	}
	read := readFile(b, *benchFile)
	conns := make([]compact, len(read))
	for i := range read {
		c := read[i]
		conns[i].orig, conns[i].resp = c.OrigH.As16(), c.RespH.As16()
		c.OrigH, c.RespH, c.UID, c.Service, c.History, c.Sensor = netip.Addr{}, netip.Addr{}, "", "", "", ""
		conns[i].c = c
	}
	read = nil
	buf := make([]ingest.Conn, 8192)
	batch := func(from int) []ingest.Conn {
		n := min(len(buf), len(conns)-from)
		for i := range n {
			x := &conns[from+i]
			buf[i] = x.c
			buf[i].OrigH = netip.AddrFrom16(x.orig).Unmap()
			buf[i].RespH = netip.AddrFrom16(x.resp).Unmap()
		}
		return buf[:n]
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	rows, signals := 0, 0
	for range b.N {
		d := &discard{}
		e, err := NewEngine(DefaultConfig(), d, nil, memory.DefaultAllocator)
		if err != nil {
			b.Fatal(err)
		}
		if bl != nil {
			e.SetBaselines(bl)
		}
		for i := 0; i < len(conns); i += len(buf) {
			if err := e.Process(context.Background(), batch(i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := e.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		rows += d.rows
		signals += d.signals
	}
	sec := time.Since(start).Seconds()
	b.ReportMetric(float64(len(conns)*b.N)/sec, "events/s")
	// CPU time, GC included, per event: steadier than wall time on a
	// shared machine.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(len(conns)*b.N), "cpu-ns/event")
	b.ReportMetric(float64(rows)/float64(b.N), "rows/op")
	b.ReportMetric(float64(signals)/float64(b.N), "signals/op")
}
