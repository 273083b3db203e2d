package hunt_test

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/hunt"
	"github.com/ndr-go/ndr/internal/store"
	"github.com/ndr-go/ndr/scoring"
)

var t0 = time.Date(2026, 2, 6, 0, 0, 0, 0, time.UTC)

// fakeDetection is a detection of type typ from src at hour h of t0's day.
func fakeDetection(i int, typ string, sev features.Severity, src string, h int, dsts ...string) scoring.Detection {
	d := scoring.Detection{
		ID: fmt.Sprintf("%s-%03d", typ, i), RuleID: "R-" + typ, Type: typ, Src: netip.MustParseAddr(src),
		FirstSeen: t0.Add(time.Duration(h) * time.Hour).UnixMicro(), LastSeen: t0.Add(time.Duration(h)*time.Hour + 30*time.Minute).UnixMicro(),
		Severity: sev, Confidence: 0.75, Score: 80, Count: 1, Version: 1,
		Signals: []scoring.SignalRef{{Type: features.PeriodicBeacon, Severity: sev, WindowStart: t0.UnixMicro(), WindowEnd: t0.Add(5 * time.Minute).UnixMicro(),
			Dst: netip.MustParseAddr("203.0.113.99"), DstPort: 8443, Value: 0.05, Threshold: 0.3}},
		Evidence: scoring.Evidence{Summary: scoring.Summary{RequiredSignals: 1, MatchedSignals: 1,
			SignalCounts: map[features.SignalType]int{features.PeriodicBeacon: 1}, Connections: 10, Ports: []uint16{8443}, Services: []string{}}},
		MITRE:              scoring.MITRE{Tactic: "TA0011", TacticName: "Command and Control", Techniques: []scoring.Technique{{ID: "T1071", Name: "Application Layer Protocol"}}},
		RecommendedActions: []string{"isolate"},
	}
	for _, s := range dsts {
		d.Dsts = append(d.Dsts, netip.MustParseAddr(s))
	}
	return d
}

// storeDetections writes ds (and any later versions) through the store's
// analysis writer.
func storeDetections(t *testing.T, st *store.Store, ds ...scoring.Detection) {
	t.Helper()
	aw, err := st.NewAnalysisWriter(st.Config().Writer)
	if err != nil {
		t.Fatal(err)
	}
	aw.Start(t.Context())
	for _, d := range ds {
		if err := aw.AddDetection(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	if err := aw.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func ids(ds []hunt.StoredDetection) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func TestListDetections(t *testing.T) {
	st := chtest.OpenStore(t)
	c2 := fakeDetection(1, "C2_BEACONING", features.Critical, "10.0.0.23", 2, "203.0.113.99")
	c2v2 := c2
	c2v2.Version, c2v2.Count, c2v2.LastSeen = 2, 2, t0.Add(5*time.Hour).UnixMicro()
	lm := fakeDetection(2, "LATERAL_MOVEMENT", features.High, "10.0.0.5", 4, "10.0.0.10", "10.0.0.23")
	ex := fakeDetection(3, "DATA_EXFILTRATION", features.Medium, "10.0.0.7", 8, "198.51.100.7")
	v6 := fakeDetection(4, "C2_BEACONING", features.Low, "2001:db8::5", 10, "2001:db8:ffff::1")
	storeDetections(t, st, c2, lm, ex, v6)
	storeDetections(t, st, c2v2) // a later update, as a second insert

	list := func(t *testing.T, f hunt.DetectionFilter) ([]hunt.StoredDetection, string) {
		t.Helper()
		ds, next, err := hunt.ListDetections(t.Context(), st, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if !f.Match(&d.Detection) {
				t.Errorf("%s listed but Match says no", d.ID)
			}
		}
		return ds, next
	}
	for _, tc := range []struct {
		name string
		f    hunt.DetectionFilter
		want []string
	}{
		{"all, newest first", hunt.DetectionFilter{}, []string{v6.ID, ex.ID, lm.ID, c2.ID}},
		{"type", hunt.DetectionFilter{Types: []string{"C2_BEACONING"}}, []string{v6.ID, c2.ID}},
		{"types", hunt.DetectionFilter{Types: []string{"LATERAL_MOVEMENT", "DATA_EXFILTRATION"}}, []string{ex.ID, lm.ID}},
		{"min severity", hunt.DetectionFilter{MinSeverity: features.High}, []string{lm.ID, c2.ID}},
		{"host as source", hunt.DetectionFilter{Host: netip.MustParseAddr("10.0.0.7")}, []string{ex.ID}},
		{"host as source or destination", hunt.DetectionFilter{Host: netip.MustParseAddr("10.0.0.23")}, []string{lm.ID, c2.ID}},
		{"IPv6 host", hunt.DetectionFilter{Host: netip.MustParseAddr("2001:db8:ffff::1")}, []string{v6.ID}},
		// c2's latest version lasts until 05:00, so it overlaps [04:45, 06:00).
		{"time overlap uses the latest version", hunt.DetectionFilter{From: t0.Add(4*time.Hour + 45*time.Minute), To: t0.Add(6 * time.Hour)}, []string{c2.ID}},
		{"from", hunt.DetectionFilter{From: t0.Add(8 * time.Hour)}, []string{v6.ID, ex.ID}},
		{"to", hunt.DetectionFilter{To: t0.Add(4 * time.Hour)}, []string{c2.ID}},
		{"nothing", hunt.DetectionFilter{Types: []string{"NOPE"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds, next := list(t, tc.f)
			if got := ids(ds); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if next != "" {
				t.Errorf("next page %q after everything", next)
			}
		})
	}

	t.Run("round trip of the latest version", func(t *testing.T) {
		ds, _ := list(t, hunt.DetectionFilter{Types: []string{"C2_BEACONING"}, Host: netip.MustParseAddr("10.0.0.23")})
		if len(ds) != 1 {
			t.Fatalf("%d detections", len(ds))
		}
		got := ds[0]
		if got.DetectedAt.IsZero() || time.Since(got.DetectedAt) > time.Hour {
			t.Errorf("detected_at %v, want about now", got.DetectedAt)
		}
		want := c2v2
		if !reflect.DeepEqual(got.Detection, want) {
			t.Errorf("read back\n%+v\nwant\n%+v", got.Detection, want)
		}
	})

	t.Run("pages", func(t *testing.T) {
		var all []string
		tok := ""
		for page := 0; ; page++ {
			ds, next := list(t, hunt.DetectionFilter{Limit: 1, PageToken: tok})
			if len(ds) != 1 {
				t.Fatalf("page %d: %d detections", page, len(ds))
			}
			all = append(all, ds[0].ID)
			if next == "" {
				break
			}
			tok = next
		}
		if want := []string{v6.ID, ex.ID, lm.ID, c2.ID}; !slices.Equal(all, want) {
			t.Errorf("pages gave %v, want %v", all, want)
		}
		ds, next := list(t, hunt.DetectionFilter{Limit: 3})
		if len(ds) != 3 || next == "" {
			t.Fatalf("limit 3: %d and next %q", len(ds), next)
		}
		ds, next = list(t, hunt.DetectionFilter{Limit: 3, PageToken: next})
		if got := ids(ds); !slices.Equal(got, []string{c2.ID}) || next != "" {
			t.Errorf("second page %v (next %q), want [%s]", got, next, c2.ID)
		}
	})

	t.Run("bad filters", func(t *testing.T) {
		for _, f := range []hunt.DetectionFilter{
			{Limit: hunt.MaxLimit + 1},
			{Limit: -1},
			{PageToken: "garbage!"},
			{Types: []string{"x' OR 1=1"}},
			{From: t0, To: t0},
			{MinSeverity: features.Critical + 1},
		} {
			if _, _, err := hunt.ListDetections(t.Context(), st, f); !errors.Is(err, hunt.ErrUsage) {
				t.Errorf("%+v: %v, want a usage error", f, err)
			}
		}
	})
}
