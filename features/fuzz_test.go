package features

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/ndr-go/ndr/ingest"
)

// fuzzConns decodes 16 bytes per connection: times within about ±45
// minutes of a base (so that out-of-order, late and far-jumping events
// all occur), addresses from small internal and external pools, any
// port, bytes up to 2^40, any state, and sometimes Zeek's local flags.
func fuzzConns(data []byte) []ingest.Conn {
	base := time.Date(2026, 2, 6, 10, 0, 0, 0, time.UTC).UnixMicro()
	var out []ingest.Conn
	for len(data) >= 16 {
		b := data[:16]
		data = data[16:]
		dt := int64(int16(binary.LittleEndian.Uint16(b[0:2]))) * 80_000_000 / 1000 // ±44 min, 80 ms steps
		if b[15]&0xf0 == 0xf0 {
			dt *= 1000 // a rare jump of days
		}
		addr := func(sel byte) netip.Addr {
			switch sel % 4 {
			case 0, 1:
				return netip.AddrFrom4([4]byte{10, 0, sel >> 5, sel & 7})
			case 2:
				return netip.AddrFrom4([4]byte{203, 0, 113, sel})
			default:
				return netip.AddrFrom16([16]byte{0xfd, 0, 12: sel})
			}
		}
		c := ingest.Conn{
			TS:        base + dt,
			OrigH:     addr(b[2]),
			RespH:     addr(b[3]),
			RespP:     binary.LittleEndian.Uint16(b[4:6]),
			OrigBytes: uint64(binary.LittleEndian.Uint32(b[6:10])) << (b[14] % 9),
			RespBytes: uint64(binary.LittleEndian.Uint16(b[10:12])) << (b[14] % 13),
			ConnState: ingest.ConnState(b[12] % 14),
			Duration:  time.Duration(b[13]) * time.Second,
			Proto:     ingest.TCP,
		}
		switch b[15] % 5 {
		case 0:
			c.LocalOrig, c.LocalResp = ingest.True, ingest.False
		case 1:
			c.LocalOrig = ingest.False
		}
		out = append(out, c)
	}
	return out
}

// FuzzEngine feeds random connections in random batches to an engine with
// tiny caps and checks that it never panics, keeps its bookkeeping
// consistent and within the caps, and releases everything on Flush.
func FuzzEngine(f *testing.F) {
	f.Add([]byte{}, uint8(3), false)
	seed := make([]byte, 16*64)
	for i := range seed {
		seed[i] = byte(i * 7)
	}
	f.Add(seed, uint8(5), true)
	f.Add(seed[:16*40], uint8(1), false)
	f.Fuzz(func(t *testing.T, data []byte, batch uint8, endTime bool) {
		conns := fuzzConns(data)
		cfg := DefaultConfig()
		cfg.Limits.MaxHosts = 6
		cfg.Limits.MaxPairs = 24
		cfg.Limits.MaxSetElements = 32
		cfg.Limits.TrackInternalPairs = batch%2 == 0
		if batch%3 == 0 {
			cfg.Limits.Overflow = Refuse
		}
		if endTime {
			cfg.EventTime = EventTimeEnd
		}
		mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
		defer mem.AssertSize(t, 0)
		e, err := NewEngine(cfg, &collector{}, nil, mem)
		if err != nil {
			t.Fatal(err)
		}
		n := int(batch%16) + 1
		for i := 0; i < len(conns); i += n {
			if err := e.Process(context.Background(), conns[i:min(i+n, len(conns))]); err != nil {
				t.Fatal(err)
			}
			if err := e.checkInvariants(); err != nil {
				t.Fatalf("after %d conns: %v", min(i+n, len(conns)), err)
			}
			st := e.Stats()
			if st.Hosts > cfg.Limits.MaxHosts || st.Pairs > cfg.Limits.MaxPairs {
				t.Fatalf("state over the caps: %d hosts, %d pairs", st.Hosts, st.Pairs)
			}
		}
		if err := e.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		st := e.Stats()
		if st.Hosts != 0 || st.Pairs != 0 || st.Addresses != 0 || st.HostPanes != 0 || st.PairPanes != 0 {
			t.Fatalf("Flush left state: %+v", st)
		}
		if err := e.checkInvariants(); err != nil {
			t.Fatal(err)
		}
	})
}
