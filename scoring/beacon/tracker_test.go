package beacon

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
)

func v4(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }

func conn(ts int64, src, dst netip.Addr, port uint16, bytes uint64) ingest.Conn {
	return ingest.Conn{TS: ts, OrigH: src, RespH: dst, RespP: port, Proto: ingest.TCP, OrigBytes: bytes, OrigIPBytes: bytes + 200}
}

// traffic is a day and a bit of: one C2 beacon (10.0.0.66 -> 203.0.113.9,
// 5 minutes +-20 %), 60 hosts polling a popular collector every minute,
// and every host browsing its own rare site at random.
func traffic(seed uint64) []ingest.Conn {
	r := rand.New(rand.NewPCG(seed, 1))
	end := day0 + 26*3600e6
	var out []ingest.Conn
	for _, b := range renewal(r, day0, end, 5*time.Minute, 0.2, 0.1, 300, 0.1) {
		out = append(out, conn(b.t, v4(10, 0, 0, 66), v4(203, 0, 113, 9), 443, uint64(b.size)))
	}
	for h := range 60 {
		src := v4(10, 0, 1, byte(h+1))
		for _, b := range renewal(r, day0+r.Int64N(60e6), end, time.Minute, 0.05, 0, 150, 0.1) {
			out = append(out, conn(b.t, src, v4(198, 19, 240, 10), 443, uint64(b.size)))
		}
		for _, b := range poisson(r, day0, end, 3) {
			out = append(out, conn(b.t, src, v4(198, 18, 100, byte(h)), 443, uint64(b.size)))
		}
	}
	slices.SortStableFunc(out, func(a, b ingest.Conn) int { return cmp.Compare(a.TS, b.TS) })
	return out
}

// run feeds conns in batches, advancing to the newest time minus the
// lateness after each, and returns every signal.
func run(t testing.TB, tr *Tracker, conns []ingest.Conn, batch int, lateness int64) []features.Signal {
	t.Helper()
	ctx := context.Background()
	var sigs []features.Signal
	maxTS := int64(0)
	for i := 0; i < len(conns); i += batch {
		b := conns[i:min(i+batch, len(conns))]
		tr.Add(b)
		for _, c := range b {
			maxTS = max(maxTS, c.TS)
		}
		s, err := tr.Advance(ctx, maxTS-lateness)
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, s...)
	}
	s, err := tr.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return append(sigs, s...)
}

func newTracker(t testing.TB, cfg Config, opts Options) *Tracker {
	t.Helper()
	tr, err := NewTracker(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestTrackerSignals(t *testing.T) {
	tr := newTracker(t, DefaultConfig(), Options{})
	sigs := run(t, tr, traffic(1), 500, 30e6)
	if len(sigs) == 0 {
		t.Fatal("no signal for the beacon")
	}
	for i, s := range sigs {
		if s.Type != SignalType || s.Src != v4(10, 0, 0, 66) || s.Dst != v4(203, 0, 113, 9) || s.DstPort != 443 {
			t.Errorf("signal for %s -> %s:%d", s.Src, s.Dst, s.DstPort)
			continue
		}
		if s.Value < 0.75 || s.Threshold != 0.75 || s.WindowEnd%600e6 != 0 && i != len(sigs)-1 ||
			s.FirstSeen < s.WindowStart || s.LastSeen >= s.WindowEnd || s.Severity < features.Medium {
			t.Errorf("signal %+v", s)
		}
		for _, m := range []string{"beacon_score", "interval_dispersion", "spectral", "size_regularity", "persistence",
			"rarity", "period_seconds", "dst_internal_hosts", "median_interval_seconds"} {
			if _, ok := s.Metric(m); !ok {
				t.Errorf("metric %s missing", m)
			}
		}
		if p, _ := s.Metric("period_seconds"); p < 240 || p > 360 {
			t.Errorf("period %.0f s for a 5-minute beacon", p)
		}
	}
	// Signals repeat at most hourly unless the score rises.
	for i := 1; i < len(sigs); i++ {
		if d := sigs[i].WindowEnd - sigs[i-1].WindowEnd; d < 3600e6 && sigs[i].Value < sigs[i-1].Value+0.05 {
			t.Errorf("signals %d and %d %.0f s apart, scores %.3f and %.3f", i-1, i, float64(d)/1e6, sigs[i-1].Value, sigs[i].Value)
		}
	}
	st := tr.Stats()
	if st.Pairs != 121 || st.Hosts != 61 || st.Scored == 0 || st.Signals != uint64(len(sigs)) {
		t.Errorf("stats %+v", st)
	}
	if n, ok := tr.Sources(v4(198, 19, 240, 10)); !ok || n != 60 {
		t.Errorf("collector prevalence %d, %v", n, ok)
	}
	if n, ok := tr.Sources(v4(203, 0, 113, 9)); !ok || n != 1 {
		t.Errorf("C2 prevalence %d, %v", n, ok)
	}
}

// TestTrackerDeterminism: batching and arrival order within the
// lateness do not change the signals.
var seedDet uint64 = 5

func TestTrackerDeterminism(t *testing.T) {
	conns := traffic(seedDet)
	want := run(t, newTracker(t, DefaultConfig(), Options{}), conns, 1000, 30e6)
	if len(want) == 0 {
		t.Fatal("no signals")
	}
	// Shuffle within 30 s windows.
	shuffled := slices.Clone(conns)
	r := rand.New(rand.NewPCG(9, 9))
	for lo := 0; lo < len(shuffled); {
		hi := lo
		for hi < len(shuffled) && shuffled[hi].TS < shuffled[lo].TS+30e6 {
			hi++
		}
		r.Shuffle(hi-lo, func(i, j int) { shuffled[lo+i], shuffled[lo+j] = shuffled[lo+j], shuffled[lo+i] })
		lo = hi
	}
	for _, batch := range []int{1, 37, 5000} {
		got := run(t, newTracker(t, DefaultConfig(), Options{}), shuffled, batch, 30e6)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("batch %d: %d signals differ from the ordered run's %d", batch, len(got), len(want))
			for i := range min(len(got), len(want)) {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("first difference at %d:\n got %+v\nwant %+v", i, got[i], want[i])
					break
				}
			}
		}
	}
}

func TestTrackerInternalDecision(t *testing.T) {
	tr := newTracker(t, DefaultConfig(), Options{})
	ext, in := v4(203, 0, 113, 1), v4(10, 0, 0, 1)
	c := []ingest.Conn{
		conn(day0, in, v4(10, 0, 0, 2), 445, 1),                                                // internal -> internal
		conn(day0, ext, in, 443, 1),                                                            // external -> internal
		conn(day0, in, ext, 443, 1),                                                            // counted
		conn(day0, v4(203, 0, 113, 2), ext, 443, 1),                                            // external -> external
		conn(day0, v4(100, 64, 0, 1), ext, 443, 1),                                             // CGNAT: not local by default...
		conn(day0, netip.MustParseAddr("fd00::1"), netip.MustParseAddr("2001:db8::1"), 443, 1), // IPv6
	}
	c[4].LocalOrig = ingest.True // ...unless Zeek says so
	tr.Add(c)
	if st := tr.Stats(); st.Tracked != 3 || st.Pairs != 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestTrackerHistoryCap: a chatty pair keeps at most MaxHistory
// connections, and a pair idle for the horizon is evicted.
func TestTrackerHistoryCap(t *testing.T) {
	cfg := DefaultConfig()
	tr := newTracker(t, cfg, Options{})
	src, dst := v4(10, 0, 0, 1), v4(203, 0, 113, 1)
	var conns []ingest.Conn
	for i := range 5000 {
		conns = append(conns, conn(day0+int64(i)*2e6, src, dst, 443, 100))
	}
	run(t, tr, conns, 100, 0)
	p := &tr.slab[0]
	if int(p.n) > cfg.MaxHistory || int(p.n) < cfg.MaxHistory/2 {
		t.Errorf("%d entries kept, cap %d", p.n, cfg.MaxHistory)
	}
	es := tr.decode(p, nil)
	for i := 1; i < len(es); i++ {
		if es[i].t != es[i-1].t+2 {
			t.Fatalf("entry %d at %d after %d", i, es[i].t, es[i-1].t)
		}
	}
	if es[len(es)-1].t != (day0+4999*2e6)/1e6 {
		t.Errorf("newest entry %d", es[len(es)-1].t)
	}
	// A day later another pair's connection moves time on: the idle pair
	// goes at the next tick.
	tr.Add([]ingest.Conn{conn(day0+30*3600e6, v4(10, 0, 0, 2), dst, 443, 1)})
	if _, err := tr.Advance(context.Background(), day0+31*3600e6); err != nil {
		t.Fatal(err)
	}
	if st := tr.Stats(); st.Pairs != 1 || st.Evicted != 1 || st.History != 0 {
		t.Errorf("after the horizon: %+v", st)
	}
}

// TestHistoryEncoding: out-of-order times round-trip, and trimming keeps
// what is at or after its bound.
func TestHistoryEncoding(t *testing.T) {
	tr := newTracker(t, DefaultConfig(), Options{})
	r := rand.New(rand.NewPCG(5, 5))
	var conns []ingest.Conn
	var want []int64
	for i := range 200 {
		ts := day0 + int64(i)*60e6 + r.Int64N(50e6) - 25e6 // shuffled within 50 s
		conns = append(conns, conn(ts, v4(10, 0, 0, 1), v4(203, 0, 113, 1), 443, uint64(100+i)))
		want = append(want, ts/1e6)
	}
	r.Shuffle(len(conns), func(i, j int) {
		if d := conns[i].TS - conns[j].TS; d < 50e6 && d > -50e6 {
			conns[i], conns[j] = conns[j], conns[i]
		}
	})
	tr.Add(conns)
	got := tr.decode(&tr.slab[0], nil)
	var ts []int64
	for _, e := range got {
		ts = append(ts, e.t)
	}
	slices.Sort(ts)
	slices.Sort(want)
	if !slices.Equal(ts, want) {
		t.Fatalf("decoded times differ")
	}
	lo := want[100]
	if !tr.trim(&tr.slab[0], lo, 0, 1000) {
		t.Fatal("trim left nothing")
	}
	got = tr.decode(&tr.slab[0], nil)
	if len(got) != 100 || got[0].t != lo {
		t.Errorf("after trim: %d entries from %d", len(got), got[0].t)
	}
	if q := quantize(1e9); dequantize(q) < 0.95e9 || dequantize(q) > 1.05e9 {
		t.Errorf("quantize(1 GB) = %d -> %.0f", q, dequantize(q))
	}
}

func TestIndex(t *testing.T) {
	keys := []uint64{}
	slab := map[uint32]uint64{}
	ix := newIndex(77)
	key := func(p uint32) uint64 { return slab[p] }
	r := rand.New(rand.NewPCG(1, 2))
	live := map[uint64]uint32{}
	for i := range 20000 {
		if len(keys) > 0 && r.IntN(3) == 0 {
			j := r.IntN(len(keys))
			k := keys[j]
			ix.remove(k, key)
			delete(live, k)
			keys[j] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
			continue
		}
		k := r.Uint64() >> r.IntN(40) // clustered keys too
		if _, ok := live[k]; ok {
			continue
		}
		p := uint32(i)
		slab[p] = k
		ix.insert(k, p, key)
		live[k] = p
		keys = append(keys, k)
	}
	for k, p := range live {
		if got := ix.find(k, key); got != int(p) {
			t.Fatalf("find(%x) = %d, want %d", k, got, p)
		}
	}
	if ix.n != len(live) || ix.find(^uint64(0), key) != -1 {
		t.Errorf("index holds %d, want %d", ix.n, len(live))
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Horizon, c.Every, c.MaxHistory, c.MaxPairs, c.EmitAbove = 90*time.Minute, time.Second, 2, 0, 2
	c.Params.MinTimestamps, c.Params.Permutations = 2, 0
	err := c.Validate()
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"horizon", "every", "max_history", "max_pairs", "emit_above", "min_timestamps", "permutations"} {
		if !containsStr(err.Error(), want) {
			t.Errorf("no %q in %v", want, err)
		}
	}
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// BenchmarkTracker: events/s of Add on a realistic pair mix (most pairs
// see one or two connections, a few are chatty), and the state per
// tracked pair after a day of them, measured with runtime.MemStats.
func BenchmarkTracker(b *testing.B) {
	const pairs = 200_000
	r := rand.New(rand.NewPCG(1, 1))
	var conns []ingest.Conn
	for p := range pairs {
		src := v4(10, byte(p>>16), byte(p>>8), byte(p))
		dst := v4(198, 18, byte(r.IntN(256)), byte(r.IntN(256)))
		n := 1
		switch u := r.Float64(); {
		case u < 0.05:
			n = 50 + r.IntN(450)
		case u < 0.35:
			n = 2 + r.IntN(9)
		}
		for range n {
			conns = append(conns, conn(day0+r.Int64N(20*3600e6), src, dst, 443, uint64(200+r.IntN(5000))))
		}
	}
	slices.SortFunc(conns, func(a, b ingest.Conn) int { return cmp.Compare(a.TS, b.TS) })
	ctx := context.Background()
	var tr *Tracker
	var before, after runtime.MemStats
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&before)
		tr, _ = NewTracker(DefaultConfig(), Options{})
		b.StartTimer()
		for i := 0; i < len(conns); i += 4096 {
			batch := conns[i:min(i+4096, len(conns))]
			tr.Add(batch)
			if _, err := tr.Advance(ctx, batch[len(batch)-1].TS-30e6); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := tr.Stats()
	b.ReportMetric(float64(len(conns))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(st.Pairs), "bytes/pair")
	b.ReportMetric(float64(st.Bytes)/float64(st.Pairs), "est-bytes/pair")
	runtime.KeepAlive(tr)
}

// TestHistoryHardCap: a pair flooding connections between two ticks is
// halved in place whatever its history's encoded size, at the smallest and
// the largest history caps, and keeps its newest connections intact.
func TestHistoryHardCap(t *testing.T) {
	for _, maxHist := range []int{8, 4096} {
		for seed := range uint64(20) {
			cfg := DefaultConfig()
			cfg.MaxHistory = maxHist
			tr := newTracker(t, cfg, Options{})
			r := rand.New(rand.NewPCG(seed, 3))
			var conns []ingest.Conn
			ts := day0
			// Gaps of 1 s to about 9 hours: varints of 1 to 3 bytes, so
			// that re-encoded blocks end anywhere within their class.
			for range hardCap*maxHist + 3*maxHist + int(seed) {
				ts += (1 + r.Int64N([]int64{60, 8000, 32000}[r.IntN(3)])) * 1e6 / 10
				conns = append(conns, conn(ts, v4(10, 0, 0, 1), v4(203, 0, 113, 1), 443, 100))
			}
			tr.Add(conns) // no tick in between
			p := &tr.slab[0]
			if int(p.n) > hardCap*maxHist {
				t.Fatalf("max history %d seed %d: %d entries kept", maxHist, seed, p.n)
			}
			got := tr.decode(p, nil)
			want := conns[len(conns)-len(got):]
			for i, e := range got {
				if e.t != want[i].TS/1e6 {
					t.Fatalf("max history %d seed %d: entry %d at %d, want %d", maxHist, seed, i, e.t, want[i].TS/1e6)
				}
			}
		}
	}
}
