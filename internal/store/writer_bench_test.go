package store_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/store"
)

// benchConns makes flow-like records: 500 internal IPv4 hosts talking to
// 20k external addresses (a tenth IPv6), a few services and states, rising
// timestamps, Zeek-style uids.
func benchConns(n int) []ingest.Conn {
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	services := []string{"", "dns", "ssl", "http", "ssh"}
	histories := []string{"ShADadFf", "Dd", "S", "ShAdDaFf", "D"}
	states := []ingest.ConnState{ingest.SF, ingest.S0, ingest.REJ, ingest.SF, ingest.OTH}
	ts := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	cs := make([]ingest.Conn, n)
	for i := range cs {
		ts += int64(r.IntN(2000))
		uid := make([]byte, 18)
		uid[0] = 'C'
		for j := 1; j < len(uid); j++ {
			uid[j] = alphabet[r.IntN(len(alphabet))]
		}
		h := r.IntN(500)
		orig := netip.AddrFrom4([4]byte{10, 1, byte(h >> 8), byte(h)})
		e := r.IntN(20000)
		resp := netip.AddrFrom4([4]byte{93, byte(e >> 16), byte(e >> 8), byte(e)})
		if e%10 == 0 {
			resp = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", e))
		}
		k := r.IntN(len(services))
		cs[i] = ingest.Conn{
			TS: ts, UID: string(uid), OrigH: orig, RespH: resp,
			OrigP: uint16(32768 + r.IntN(28000)), RespP: []uint16{53, 443, 80, 22, 8080}[k],
			Proto: ingest.TCP, Service: services[k],
			Duration:  time.Duration(r.IntN(10_000_000)) * time.Microsecond,
			OrigBytes: uint64(r.IntN(5000)), RespBytes: uint64(r.IntN(500000)),
			ConnState: states[k], LocalOrig: ingest.True, LocalResp: ingest.False,
			History:  histories[k],
			OrigPkts: uint64(r.IntN(50)), OrigIPBytes: uint64(r.IntN(7000)),
			RespPkts: uint64(r.IntN(500)), RespIPBytes: uint64(r.IntN(520000)),
			Sensor: "sensor-1",
		}
	}
	return cs
}

// BenchmarkConnWriter measures end-to-end insert throughput into the test
// server (embedded: client and server share the machine's cores): Write of
// 1000-record batches, the INSERTs, and the final Flush.
//
//	go test ./internal/store -run '^$' -bench ConnWriter -benchmem
func BenchmarkConnWriter(b *testing.B) {
	const batchRows = 1000
	conns := benchConns(100 * batchRows)
	for _, flushRows := range []int{100_000, 10_000} {
		b.Run(fmt.Sprintf("flush=%d", flushRows), func(b *testing.B) {
			s := chtest.OpenStore(b, func(c *store.Config) { c.RetentionDays = 0 })
			cfg := store.DefaultWriterConfig()
			cfg.FlushRows = flushRows
			w, err := s.NewConnWriter(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := w.Start(b.Context()); err != nil {
				b.Fatal(err)
			}
			var seq uint64
			server := childCPU()
			client := selfCPU()
			b.ResetTimer()
			for b.Loop() {
				seq++
				i := int(seq % 100)
				bt := &ingest.Batch{Sensor: "sensor-1", Stream: "bench", Seq: seq, Conns: conns[i*batchRows : (i+1)*batchRows]}
				if err := w.Write(b.Context(), bt, nil); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Flush(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			st := w.Stats()
			if st.Failures != 0 || st.Rows != seq*batchRows {
				b.Fatalf("stats %+v, want %d rows and no failures", st, seq*batchRows)
			}
			b.ReportMetric(float64(st.Rows)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(0, "ns/op")
			// CPU per row, which other load on the machine distorts less
			// than wall time: this process (encoding, compression, GC) and
			// the server child (parsing, sorting, compressing, writing).
			b.ReportMetric(float64(selfCPU()-client)/float64(st.Rows), "client-cpu-ns/row")
			if server >= 0 {
				b.ReportMetric(float64(childCPU()-server)/float64(st.Rows), "server-cpu-ns/row")
			}
			if err := w.Shutdown(b.Context()); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// selfCPU is this process's user+system CPU time in ns.
func selfCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// childCPU is the CPU time in ns of this process's child, the embedded
// server chtest started, or -1 when there is none (external server).
func childCPU() int64 {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: state ppid ... utime(14) stime(15).
		i := strings.LastIndexByte(string(raw), ')')
		f := strings.Fields(string(raw[i+1:]))
		if len(f) < 13 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return (ut + st) * int64(time.Second/100) // clock ticks of 10 ms (USER_HZ)
	}
	return -1
}
