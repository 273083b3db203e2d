package features

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/ndr-go/ndr/ingest"
)

// Window semantics: tumbling, hopping and session windows, the watermark,
// lateness, eviction and caps.

func hostRows(c *collector, host, window string) []map[string]string {
	var out []map[string]string
	for _, o := range c.outs {
		for _, r := range o.hosts {
			if r["host"] == host && (window == "" || r["window"] == window) {
				out = append(out, r)
			}
		}
	}
	return out
}

func pairRows(c *collector, src, window string) []map[string]string {
	var out []map[string]string
	for _, o := range c.outs {
		for _, r := range o.pairs {
			if r["src"] == src && (window == "" || r["window"] == window) {
				out = append(out, r)
			}
		}
	}
	return out
}

func TestTumblingWindowBoundaries(t *testing.T) {
	// DATA_STAGING is tumbling, 5 minutes: [10:00, 10:05), [10:05, 10:10).
	smb := func(ts string, mb uint64) ingest.Conn {
		return conn(at(ts), "10.1.1.1", "10.2.2.2", 445, 0, mb*mB)
	}
	for _, tc := range []struct {
		name  string
		conns []ingest.Conn
		want  []string // window starts of DATA_STAGING signals
	}{
		{"split by the boundary", []ingest.Conn{smb("2026-01-01T10:04:59Z", 400), smb("2026-01-01T10:05:00Z", 400)}, nil},
		{"same window", []ingest.Conn{smb("2026-01-01T10:01:00Z", 400), smb("2026-01-01T10:04:59Z", 400)}, []string{"10:00:00"}},
		{"end is exclusive", []ingest.Conn{smb("2026-01-01T10:05:00Z", 400), smb("2026-01-01T10:09:59Z", 400)}, []string{"10:05:00"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := run(t, DefaultConfig(), tc.conns)
			var got []string
			for _, s := range c.of(DataStaging, "10.1.1.1") {
				got = append(got, us(s.WindowStart))
				if s.WindowEnd-s.WindowStart != 5*60e6 {
					t.Errorf("window length %d µs", s.WindowEnd-s.WindowStart)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("DATA_STAGING windows %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHoppingWindows(t *testing.T) {
	// 21 distinct ports, one per second from 10:00:05 to 10:00:25. Every
	// 60 s window (hop 10 s) that holds all 21 ([start, start+60s) with
	// start in 09:59:30..10:00:00) has more than 20 ports.
	var conns []ingest.Conn
	for i := range 21 {
		conns = append(conns, conn(at("2026-01-01T10:00:05Z").Add(time.Duration(i)*time.Second), "10.1.1.1", "10.2.2.2", uint16(1000+i), 0, 0))
	}
	cfg := DefaultConfig()
	cfg.Output.SuppressRepeats = false
	c, _ := run(t, cfg, conns)
	var got []string
	for _, s := range c.of(PortScan, "10.1.1.1") {
		got = append(got, us(s.WindowStart))
	}
	if want := []string{"09:59:30", "09:59:40", "09:59:50", "10:00:00"}; !slices.Equal(got, want) {
		t.Errorf("PORT_SCAN windows %v, want %v", got, want)
	}
	// Rows only for the tiling window that holds the connections
	// ([10:00:00, 10:01:00)), not for the hops that overlap it.
	rows := hostRows(c, "10.1.1.1", "1m0s")
	if len(rows) != 1 || rows[0]["window_start"] != "2026-01-01 10:00:00Z" ||
		rows[0]["connections"] != "21" || rows[0]["distinct_ports"] != "21" {
		t.Errorf("one-minute host rows %v, want the one of [10:00:00, 10:01:00) with 21 connections and ports", rows)
	}

	// With repeats suppressed, the overlapping windows give one signal.
	c, st := run(t, DefaultConfig(), conns)
	if n := len(c.of(PortScan, "10.1.1.1")); n != 1 || st.SignalsSuppressed != 3 {
		t.Errorf("%d PORT_SCAN signals, %d suppressed; want 1 and 3", n, st.SignalsSuppressed)
	}
}

func TestSessionWindows(t *testing.T) {
	ex := func(ts time.Time) ingest.Conn { return conn(ts, "10.1.1.1", "198.51.100.7", 8080, 200, 1500) }
	t0 := at("2026-01-01T10:00:00Z")
	cases := []struct {
		name  string
		conns []ingest.Conn
		want  [][2]string // session bounds of COMMAND_EXCHANGE signals
	}{
		{
			"a gap of 2 min or more splits",
			[]ingest.Conn{ex(t0), ex(t0.Add(time.Minute)), ex(t0.Add(2 * time.Minute)),
				ex(t0.Add(4 * time.Minute)), ex(t0.Add(5 * time.Minute)), ex(t0.Add(6 * time.Minute))},
			[][2]string{{"10:00:00", "10:04:00"}, {"10:04:00", "10:08:00"}},
		},
		{
			"a shorter gap joins",
			[]ingest.Conn{ex(t0), ex(t0.Add(119 * time.Second)), ex(t0.Add(238 * time.Second))},
			[][2]string{{"10:00:00", "10:05:58"}},
		},
		{
			"sessions are cut every 10 minutes",
			func() []ingest.Conn {
				var cs []ingest.Conn
				for i := range 14 {
					cs = append(cs, ex(t0.Add(time.Duration(3+i*60)*time.Second))) // 10:00:03 .. 10:13:03
				}
				return cs
			}(),
			[][2]string{{"10:00:03", "10:10:00"}, {"10:10:03", "10:15:03"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := run(t, DefaultConfig(), tc.conns)
			var got [][2]string
			for _, s := range c.of(CommandExchange, "10.1.1.1") {
				got = append(got, [2]string{us(s.WindowStart), us(s.WindowEnd)})
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("sessions %v, want %v", got, tc.want)
			}
			if rows := pairRows(c, "10.1.1.1", SessionWindowName); len(rows) != len(tc.want) {
				t.Errorf("%d session rows, want %d", len(rows), len(tc.want))
			}
		})
	}
}

// TestWatermarkEmitsOnTime: a window ending at T is emitted when the
// first event at or after T + lateness arrives, not before.
func TestWatermarkEmitsOnTime(t *testing.T) {
	c := &collector{}
	e, err := NewEngine(DefaultConfig(), c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := at("2026-01-01T10:00:00Z")
	feed := func(ts time.Time, host string) {
		t.Helper()
		if err := e.Process(ctx, []ingest.Conn{conn(ts, host, "10.9.9.9", 22, 0, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	feed(t0.Add(5*time.Second), "10.1.1.1") // tiling window [10:00:00, 10:01:00)
	feed(t0.Add(89*time.Second), "10.1.1.2")
	if len(c.outs) != 0 {
		t.Fatalf("emitted before the watermark reached 10:01:00: %v", c.outs[0].end)
	}
	feed(t0.Add(90*time.Second), "10.1.1.2") // watermark 10:01:00
	end := t0.Add(time.Minute).UnixMicro()
	if len(c.outs) != 1 || c.outs[0].end != end {
		t.Fatalf("outputs %d, want the window ending 10:01:00", len(c.outs))
	}
	if c.outs[0].watermark != end {
		t.Errorf("watermark %s", us(c.outs[0].watermark))
	}
	// At 10:01:00 the one-minute host windows tile (their rows are here)
	// and sessions that ended in the last pair pane are emitted; the
	// hopping windows that closed at 10:00:10 .. 10:00:50 had no row and
	// no signal, hence no output.
	if want := []WindowBounds{{"host", "1m0s", end - 60e6, end}, {"pair", SessionWindowName, end - 30e6, end}}; !slices.Equal(c.outs[0].windows, want) {
		t.Errorf("closed windows %v, want %v", c.outs[0].windows, want)
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLateness: an event within the allowed lateness, out of order, gives
// the output of the in-order stream; a later one is counted and ignored.
func TestLateness(t *testing.T) {
	t0 := at("2026-01-01T10:00:00Z")
	scan := func(n int) []ingest.Conn {
		var cs []ingest.Conn
		for i := range n {
			cs = append(cs, conn(t0.Add(time.Duration(i)*time.Second), "10.1.1.1", "10.2.2.2", uint16(2000+i), 0, 0))
		}
		return cs
	}
	inOrder := append(scan(25), conn(t0.Add(200*time.Second), "10.1.1.9", "10.2.2.2", 80, 0, 0))
	want, _ := run(t, DefaultConfig(), inOrder)

	// Event 10:00:03 arrives after 10:00:24: 21 s late, within 30 s.
	within := slices.Clone(inOrder)
	ev := within[3]
	within = slices.Delete(within, 3, 4)
	within = slices.Insert(within, 24, ev)
	got, st := run(t, DefaultConfig(), within)
	if st.LateHost != 0 || !slices.Equal(got.transcript(), want.transcript()) {
		t.Errorf("out-of-order within lateness changed the output (late %d)", st.LateHost)
	}

	// An upload at 10:00:03 arrives after 10:01:10: its host pane
	// [10:00:00, 10:00:10) and its pair pane [10:00:00, 10:00:30) closed
	// when the watermark passed their ends. It is counted for both kinds
	// and changes nothing.
	upload := conn(t0.Add(3*time.Second), "10.1.1.1", "198.51.100.1", 443, 900*mB, 0)
	tail := []ingest.Conn{
		conn(t0.Add(70*time.Second), "10.1.1.9", "10.2.2.2", 80, 0, 0),
		upload,
		conn(t0.Add(200*time.Second), "10.1.1.9", "10.2.2.2", 80, 0, 0),
	}
	withLate := append(scan(25), tail...)
	withoutLate := append(scan(25), tail[0], tail[2])
	got, st = run(t, DefaultConfig(), withLate)
	ref, _ := run(t, DefaultConfig(), withoutLate)
	if st.LateHost != 1 || st.LatePair != 1 {
		t.Errorf("late counts host %d pair %d, want 1 and 1", st.LateHost, st.LatePair)
	}
	if !slices.Equal(got.transcript(), ref.transcript()) {
		t.Error("a late event changed the output")
	}

	// Between the two: 25 s after its host pane closed but before its
	// pair pane did, an event is late for host windows only.
	mid := append(scan(25), conn(t0.Add(45*time.Second), "10.1.1.9", "10.2.2.2", 80, 0, 0), upload)
	if _, st = run(t, DefaultConfig(), mid); st.LateHost != 1 || st.LatePair != 0 {
		t.Errorf("late counts host %d pair %d, want 1 and 0", st.LateHost, st.LatePair)
	}
}

// streamWithAttacks mixes the benchmark's synthetic traffic with one of
// each attack, so that the property tests see signals of every kind.
func streamWithAttacks(seed uint64, n int) []ingest.Conn {
	base := synthStream(n, 60, 400, 40, seed)
	conns := fill(make([]ingest.Conn, len(base)), base)
	t0 := time.UnixMicro(base[0].ts).Add(30 * time.Second)
	add := func(c ingest.Conn) { conns = append(conns, c) }
	for i := range 40 { // scan, privileged access, sweep, failures
		c := conn(t0.Add(time.Duration(i)*time.Second), "10.0.0.250", fmt.Sprintf("10.7.0.%d", i), []uint16{22, 445, 3389, 5985}[i%4]+uint16(i/4)*0, 0, 0)
		if i%2 == 0 {
			c.RespP = uint16(3000 + i)
		}
		c.ConnState = ingest.S0
		add(c)
	}
	for i := range 30 { // sweep on 445
		add(conn(t0.Add(time.Duration(60+i)*time.Second), "10.0.0.251", fmt.Sprintf("10.8.0.%d", i), 445, 100, 100))
	}
	for i := range 15 { // beacon with command exchange
		add(conn(t0.Add(time.Duration(i*60+i%3)*time.Second), "10.0.0.252", "198.51.100.99", 8443, 230, 1400))
	}
	add(conn(t0.Add(10*time.Second), "10.0.0.253", "10.5.5.5", 445, 0, 700*mB)) // staging
	for i := range 6 {                                                          // exfiltration
		add(conn(t0.Add(time.Duration(100+i*20)*time.Second), "10.0.0.253", fmt.Sprintf("198.18.%d.1", i), 443, 300*mB, 1000))
	}
	slices.SortStableFunc(conns, func(a, b ingest.Conn) int { return int(a.TS - b.TS) })
	return conns
}

// arrivalOrder delays each event by up to maxDelay: no event then
// arrives after another that is more than maxDelay newer, so none is
// late with that lateness.
func arrivalOrder(conns []ingest.Conn, maxDelay time.Duration, seed uint64) []ingest.Conn {
	rng := rand.New(rand.NewPCG(seed, 99))
	type keyed struct {
		at int64
		c  ingest.Conn
	}
	ks := make([]keyed, len(conns))
	for i, c := range conns {
		ks[i] = keyed{c.TS + rng.Int64N(int64(maxDelay/time.Microsecond)), c}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return int(a.at - b.at) })
	out := make([]ingest.Conn, len(ks))
	for i, k := range ks {
		out[i] = k.c
	}
	return out
}

func runBatches(t *testing.T, cfg Config, conns []ingest.Conn, batch int) (*collector, Stats) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	c := &collector{}
	e, err := NewEngine(cfg, c, nil, mem)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(conns); i += batch {
		if err := e.Process(context.Background(), conns[i:min(i+batch, len(conns))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, e.Stats()
}

// TestShuffleWithinLateness is the replay-equals-live property: any
// arrival order within the allowed lateness, in any batching, gives
// exactly the output of the time-ordered stream.
func TestShuffleWithinLateness(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limits.TrackInternalPairs = true
	for seed := range uint64(4) {
		conns := streamWithAttacks(seed+1, 6000)
		want, _ := runBatches(t, cfg, conns, 1000)
		if len(want.signals) == 0 || len(want.outs) == 0 {
			t.Fatal("the reference run produced nothing")
		}
		types := map[SignalType]bool{}
		for _, s := range want.signals {
			types[s.Type] = true
		}
		for _, typ := range []SignalType{PortScan, PrivilegedAccess, HostSweep, FailedConnections, PeriodicBeacon,
			PersistentDestination, CommandExchange, DataStaging, OutboundSpike, DestinationDiversity} {
			if !types[typ] {
				t.Errorf("seed %d: the stream makes no %s; the property would not cover it", seed, typ)
			}
		}
		wantT := want.transcript()
		for i, batch := range []int{1, 7, 1000} {
			shuffled := arrivalOrder(conns, time.Duration(cfg.AllowedLateness), seed*10+uint64(i))
			got, st := runBatches(t, cfg, shuffled, batch)
			if st.LateHost != 0 || st.LatePair != 0 {
				t.Fatalf("seed %d batch %d: %d/%d late events within the lateness", seed, batch, st.LateHost, st.LatePair)
			}
			if gotT := got.transcript(); !slices.Equal(gotT, wantT) {
				t.Errorf("seed %d batch %d: output differs from the time-ordered run:\n%s", seed, batch, firstDiff(gotT, wantT))
			}
		}
	}
}

// TestShuffleLongLateness: the property with lateness long enough for the
// host sets' pane bitmaps to span several words.
func TestShuffleLongLateness(t *testing.T) {
	for _, late := range []time.Duration{5 * time.Minute, 20 * time.Minute} {
		cfg := DefaultConfig()
		cfg.AllowedLateness = Duration(late)
		conns := streamWithAttacks(11, 4000)
		want, _ := runBatches(t, cfg, conns, 500)
		got, st := runBatches(t, cfg, arrivalOrder(conns, late, 5), 13)
		if st.LateHost != 0 || st.LatePair != 0 {
			t.Fatalf("lateness %s: %d/%d late events", late, st.LateHost, st.LatePair)
		}
		if gotT, wantT := got.transcript(), want.transcript(); !slices.Equal(gotT, wantT) {
			t.Errorf("lateness %s: output differs:\n%s", late, firstDiff(gotT, wantT))
		}
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("line %d:\n got  %s\n want %s", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}

func TestIdleEviction(t *testing.T) {
	t0 := at("2026-01-01T10:00:00Z")
	c := &collector{}
	e, err := NewEngine(DefaultConfig(), c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Process(ctx, []ingest.Conn{
		conn(t0, "10.1.1.1", "198.51.100.1", 443, 100, 100),
		conn(t0, "10.1.1.2", "198.51.100.2", 443, 100, 100),
	}); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.Hosts != 2 || st.Pairs != 2 {
		t.Fatalf("tracking %d hosts %d pairs, want 2 and 2", st.Hosts, st.Pairs)
	}
	// Nine minutes later the hosts are still needed by the 10-minute
	// windows; past the largest window plus the lateness they are not.
	for _, step := range []struct {
		after        time.Duration
		hosts, pairs int
	}{
		{9 * time.Minute, 3, 3},
		{12 * time.Minute, 1, 1},
	} {
		if err := e.Process(ctx, []ingest.Conn{conn(t0.Add(step.after), "10.1.1.3", "198.51.100.3", 443, 1, 1)}); err != nil {
			t.Fatal(err)
		}
		if st := e.Stats(); st.Hosts != step.hosts || st.Pairs != step.pairs {
			t.Errorf("after %s: %d hosts %d pairs, want %d and %d", step.after, st.Hosts, st.Pairs, step.hosts, step.pairs)
		}
		if err := e.checkInvariants(); err != nil {
			t.Fatal(err)
		}
	}
	st := e.Stats()
	if st.HostsEvictedIdle != 2 || st.PairsEvictedIdle != 2 || st.Addresses != 2 {
		t.Errorf("evicted %d hosts %d pairs, %d addresses left; want 2, 2, 2", st.HostsEvictedIdle, st.PairsEvictedIdle, st.Addresses)
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCapsOverflow(t *testing.T) {
	t0 := at("2026-01-01T10:00:00Z")
	// Eight hosts, one a minute; each talks to two external destinations.
	var conns []ingest.Conn
	for i := range 8 {
		ts := t0.Add(time.Duration(i) * time.Minute)
		src := fmt.Sprintf("10.1.1.%d", i+1)
		conns = append(conns, conn(ts, src, fmt.Sprintf("198.51.100.%d", i), 443, 1, 1),
			conn(ts, src, fmt.Sprintf("198.51.101.%d", i), 443, 1, 1))
	}
	for _, tc := range []struct {
		policy             OverflowPolicy
		hostsOut, refused  bool
		wantHosts, wantPrs int
	}{
		{EvictOldest, true, false, 4, 6},
		{Refuse, false, true, 4, 6},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Limits.MaxHosts = 4
			cfg.Limits.MaxPairs = 6
			cfg.Limits.Overflow = tc.policy
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			e, err := NewEngine(cfg, &collector{}, logger, mem)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range conns {
				if err := e.Process(context.Background(), []ingest.Conn{c}); err != nil {
					t.Fatal(err)
				}
				st := e.Stats()
				if st.Hosts > 4 || st.Pairs > 6 {
					t.Fatalf("%d hosts %d pairs over the caps", st.Hosts, st.Pairs)
				}
				if err := e.checkInvariants(); err != nil {
					t.Fatal(err)
				}
			}
			st := e.Stats()
			if st.Hosts != tc.wantHosts || st.Pairs != tc.wantPrs {
				t.Errorf("%d hosts %d pairs, want %d and %d", st.Hosts, st.Pairs, tc.wantHosts, tc.wantPrs)
			}
			if (st.HostsEvictedCap > 0) != tc.hostsOut || (st.HostsRefused > 0) != tc.refused ||
				(st.PairsEvictedCap > 0) != tc.hostsOut || (st.PairsRefused > 0) != tc.refused {
				t.Errorf("overflow counters %+v", st)
			}
			// One line per minute of event time at most.
			if n := strings.Count(logs.String(), "cap reached"); n == 0 || n > 8 {
				t.Errorf("%d overflow log lines:\n%s", n, logs.String())
			}
			if err := e.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestHostileDistinctPorts: one host hitting 65,535 ports in a minute keeps
// its distinct set at the cap, still reports a port scan (its count an
// estimate past the cap) and marks the row saturated.
func TestHostileDistinctPorts(t *testing.T) {
	t0 := at("2026-01-01T10:00:00Z")
	var conns []ingest.Conn
	for p := 1; p <= 65535; p++ {
		conns = append(conns, conn(t0.Add(time.Duration(p)*500*time.Microsecond), "10.1.1.1", "10.2.2.2", uint16(p), 0, 0))
	}
	cfg := DefaultConfig()
	c := &collector{}
	e, err := NewEngine(cfg, c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Process(context.Background(), conns); err != nil {
		t.Fatal(err)
	}
	m := e.Memory()
	if m.HostBytes > 2<<20 {
		t.Errorf("host state %d bytes for one hostile host", m.HostBytes)
	}
	// Two sets overflow: ports, and (port, internal destination) pairs.
	if st := e.Stats(); st.SetOverflows != 2*(65535-uint64(cfg.Limits.MaxSetElements)) {
		t.Errorf("set overflows %d", st.SetOverflows)
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	scans := c.of(PortScan, "10.1.1.1")
	if len(scans) == 0 || maxSeverity(scans) != Critical {
		t.Fatalf("PORT_SCAN %v", scans)
	}
	rows := hostRows(c, "10.1.1.1", "1m0s")
	sat := false
	for _, r := range rows {
		if r["window_start"] == "2026-01-01 10:00:00Z" {
			sat = r["sets_saturated"] == "true" && r["distinct_ports"] == "65535"
		}
	}
	if !sat {
		t.Errorf("row for [10:00, 10:01) not saturated at 65535 ports: %v", rows)
	}
}

func TestFlushEmptiesEverything(t *testing.T) {
	conns := streamWithAttacks(9, 3000)
	_, st := run(t, DefaultConfig(), conns) // run asserts the allocator is back to zero
	if st.Hosts != 0 || st.Pairs != 0 || st.Addresses != 0 || st.HostPanes != 0 || st.PairPanes != 0 {
		t.Errorf("state after Flush: %+v", st)
	}
	if st.Windows == 0 || st.HostRows == 0 || st.PairRows == 0 {
		t.Errorf("nothing emitted: %+v", st)
	}
}

func TestEmitErrorStopsProcess(t *testing.T) {
	boom := errors.New("downstream closed")
	e, err := NewEngine(DefaultConfig(), EmitterFunc(func(context.Context, *WindowOutput) error { return boom }), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := at("2026-01-01T10:00:00Z")
	// The second connection moves the watermark past 10:01:00, where the
	// first one's tiling row is emitted.
	err = e.Process(context.Background(), []ingest.Conn{
		conn(t0, "10.1.1.1", "10.2.2.2", 22, 0, 0),
		conn(t0.Add(2*time.Minute), "10.1.1.1", "10.2.2.2", 22, 0, 0),
		conn(t0.Add(4*time.Minute), "10.1.1.1", "10.2.2.2", 22, 0, 0),
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Process: %v, want %v", err, boom)
	}
	if n := e.Stats().Events; n != 2 {
		t.Errorf("processed %d events, want 2 (stopped at the second)", n)
	}
	if _, err := NewEngine(DefaultConfig(), nil, nil, nil); !errors.Is(err, ErrNilEmitter) {
		t.Errorf("nil emitter: %v", err)
	}
}

func TestInternalDecision(t *testing.T) {
	t0 := at("2026-01-01T10:00:00Z")
	mk := func(src string, lo ingest.Tristate) ingest.Conn {
		c := conn(t0, src, "198.51.100.1", 443, 1, 1)
		c.LocalOrig = lo
		return c
	}
	for _, tc := range []struct {
		c        ingest.Conn
		internal bool
	}{
		{mk("10.1.1.1", ingest.Unknown), true},
		{mk("172.31.0.1", ingest.Unknown), true},
		{mk("192.168.3.4", ingest.Unknown), true},
		{mk("fd12::1", ingest.Unknown), true},
		{mk("8.8.8.8", ingest.Unknown), false},
		{mk("2001:db8::1", ingest.Unknown), false},
		{mk("10.1.1.1", ingest.False), false}, // Zeek says remote: it wins
		{mk("8.8.8.8", ingest.True), true},    // Zeek's Site::local_nets wins
	} {
		_, st := run(t, DefaultConfig(), []ingest.Conn{tc.c})
		if got := st.External == 0; got != tc.internal {
			t.Errorf("%s local_orig=%s: internal %v, want %v", tc.c.OrigH, tc.c.LocalOrig, got, tc.internal)
		}
	}
	cfg := DefaultConfig()
	cfg.LocalNetworks = []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10")}
	if _, st := run(t, cfg, []ingest.Conn{mk("100.100.1.1", ingest.Unknown), mk("10.1.1.1", ingest.Unknown)}); st.External != 1 {
		t.Errorf("custom local networks: %d external, want 1", st.External)
	}
}

func TestEventTimeEnd(t *testing.T) {
	// A 3-minute upload that starts at 10:03:30 ends in the next staging
	// window: "end" places it there, "start" does not.
	c := conn(at("2026-01-01T10:03:30Z"), "10.1.1.1", "10.2.2.2", 445, 0, 600*mB)
	c.Duration = 3 * time.Minute
	for _, tc := range []struct {
		et   EventTime
		want string
	}{{EventTimeStart, "10:00:00"}, {EventTimeEnd, "10:05:00"}} {
		cfg := DefaultConfig()
		cfg.EventTime = tc.et
		col, _ := run(t, cfg, []ingest.Conn{c})
		s := col.of(DataStaging, "10.1.1.1")
		if len(s) != 1 || us(s[0].WindowStart) != tc.want {
			t.Errorf("event_time %s: DATA_STAGING %v, want window at %s", tc.et, s, tc.want)
		}
	}
}

// runExhaustive is runBatches with every gate turned off: every host and
// pair with a connection in a window is evaluated at every hop, as if
// nothing could be skipped.
func runExhaustive(t *testing.T, cfg Config, conns []ingest.Conn, b Baselines, exhaustive bool) *collector {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	c := &collector{}
	e, err := NewEngine(cfg, c, nil, mem)
	if err != nil {
		t.Fatal(err)
	}
	e.SetBaselines(b)
	if exhaustive {
		e.exhaustive, e.queueMin = true, 1
	}
	for i := 0; i < len(conns); i += 500 {
		if err := e.Process(context.Background(), conns[i:min(i+500, len(conns))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGatesChangeNothing: skipping the hosts and pairs whose gates fail
// (and the pairs with too few retained connections) gives exactly the
// output of evaluating everything, with and without repeat suppression
// and per-host baselines.
func TestGatesChangeNothing(t *testing.T) {
	quiet := hostBaseline{BaselineConnections: {2, 1}, BaselineBytesOutExternal: {1 * mB, 1 * mB}}
	for _, tc := range []struct {
		name     string
		suppress bool
		b        Baselines
	}{
		{"default", true, nil},
		{"every repeat", false, nil},
		{"baselines", false, quiet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Limits.TrackInternalPairs = true
			cfg.Output.SuppressRepeats = tc.suppress
			for seed := range uint64(3) {
				conns := append(readFile(t, "testdata/reference/01-lateral-movement.ndjson"), streamWithAttacks(seed+20, 5000)...)
				want := runExhaustive(t, cfg, conns, tc.b, true)
				got := runExhaustive(t, cfg, conns, tc.b, false)
				if len(want.signals) == 0 {
					t.Fatal("no signals")
				}
				if gotT, wantT := got.transcript(), want.transcript(); !slices.Equal(gotT, wantT) {
					t.Errorf("seed %d: gated output differs from the exhaustive one:\n%s", seed, firstDiff(gotT, wantT))
				}
			}
		})
	}
}

// TestRowsTile: every row is a tiling window's (its start a multiple of
// its length) or a session's, and every tiling window with a connection
// has its row.
func TestRowsTile(t *testing.T) {
	cfg := DefaultConfig()
	conns := streamWithAttacks(4, 4000)
	c, st := run(t, cfg, conns)
	if st.HostRows == 0 || st.PairRows == 0 {
		t.Fatalf("no rows: %+v", st)
	}
	seen := map[string]bool{}
	for _, o := range c.outs {
		for _, rows := range [][]map[string]string{o.hosts, o.pairs} {
			for _, r := range rows {
				if r["window"] == SessionWindowName {
					continue
				}
				start, _ := time.Parse("2006-01-02 15:04:05Z", r["window_start"])
				size, err := time.ParseDuration(r["window"])
				if err != nil {
					t.Fatal(err)
				}
				if start.UnixMicro()%size.Microseconds() != 0 {
					t.Errorf("row of an overlapping window: %v", r)
				}
				if r["host"] != "" {
					seen[r["host"]+" "+r["window"]+" "+r["window_start"]] = true
				}
			}
		}
	}
	for _, x := range conns {
		if !x.OrigH.IsPrivate() {
			continue
		}
		for _, size := range []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute} {
			start := time.UnixMicro(x.TS - x.TS%size.Microseconds()).UTC().Format("2006-01-02 15:04:05Z")
			if k := x.OrigH.String() + " " + size.String() + " " + start; !seen[k] {
				t.Fatalf("no row for %s", k)
			}
		}
	}
}

// TestSkipRecordsChangesOnlyRecords: with SkipRecords the engine emits at
// the same ticks, with the same windows, watermarks and signals, and nil
// records; the rows are still counted.
func TestSkipRecordsChangesOnlyRecords(t *testing.T) {
	cfg := DefaultConfig()
	conns := append(readFile(t, "testdata/reference/01-lateral-movement.ndjson"), streamWithAttacks(7, 5000)...)
	want, wantSt := run(t, cfg, conns)

	type tick struct {
		end, wm  int64
		windows  []WindowBounds
		nSignals int
	}
	var got []tick
	var sigs []Signal
	e, err := NewEngine(cfg, EmitterFunc(func(_ context.Context, out *WindowOutput) error {
		if out.Hosts != nil || out.Pairs != nil {
			return fmt.Errorf("records built at %d despite SkipRecords", out.End)
		}
		got = append(got, tick{out.End, out.Watermark, out.Windows, len(out.Signals)})
		sigs = append(sigs, out.Signals...)
		return nil
	}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.SkipRecords()
	if err := e.Process(context.Background(), conns); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want.outs) {
		t.Fatalf("%d outputs, want %d", len(got), len(want.outs))
	}
	for i, o := range want.outs {
		if g := got[i]; g.end != o.end || g.wm != o.watermark || g.nSignals != o.nSignals || !slices.Equal(g.windows, o.windows) {
			t.Fatalf("output %d: got %+v, want end %d watermark %d windows %v signals %d", i, g, o.end, o.watermark, o.windows, o.nSignals)
		}
	}
	if len(want.signals) == 0 || !slices.EqualFunc(sigs, want.signals, func(a, b Signal) bool { return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b) }) {
		t.Errorf("signals differ (%d against %d)", len(sigs), len(want.signals))
	}
	st := e.Stats()
	if st.HostRows != wantSt.HostRows || st.PairRows != wantSt.PairRows || st.Windows != wantSt.Windows {
		t.Errorf("stats %d/%d rows, %d windows; want %d/%d, %d", st.HostRows, st.PairRows, st.Windows, wantSt.HostRows, wantSt.PairRows, wantSt.Windows)
	}
}
