package store_test

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ndr-go/ndr/baseline"
	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/store"
)

// bt0 is a Monday 00:00 UTC.
var bt0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// storeConns writes conns through a ConnWriter, so the materialized views
// see them as they see production inserts.
func storeConns(t *testing.T, s *store.Store, conns []ingest.Conn) {
	t.Helper()
	w := startWriter(t, s, writerConfig(), store.WriterHooks{})
	for i := 0; i < len(conns); i += 10_000 {
		if err := w.Write(t.Context(), batch("s", "baseline", uint64(i+1), conns[i:min(i+10_000, len(conns))]), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// baselineConns: three days of traffic. 10.0.0.5 uploads 10 MB to two
// external hosts every 10 minutes and opens SMB and RDP to an internal
// server each hour; 10.0.0.6 browses; 100.64.0.7 is internal only by the
// sensor's local_orig; 8.8.8.8 is an external originator.
func baselineConns(days int) []ingest.Conn {
	var out []ingest.Conn
	us := func(d time.Duration) int64 { return bt0.Add(d).UnixMicro() }
	for m := 0; m < days*24*60; m += 10 {
		at := time.Duration(m) * time.Minute
		ext := addr("198.51.100.1")
		if m%20 == 0 {
			ext = addr("198.51.100.2")
		}
		out = append(out,
			ingest.Conn{TS: us(at), UID: fmt.Sprintf("u%d", m), OrigH: addr("10.0.0.5"), RespH: ext, RespP: 443, Proto: ingest.TCP, OrigBytes: 10e6, RespBytes: 1e4},
			ingest.Conn{TS: us(at + time.Second), UID: fmt.Sprintf("w%d", m), OrigH: addr("10.0.0.6"), RespH: addr("198.51.100.1"), RespP: 443, Proto: ingest.TCP, OrigBytes: 1e3, RespBytes: 1e6},
		)
		if m%60 == 0 {
			out = append(out,
				ingest.Conn{TS: us(at + 2*time.Second), UID: fmt.Sprintf("s%d", m), OrigH: addr("10.0.0.5"), RespH: addr("10.20.0.9"), RespP: 445, Proto: ingest.TCP, OrigBytes: 5e3},
				ingest.Conn{TS: us(at + 3*time.Second), UID: fmt.Sprintf("r%d", m), OrigH: addr("10.0.0.5"), RespH: addr("10.20.0.9"), RespP: 3389, Proto: ingest.TCP, OrigBytes: 5e3},
				ingest.Conn{TS: us(at + 4*time.Second), UID: fmt.Sprintf("c%d", m), OrigH: addr("100.64.0.7"), LocalOrig: ingest.True, RespH: addr("203.0.113.9"), RespP: 8443, Proto: ingest.TCP, OrigBytes: 77},
				ingest.Conn{TS: us(at + 5*time.Second), UID: fmt.Sprintf("x%d", m), OrigH: addr("8.8.8.8"), RespH: addr("10.0.0.5"), RespP: 22, Proto: ingest.TCP, OrigBytes: 1},
			)
		}
	}
	return out
}

// The materialized views' aggregates equal the same aggregation done
// directly over conn.
func TestHostHourMatchesConn(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	storeConns(t, s, baselineConns(2))
	internal := func(col, local string) string {
		return fmt.Sprintf("ifNull(%s, isIPAddressInRange(toString(%s), '::ffff:10.0.0.0/104') OR isIPAddressInRange(toString(%s), '::ffff:172.16.0.0/108') "+
			"OR isIPAddressInRange(toString(%s), '::ffff:192.168.0.0/112') OR isIPAddressInRange(toString(%s), 'fc00::/7'))", local, col, col, col, col)
	}
	direct := `SELECT orig_h, toStartOfHour(ts) AS hour, count(), sumIf(orig_bytes, NOT ` + internal("resp_h", "local_resp") + `),
	uniqExactIf(resp_h, NOT ` + internal("resp_h", "local_resp") + `), uniqExactIf(resp_h, ` + internal("resp_h", "local_resp") + `),
	countIf(` + internal("resp_h", "local_resp") + ` AND resp_p IN (22, 23, 135, 139, 445, 3389, 5900, 5985, 5986))
	FROM conn WHERE ` + internal("orig_h", "local_orig") + ` GROUP BY orig_h, hour`
	view := `SELECT host, hour, sum(connections), sum(bytes_out_external), uniqMerge(external_dsts), uniqMerge(internal_dsts), sum(admin_connections)
	FROM host_hour GROUP BY host, hour`
	var diff, n uint64
	if err := s.QueryRow(t.Context(), "SELECT count() FROM (("+direct+") EXCEPT ("+view+"))").Scan(&diff); err != nil {
		t.Fatal(err)
	}
	if err := s.QueryRow(t.Context(), "SELECT count() FROM ("+view+")").Scan(&n); err != nil {
		t.Fatal(err)
	}
	// 2 days x 24 hours x 3 internal hosts.
	if diff != 0 || n != 144 {
		t.Errorf("host_hour: %d rows differ from conn, %d rows; want 0 and 144", diff, n)
	}
	directDst := `SELECT resp_h, toDate(ts) AS day, uniqExact(orig_h), count(), min(ts) FROM conn
	WHERE ` + internal("orig_h", "local_orig") + ` AND NOT ` + internal("resp_h", "local_resp") + ` GROUP BY resp_h, day`
	viewDst := `SELECT dst, day, uniqMerge(internal_hosts), sum(connections), min(first_seen) FROM dst_prevalence GROUP BY dst, day`
	if err := s.QueryRow(t.Context(), "SELECT count() FROM (("+directDst+") EXCEPT ("+viewDst+"))").Scan(&diff); err != nil {
		t.Fatal(err)
	}
	if err := s.QueryRow(t.Context(), "SELECT count() FROM ("+viewDst+")").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if diff != 0 || n != 6 {
		t.Errorf("dst_prevalence: %d rows differ from conn, %d rows; want 0 and 6", diff, n)
	}

	// ReadHostHours: the hours of each internal host, sorted, with values.
	q := baseline.HistoryQuery{From: bt0, To: bt0.Add(48 * time.Hour), LocalNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	got := map[netip.Addr]baseline.HostHours{}
	err := s.ReadHostHours(t.Context(), q, func(h *baseline.HostHours) error {
		c := baseline.HostHours{Host: h.Host, Hours: append([]int64(nil), h.Hours...), AdminMask: append([]uint16(nil), h.AdminMask...)}
		for m := range h.Values {
			c.Values[m] = append([]float64(nil), h.Values[m]...)
		}
		got[h.Host] = c
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("ReadHostHours: hosts %v, want 10.0.0.5, 10.0.0.6 and 100.64.0.7 (local_orig)", got)
	}
	h5 := got[addr("10.0.0.5")]
	if len(h5.Hours) != 48 || h5.Hours[0] != bt0.Unix()/3600 || h5.Hours[47] != bt0.Unix()/3600+47 {
		t.Fatalf("10.0.0.5 hours %v", h5.Hours)
	}
	for i := range h5.Hours {
		if h5.Values[baseline.Connections][i] != 8 || h5.Values[baseline.BytesOutExternal][i] != 60e6 ||
			h5.Values[baseline.ExternalDestinations][i] != 2 || h5.Values[baseline.InternalDestinations][i] != 1 ||
			h5.Values[baseline.AdminConnections][i] != 2 || h5.AdminMask[i] != 1<<4|1<<5 {
			t.Fatalf("10.0.0.5 hour %d: %v %v %v %v %v mask %b", i, h5.Values[0][i], h5.Values[1][i], h5.Values[2][i], h5.Values[3][i], h5.Values[4][i], h5.AdminMask[i])
		}
	}
	// Narrower networks leave out 10.0.0.6; the sensor's word keeps 100.64.0.7.
	q.LocalNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32")}
	var hosts []netip.Addr
	if err := s.ReadHostHours(t.Context(), q, func(h *baseline.HostHours) error { hosts = append(hosts, h.Host); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(hosts, netip.Addr.Compare)
	if len(hosts) != 2 || hosts[0] != addr("10.0.0.5") || hosts[1] != addr("100.64.0.7") {
		t.Errorf("hosts with 10.0.0.5/32: %v", hosts)
	}

	// ReadDestinations: prevalence over the window, first seen ever.
	dsts := map[netip.Addr]baseline.Destination{}
	q.From = bt0.Add(24 * time.Hour)
	if err := s.ReadDestinations(t.Context(), q, func(d baseline.Destination) error { dsts[d.Addr] = d; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dst   string
		hosts int
		first time.Time
	}{
		{"198.51.100.1", 2, bt0.Add(time.Second)},
		{"198.51.100.2", 1, bt0},
		{"203.0.113.9", 1, bt0.Add(4 * time.Second)},
	} {
		d, ok := dsts[addr(tc.dst)]
		if !ok || d.InternalHosts != tc.hosts || !d.FirstSeen.Equal(tc.first) {
			t.Errorf("destination %s: %+v (ok %v), want %d hosts, first %s", tc.dst, d, ok, tc.hosts, tc.first)
		}
	}
	if len(dsts) != 3 {
		t.Errorf("destinations %v, want 3", dsts)
	}
}

func TestBackfill(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	storeConns(t, s, baselineConns(1))
	// Pretend the rows were stored before migration 0004: rewrite their
	// ingest time and empty the aggregates the views filled.
	for _, q := range []string{
		// A day back, not further: retention counts from ingest_time.
		"ALTER TABLE conn UPDATE ingest_time = ingest_time - INTERVAL 1 DAY WHERE 1 SETTINGS mutations_sync = 2",
		"TRUNCATE TABLE host_hour", "TRUNCATE TABLE dst_prevalence",
	} {
		if err := s.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	nets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	st, err := s.BackfillHostAggregates(t.Context(), nets)
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped || st.ConnRows != uint64(len(baselineConns(1))) {
		t.Errorf("backfill %+v, want %d rows", st, len(baselineConns(1)))
	}
	var hosts, conns, dsts uint64
	if err := s.QueryRow(t.Context(), "SELECT uniqExact(host), sum(connections) FROM host_hour").Scan(&hosts, &conns); err != nil {
		t.Fatal(err)
	}
	if err := s.QueryRow(t.Context(), "SELECT uniqExact(dst) FROM dst_prevalence").Scan(&dsts); err != nil {
		t.Fatal(err)
	}
	// 10.0.0.5 (144+48 conns), 10.0.0.6 (144), 100.64.0.7 (24, local_orig).
	if hosts != 3 || conns != 144+48+144+24 || dsts != 3 {
		t.Errorf("after backfill: %d hosts, %d connections, %d destinations; want 3, 360, 3", hosts, conns, dsts)
	}
	st, err = s.BackfillHostAggregates(t.Context(), nets)
	if err != nil || !st.Skipped {
		t.Errorf("second backfill: %+v, %v; want skipped", st, err)
	}
}

// Retrain reads the aggregates, fits, saves a version; the Poller (what
// `ndr serve` runs) installs it, and the next retrain, without a restart.
func TestRetrainAndPoll(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	storeConns(t, s, baselineConns(3))
	var reg baseline.Registry
	poller, err := baseline.NewPoller(&reg, s, time.Minute, chtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := poller.Poll(t.Context()); ok || err != nil {
		t.Fatalf("poll of an empty store: %v, %v", ok, err)
	}
	if _, err := s.LoadLatestBaseline(t.Context()); !errors.Is(err, baseline.ErrNoSnapshot) {
		t.Errorf("LoadLatestBaseline of an empty store: %v, want ErrNoSnapshot", err)
	}
	cfg := baseline.RetrainConfig{Params: baseline.DefaultParams(), Window: 30 * 24 * time.Hour,
		LocalNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Now:           func() time.Time { return bt0.Add(72*time.Hour + 30*time.Minute) }}
	snap, st, err := baseline.Retrain(t.Context(), s, s, cfg, chtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 1 || st.Hosts != 3 || st.Destinations != 3 || !st.To.Equal(bt0.Add(72*time.Hour)) {
		t.Errorf("retrain stats %+v", st)
	}
	if ok, err := poller.Poll(t.Context()); !ok || err != nil || reg.Version() != 1 {
		t.Fatalf("poll after retrain: %v, %v, version %d", ok, err, reg.Version())
	}
	if !reg.Current().Equal(snap) {
		t.Error("loaded snapshot differs from the saved one")
	}
	// 72 active hours of 60 MB, shrunk towards the population prior (the
	// weighted median host, 10.0.0.6 with 6 kB an hour) by a weight near 1:
	// the hosts differ far more than this host's hours do.
	m, ok := reg.Current().HostModel(addr("10.0.0.5"))
	w := m.Weight(baseline.BytesOutExternal)
	want := w*math.Log1p(60e6) + (1-w)*math.Log1p(6e3)
	if loc, _ := m.Expected(baseline.BytesOutExternal, 10); !ok || w < 0.99 || math.Abs(loc-want) > 0.01 {
		t.Errorf("10.0.0.5 bytes location %.3f weight %.3f (ok %v), want %.3f", loc, w, ok, want)
	}
	if a, _ := reg.Current().AdminPorts(addr("10.0.0.5")); !a.Uses(445) || !a.Uses(3389) || a.Uses(22) {
		t.Errorf("admin use %+v", a)
	}

	// A second retrain; the poller picks it up.
	if _, _, err := baseline.Retrain(t.Context(), s, s, cfg, nil); err != nil {
		t.Fatal(err)
	}
	if ok, err := poller.Poll(t.Context()); !ok || err != nil || reg.Version() != 2 {
		t.Fatalf("poll after second retrain: %v, %v, version %d", ok, err, reg.Version())
	}
	vs, err := s.BaselineVersions(t.Context())
	if err != nil || len(vs) != 2 || vs[0].Version != 2 || vs[0].Hosts != 3 || !vs[0].DataTo.Equal(bt0.Add(72*time.Hour)) {
		t.Fatalf("versions %+v, %v", vs, err)
	}
	// Hunting: the latest bands.
	var rows uint64
	var typical float64
	if err := s.QueryRow(t.Context(), `SELECT count(), anyIf(typical, host_ip = '10.0.0.5' AND metric = 'bytes_out_external' AND hour_of_week = 10)
		FROM baseline_bands`).Scan(&rows, &typical); err != nil {
		t.Fatal(err)
	}
	if rows != 3*baseline.NumMetrics*168 || math.Abs(typical-math.Expm1(want))/typical > 0.01 {
		t.Errorf("baseline_bands: %d rows, typical %.4g; want %d rows and %.4g", rows, typical, 3*baseline.NumMetrics*168, math.Expm1(want))
	}
	// A version is saved once; pruning keeps the newest.
	if err := s.SaveBaseline(t.Context(), snap); err == nil {
		t.Error("saving version 1 again: accepted")
	}
	if err := s.PruneBaselines(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if vs, _ := s.BaselineVersions(t.Context()); len(vs) != 1 || vs[0].Version != 2 {
		t.Errorf("after prune: %+v", vs)
	}
	if _, err := s.LoadBaseline(t.Context(), 1); !errors.Is(err, baseline.ErrNoSnapshot) {
		t.Errorf("pruned version: %v, want ErrNoSnapshot", err)
	}
}
