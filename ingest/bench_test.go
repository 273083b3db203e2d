package ingest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// benchLines is the size of the synthetic logs: large enough that the
// per-file setup (buffer, header) is noise.
const benchLines = 20000

// synthConns returns plausible, varied records: a few internal hosts
// talking to many destinations with the usual services and histories.
func synthConns(n int) []Conn {
	rng := rand.New(rand.NewPCG(1, 2))
	services := []string{"dns", "ssl", "http", "", "ssh", "smb,gssapi", "ntp"}
	histories := []string{"Dd", "ShADadFf", "ShADadfF", "S", "ShR", "D", "ShAdDaFf"}
	states := []ConnState{SF, SF, SF, S0, REJ, OTH, RSTO}
	out := make([]Conn, n)
	ts := int64(1_704_103_200_000_000)
	for i := range out {
		ts += int64(rng.IntN(2000))
		c := &out[i]
		c.TS = ts
		c.UID = fmt.Sprintf("C%017x", rng.Uint64())
		c.OrigH = mustAddr(fmt.Sprintf("10.0.%d.%d", rng.IntN(4), 1+rng.IntN(50)))
		if rng.IntN(4) == 0 {
			c.RespH = mustAddr(fmt.Sprintf("10.0.0.%d", 1+rng.IntN(20)))
		} else {
			c.RespH = mustAddr(fmt.Sprintf("%d.%d.%d.%d", 1+rng.IntN(223), rng.IntN(256), rng.IntN(256), 1+rng.IntN(254)))
		}
		c.OrigP = uint16(32768 + rng.IntN(28000))
		c.RespP = []uint16{53, 443, 80, 22, 445, 123, 8443}[rng.IntN(7)]
		c.Proto = []Transport{UDP, TCP, TCP, TCP, TCP, UDP, TCP}[rng.IntN(7)]
		c.Service = services[rng.IntN(len(services))]
		c.Duration = rngDuration(rng)
		c.OrigBytes = uint64(rng.IntN(100000))
		c.RespBytes = uint64(rng.IntN(1000000))
		c.ConnState = states[rng.IntN(len(states))]
		c.LocalOrig = True
		c.LocalResp = TristateOf(rng.IntN(4) == 0)
		c.History = histories[rng.IntN(len(histories))]
		c.OrigPkts = uint64(rng.IntN(200))
		c.OrigIPBytes = c.OrigBytes + 40*c.OrigPkts
		c.RespPkts = uint64(rng.IntN(900))
		c.RespIPBytes = c.RespBytes + 40*c.RespPkts
	}
	return out
}

func rngDuration(rng *rand.Rand) time.Duration {
	return time.Duration(rng.IntN(30_000_000)) * time.Microsecond
}

// zeekTSV writes Conns as Zeek's ASCII writer does.
func zeekTSV(conns []Conn) []byte {
	var b bytes.Buffer
	b.WriteString("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t2024-01-01-10-00-00\n")
	b.WriteString("#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n")
	b.WriteString("#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n")
	for i := range conns {
		c := &conns[i]
		fmt.Fprintf(&b, "%d.%06d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t(empty)\n",
			c.TS/1e6, c.TS%1e6, c.UID, c.OrigH, c.OrigP, c.RespH, c.RespP, c.Proto, orDash(c.Service),
			secs(c.Duration), c.OrigBytes, c.RespBytes, c.ConnState, c.LocalOrig, c.LocalResp,
			c.MissedBytes, orDash(c.History), c.OrigPkts, c.OrigIPBytes, c.RespPkts, c.RespIPBytes)
	}
	b.WriteString("#close\t2024-01-01-11-00-00\n")
	return b.Bytes()
}

// zeekJSON writes Conns as Zeek's JSON writer does: unset fields omitted.
func zeekJSON(conns []Conn) []byte {
	var b bytes.Buffer
	for i := range conns {
		c := &conns[i]
		fmt.Fprintf(&b, `{"ts":%d.%06d,"uid":%q,"id.orig_h":"%s","id.orig_p":%d,"id.resp_h":"%s","id.resp_p":%d,"proto":"%s"`,
			c.TS/1e6, c.TS%1e6, c.UID, c.OrigH, c.OrigP, c.RespH, c.RespP, c.Proto)
		if c.Service != "" {
			fmt.Fprintf(&b, `,"service":%q`, c.Service)
		}
		fmt.Fprintf(&b, `,"duration":%s,"orig_bytes":%d,"resp_bytes":%d,"conn_state":"%s","local_orig":%t,"local_resp":%t,"missed_bytes":%d`,
			secs(c.Duration), c.OrigBytes, c.RespBytes, c.ConnState, c.LocalOrig == True, c.LocalResp == True, c.MissedBytes)
		if c.History != "" {
			fmt.Fprintf(&b, `,"history":%q`, c.History)
		}
		fmt.Fprintf(&b, `,"orig_pkts":%d,"orig_ip_bytes":%d,"resp_pkts":%d,"resp_ip_bytes":%d}`+"\n",
			c.OrigPkts, c.OrigIPBytes, c.RespPkts, c.RespIPBytes)
	}
	return b.Bytes()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func secs(d time.Duration) string {
	us := d.Microseconds()
	return fmt.Sprintf("%d.%06d", us/1e6, us%1e6)
}

func gzipBytes(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func benchRead(b *testing.B, data []byte) {
	v := testValidator()
	buf := make([]Conn, 0, 1024)
	n := 0
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		fr, err := NewFileReader("bench", bytes.NewReader(data), ReaderOptions{Validator: v, Sensor: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		for {
			buf, err = fr.Read(buf[:0])
			n += len(buf)
			if err != nil {
				break
			}
		}
		if err != io.EOF {
			b.Fatal(err)
		}
		if s := fr.Stats(); s.Rejected != 0 {
			b.Fatalf("%d rejected", s.Rejected)
		}
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(n)/sec, "events/s")
	b.ReportMetric(sec*1e9/float64(n), "ns/event")
}

func BenchmarkReadZeekTSV(b *testing.B) {
	benchRead(b, zeekTSV(synthConns(benchLines)))
}

func BenchmarkReadZeekTSVGzip(b *testing.B) {
	benchRead(b, gzipBytes(zeekTSV(synthConns(benchLines))))
}

func BenchmarkReadZeekJSON(b *testing.B) {
	benchRead(b, zeekJSON(synthConns(benchLines)))
}

func BenchmarkReadSimpleNDJSON(b *testing.B) {
	var sb strings.Builder
	for i, c := range synthConns(benchLines) {
		fmt.Fprintf(&sb, `{"ts":"%s","src_ip":"%s","dest_ip":"%s","dest_port":%d,"bytes_transferred":%d,"protocol":"HTTPS","is_outbound":%t}`+"\n",
			c.Time().Format("2006-01-02T15:04:05.000000Z"), c.OrigH, c.RespH, c.RespP, c.OrigBytes, i%3 != 0)
	}
	benchRead(b, []byte(sb.String()))
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
