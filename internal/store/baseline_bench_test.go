package store_test

import (
	_ "embed"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ndr-go/ndr/baseline"
	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/store"
)

//go:embed testdata/baseline_seed.sql
var baselineSeed string

// seedBaselineAggregates writes synthetic host-hour and destination
// aggregates straight into the aggregate tables (testdata/baseline_seed.sql):
// hosts x hours ending at end, about 70 % of the host-hours active.
func seedBaselineAggregates(tb testing.TB, s *store.Store, hosts, hours int, end time.Time) {
	tb.Helper()
	ctx := store.WithParams(tb.Context(), store.Params{
		"hosts": strconv.Itoa(hosts), "hours": strconv.Itoa(hours), "end": strconv.FormatInt(end.Unix(), 10),
	})
	var lines []string
	for _, l := range strings.Split(baselineSeed, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if err := s.Exec(ctx, stmt); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestRetrainSeeded runs the retrain end to end over seeded aggregates of
// a small network: every seeded host gets a model.
func TestRetrainSeeded(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	end := time.Date(2026, 3, 30, 0, 0, 0, 0, time.UTC)
	seedBaselineAggregates(t, s, 200, 14*24, end)
	cfg := baseline.RetrainConfig{Params: baseline.DefaultParams(), Window: 14 * 24 * time.Hour, Now: func() time.Time { return end },
		LocalNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	snap, st, err := baseline.Retrain(t.Context(), s, s, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Hosts != 200 || st.Destinations < 5000 || snap.Version() != 1 {
		t.Errorf("retrain %+v", st)
	}
	m, ok := snap.HostModel(addr("10.0.0.17"))
	if hod, week := m.Seasonal(); !ok || !hod || !week || m.HistoryHours() != 14*24 {
		t.Errorf("10.0.0.17: ok %v, history %d, seasonal %v %v", ok, m.HistoryHours(), hod, week)
	}
}

// BenchmarkRetrain is the issue 6 target: `ndr retrain` over 30 days x
// 10,000 hosts of aggregates (about 5 million host-hours) in at most 60
// s on 2 cores: read from ClickHouse, fit, save. Seeding is not timed.
//
//	go test -run '^$' -bench BenchmarkRetrain -benchtime 1x ./internal/store/
func BenchmarkRetrain(b *testing.B) {
	s := chtest.OpenStore(b)
	end := time.Now().UTC().Truncate(time.Hour)
	seedBaselineAggregates(b, s, 10_000, 30*24, end)
	if err := s.Exec(b.Context(), "OPTIMIZE TABLE host_hour FINAL"); err != nil {
		b.Fatal(err)
	}
	cfg := baseline.RetrainConfig{Params: baseline.DefaultParams(), Window: 30 * 24 * time.Hour, Now: func() time.Time { return end },
		LocalNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	b.ResetTimer()
	for b.Loop() {
		if _, st, err := baseline.Retrain(b.Context(), s, s, cfg, nil); err != nil || st.Hosts != 10_000 {
			b.Fatalf("retrain %+v: %v", st, err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/retrain")
}
