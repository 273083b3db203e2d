package scoring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ndr-go/ndr/features"
)

var base = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixMicro()

const minute = int64(60e6)

// mk builds a signal ending at base + endMin minutes with a 5-minute
// window.
func mk(typ features.SignalType, src string, endMin int64, sev features.Severity) features.Signal {
	end := base + endMin*minute
	return features.Signal{
		Type: typ, Src: netip.MustParseAddr(src), WindowStart: end - 5*minute, WindowEnd: end,
		Severity: sev, Value: 1, Threshold: 1,
	}
}

func pair(s features.Signal, dst string, port uint16) features.Signal {
	s.Dst, s.DstPort = netip.MustParseAddr(dst), port
	return s
}

func lmSet(src string, endMin int64) []features.Signal {
	return []features.Signal{
		mk(features.PortScan, src, endMin, features.Medium),
		mk(features.ConnectionSpike, src, endMin, features.Critical),
		mk(features.PrivilegedAccess, src, endMin, features.Critical),
	}
}

func c2Set(src, dst string, port uint16, endMin int64) []features.Signal {
	return []features.Signal{
		pair(mk(features.PeriodicBeacon, src, endMin, features.High), dst, port),
		pair(mk(features.PersistentDestination, src, endMin, features.Critical), dst, port),
		pair(mk(features.CommandExchange, src, endMin, features.High), dst, port),
	}
}

// recorder is a sink that keeps every event.
type recorder struct{ events []Event }

func (r *recorder) Emit(_ context.Context, ev Event) error {
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) kinds() string {
	var b strings.Builder
	for _, ev := range r.events {
		b.WriteString(ev.Kind.String()[:1])
	}
	return b.String()
}

func newEngine(t testing.TB, rules []Rule, opts Options) (*Engine, *recorder) {
	t.Helper()
	rec := &recorder{}
	e, err := NewEngine(rules, rec, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e, rec
}

// feed consumes signals one call per signal, advancing the watermark to
// each signal's window end, as a live stream does, then flushes.
func feed(t testing.TB, e *Engine, sigs []features.Signal) {
	t.Helper()
	ctx := context.Background()
	for _, s := range sigs {
		if err := e.Consume(ctx, []features.Signal{s}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSuppression(t *testing.T) {
	e, rec := newEngine(t, referenceRules(t), Options{})
	var sigs []features.Signal
	sigs = append(sigs, lmSet("10.0.0.5", 0)...)
	sigs = append(sigs, lmSet("10.0.0.6", 10)...) // another entity: its own detection
	sigs = append(sigs, lmSet("10.0.0.5", 10)...) // inside the 60-minute suppression: update
	sigs = append(sigs, lmSet("10.0.0.5", 59)...) // still inside: update
	sigs = append(sigs, lmSet("10.0.0.5", 60)...) // at its end: a new detection
	feed(t, e, sigs)
	// Within event time 10, entities go in address order: 10.0.0.5's
	// update, then 10.0.0.6's creation.
	want := []struct {
		kind    EventKind
		src     string
		count   int
		version uint64
	}{
		{Created, "10.0.0.5", 1, 1},
		{Updated, "10.0.0.5", 2, 2},
		{Created, "10.0.0.6", 1, 1},
		{Updated, "10.0.0.5", 3, 3},
		{Created, "10.0.0.5", 1, 1},
	}
	if len(rec.events) != len(want) {
		t.Fatalf("events %s, want %d", rec.kinds(), len(want))
	}
	for i, w := range want {
		d := rec.events[i].Detection
		if rec.events[i].Kind != w.kind || d.Src.String() != w.src || d.Count != w.count || d.Version != w.version {
			t.Errorf("event %d: %v %s count %d version %d, want %v %s %d %d", i, rec.events[i].Kind, d.Src, d.Count, d.Version, w.kind, w.src, w.count, w.version)
		}
	}
	first, upd, later := rec.events[0].Detection, rec.events[3].Detection, rec.events[4].Detection
	if upd.ID != first.ID || later.ID == first.ID {
		t.Errorf("ids %s, %s, %s: the update must keep the id, the later detection must not", first.ID, upd.ID, later.ID)
	}
	if upd.FirstSeen != first.FirstSeen || upd.LastSeen != base+59*minute || upd.Evidence.Summary.SignalCounts[features.PortScan] != 3 || len(upd.Signals) != 9 {
		t.Errorf("update did not merge: last seen %v, counts %v, %d signals", upd.LastSeen, upd.Evidence.Summary.SignalCounts, len(upd.Signals))
	}
	if later.FirstSeen != base+54*minute || len(later.Signals) != 6 {
		// Signals still in the window (minute 59 and 60) start the new one.
		t.Errorf("new detection: first seen %v, %d signals", time.UnixMicro(later.FirstSeen).UTC(), len(later.Signals))
	}
	var c Collector
	for _, ev := range rec.events {
		c.Emit(context.Background(), ev)
	}
	if ds := c.Detections(); len(ds) != 3 || ds[0].Count != 3 {
		t.Errorf("collector kept %d detections (first count %d), want 3 with the first at count 3", len(ds), ds[0].Count)
	}
}

func TestWindowExpiry(t *testing.T) {
	for _, tc := range []struct {
		name string
		gap  int64 // minutes between the first and the last signal
		want int
	}{
		{"within", 14, 1},
		{"at the window", 15, 1},
		{"past the window", 16, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, rec := newEngine(t, referenceRules(t), Options{})
			feed(t, e, []features.Signal{
				mk(features.PortScan, "10.0.0.5", 0, features.Medium),
				mk(features.ConnectionSpike, "10.0.0.5", tc.gap/2, features.Critical),
				mk(features.PrivilegedAccess, "10.0.0.5", tc.gap, features.Critical),
			})
			if len(rec.events) != tc.want {
				t.Errorf("%d events, want %d", len(rec.events), tc.want)
			}
		})
	}
}

func TestAllowlists(t *testing.T) {
	rules := referenceRules(t)
	for i := range rules {
		switch rules[i].ID {
		case "LM-001":
			rules[i].Allowlist.CIDRs = []string{"10.30.0.0/24"}
		case "C2-BEACON-001":
			rules[i].Allowlist.Destinations = []string{"198.19.123.0/24", "203.0.113.99:8443"}
		case "EXFIL-001":
			rules[i].Allowlist.Destinations = []string{"198.19.250.0/24"}
		}
	}
	exfil := func(src string, dsts ...string) []features.Signal {
		var as []netip.Addr
		for _, d := range dsts {
			as = append(as, netip.MustParseAddr(d))
		}
		st := mk(features.DataStaging, src, 0, features.High)
		st.Dsts = []netip.Addr{netip.MustParseAddr("10.20.0.10")}
		out := mk(features.OutboundSpike, src, 5, features.Critical)
		out.Dsts = as
		div := mk(features.DestinationDiversity, src, 5, features.Medium)
		div.Dsts = as
		return []features.Signal{st, out, div}
	}
	var sigs []features.Signal
	sigs = append(sigs, lmSet("10.30.0.10", 0)...)                          // IT admin host: allowlisted source
	sigs = append(sigs, lmSet("10.0.0.5", 0)...)                            // detected
	sigs = append(sigs, c2Set("10.1.0.1", "198.19.123.4", 123, 0)...)       // NTP pool: allowlisted prefix
	sigs = append(sigs, c2Set("10.1.0.2", "203.0.113.99", 8443, 0)...)      // allowlisted address and port
	sigs = append(sigs, c2Set("10.1.0.3", "203.0.113.99", 443, 0)...)       // same address, other port: detected
	sigs = append(sigs, exfil("10.2.0.1", "198.19.250.10")...)              // cloud storage only: allowlisted
	sigs = append(sigs, exfil("10.2.0.2", "198.19.250.10", "192.0.2.7")...) // one drop left: detected
	ds, err := Correlate(context.Background(), rules, sigs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.RuleID+" "+d.Src.String())
		if slices.Contains(d.Dsts, netip.MustParseAddr("198.19.250.10")) {
			t.Errorf("%s lists an allowlisted destination: %v", d.ID, d.Dsts)
		}
	}
	slices.Sort(got)
	want := []string{"C2-BEACON-001 10.1.0.3", "EXFIL-001 10.2.0.2", "LM-001 10.0.0.5"}
	if !slices.Equal(got, want) {
		t.Errorf("detections %v, want %v", got, want)
	}
}

// noisy returns the reference signals plus partial sets, other entities,
// repeats and benign hosts, over a few hours.
func noisy(t testing.TB) []features.Signal {
	sigs := referenceSignals(t)
	r := rand.New(rand.NewPCG(1, 2))
	types := knownSignals()
	for i := range 300 {
		s := mk(types[r.IntN(len(types))], "10.9.0."+itoa(1+r.IntN(20)), int64(r.IntN(240)), features.Severity(1+r.IntN(4)))
		if r.IntN(2) == 0 {
			s = pair(s, "203.0.113."+itoa(1+r.IntN(5)), 443)
		}
		s.Metrics = []features.Metric{{Name: "connection_count", Value: float64(i)}}
		sigs = append(sigs, s)
	}
	for m := int64(0); m < 240; m += 7 {
		sigs = append(sigs, lmSet("10.8.0.1", m)...)
		sigs = append(sigs, c2Set("10.8.0.2", "192.0.2.1", 8443, m+3)...)
	}
	return sigs
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestDeterministic(t *testing.T) {
	rules := referenceRules(t)
	sigs := noisy(t)
	ctx := context.Background()
	want, err := Correlate(ctx, rules, sigs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 5 {
		t.Fatalf("only %d detections: the test needs more", len(want))
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		shuffled := slices.Clone(sigs)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, err := Correlate(ctx, rules, shuffled, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("a shuffle changed the detections: %v vs %v", detIDs(got), detIDs(want))
		}
	}

	// Live: event-time order, shuffled within each WindowEnd, in uneven
	// batches with watermarks, gives the batch result and the same events.
	sorted := slices.Clone(sigs)
	slices.SortStableFunc(sorted, func(a, b features.Signal) int { return compareSignals(&a, &b) })
	var first []Event
	for run := range 5 {
		live := slices.Clone(sorted)
		for i := 0; i < len(live); {
			j := i
			for j < len(live) && live[j].WindowEnd == live[i].WindowEnd {
				j++
			}
			r.Shuffle(j-i, func(a, b int) { live[i+a], live[i+b] = live[i+b], live[i+a] })
			i = j
		}
		var c Collector
		rec := &recorder{}
		e, err := NewEngine(rules, SinkFunc(func(ctx context.Context, ev Event) error {
			rec.Emit(ctx, ev)
			return c.Emit(ctx, ev)
		}), Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(live); {
			n := min(len(live)-i, 1+r.IntN(7))
			if err := e.Consume(ctx, live[i:i+n]); err != nil {
				t.Fatal(err)
			}
			i += n
			if r.IntN(3) == 0 && i < len(live) {
				if err := e.Advance(ctx, live[i].WindowEnd-1); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := e.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.Detections(); !reflect.DeepEqual(got, want) {
			t.Fatalf("run %d: live detections differ from the batch: %v vs %v", run, detIDs(got), detIDs(want))
		}
		if run == 0 {
			first = rec.events
		} else if !reflect.DeepEqual(rec.events, first) {
			t.Fatalf("run %d: the event sequence changed", run)
		}
		if st := e.Stats(); st.Late != 0 || st.Created != uint64(len(want)) {
			t.Errorf("stats %+v", st)
		}
	}
}

func TestPartialMatch(t *testing.T) {
	rules := referenceRules(t)
	lm := ruleByID(t, rules, "LM-001")
	lm.MinSignals = 2
	e, rec := newEngine(t, []Rule{lm}, Options{})
	feed(t, e, []features.Signal{
		mk(features.PortScan, "10.0.0.5", 0, features.Medium),
		mk(features.ConnectionSpike, "10.0.0.5", 0, features.Critical),
		mk(features.PrivilegedAccess, "10.0.0.5", 5, features.Critical),
	})
	if rec.kinds() != "cu" {
		t.Fatalf("events %s, want created then updated", rec.kinds())
	}
	p, full := rec.events[0].Detection, rec.events[1].Detection
	// Two of three (MEDIUM, CRITICAL): confidence 2/3 x 0.875 = 0.583,
	// which supports MEDIUM, below the rule's CRITICAL less one level.
	if p.Severity != features.Medium || p.Evidence.Summary.MatchedSignals != 2 || p.Evidence.Summary.RequiredSignals != 3 {
		t.Errorf("partial: severity %v, matched %d/%d; want MEDIUM (confidence 0.583), 2/3",
			p.Severity, p.Evidence.Summary.MatchedSignals, p.Evidence.Summary.RequiredSignals)
	}
	if full.ID != p.ID || full.Severity != features.Critical || full.Confidence <= p.Confidence || full.Score <= p.Score {
		t.Errorf("completing the match: %s %v %.3f %d after %s %v %.3f %d", full.ID, full.Severity, full.Confidence, full.Score, p.ID, p.Severity, p.Confidence, p.Score)
	}
}

func TestDuplicatesAndLate(t *testing.T) {
	e, rec := newEngine(t, referenceRules(t), Options{})
	ctx := context.Background()
	set := lmSet("10.0.0.5", 10)
	if err := e.Consume(ctx, append(set, set[0])); err != nil {
		t.Fatal(err)
	}
	if err := e.Advance(ctx, base+10*minute); err != nil {
		t.Fatal(err)
	}
	// Re-sent (a Layer 1 restart) and late: no new evidence.
	if err := e.Consume(ctx, set); err != nil {
		t.Fatal(err)
	}
	// Late but new and within the window: it updates.
	late := mk(features.PortScan, "10.0.0.5", 8, features.High)
	if err := e.Consume(ctx, []features.Signal{late}); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := e.Stats()
	if st.Duplicates != 4 || st.Late != 4 || rec.kinds() != "cu" {
		t.Errorf("stats %+v, events %s", st, rec.kinds())
	}
	if d := rec.events[1].Detection; d.Evidence.Summary.SignalCounts[features.PortScan] != 2 {
		t.Errorf("port scan counted %d times, want 2", d.Evidence.Summary.SignalCounts[features.PortScan])
	}
}

func TestStateBounded(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t, referenceRules(t), Options{})
	var sigs []features.Signal
	for i := range 200 {
		sigs = append(sigs, mk(features.PortScan, fmt.Sprintf("10.5.%d.%d", i/250, 1+i%250), int64(i%10), features.Low))
	}
	if err := e.Consume(ctx, sigs); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.Stats().Entities; n != 200 {
		t.Fatalf("%d entities held, want 200", n)
	}
	// Once the window has passed in event time, idle state goes.
	if err := e.Advance(ctx, base+30*minute); err != nil {
		t.Fatal(err)
	}
	if n := e.Stats().Entities; n != 0 {
		t.Errorf("%d entities held after the window passed", n)
	}

	// At the bound, the least recently active are dropped.
	e, _ = newEngine(t, referenceRules(t), Options{MaxEntities: 50})
	for i := range 200 {
		s := mk(features.PortScan, fmt.Sprintf("10.6.0.%d", 1+i), int64(i)/20, features.Low)
		if err := e.Consume(ctx, []features.Signal{s}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := e.Stats()
	if st.Entities > 50 || st.Evicted == 0 {
		t.Errorf("bounded engine: %+v", st)
	}
}

func TestSinkError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	e, err := NewEngine(referenceRules(t), SinkFunc(func(context.Context, Event) error {
		calls++
		return boom
	}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sigs := append(lmSet("10.0.0.5", 0), lmSet("10.0.0.6", 0)...)
	if err := e.Consume(ctx, sigs); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(ctx); !errors.Is(err, boom) {
		t.Fatalf("flush: %v", err)
	}
	if err := e.Flush(ctx); err != nil || calls != 1 {
		t.Errorf("second flush: %v after %d sink calls; the failed group must not be re-emitted", err, calls)
	}
}

func TestNewEngineErrors(t *testing.T) {
	rules := referenceRules(t)
	if _, err := NewEngine(rules, nil, Options{}); !errors.Is(err, ErrNoSink) {
		t.Errorf("nil sink: %v", err)
	}
	if _, err := NewEngine(nil, &recorder{}, Options{}); !errors.Is(err, ErrNoRules) {
		t.Errorf("no rules: %v", err)
	}
	bad := slices.Clone(rules)
	bad[0].TimeWindowMinutes = 0
	bad = append(bad, rules[1])
	_, err := NewEngine(bad, &recorder{}, Options{})
	if err == nil || !strings.Contains(err.Error(), "time_window_minutes") || !strings.Contains(err.Error(), "defined more than once") {
		t.Errorf("bad rules: %v", err)
	}
}

func TestInvalidAndIgnored(t *testing.T) {
	e, rec := newEngine(t, referenceRules(t), Options{})
	s := mk(features.HostSweep, "10.0.0.1", 0, features.High) // no default rule uses it
	inv := mk(features.PortScan, "10.0.0.1", 0, features.High)
	inv.Src = netip.Addr{}
	back := mk(features.PortScan, "10.0.0.1", 0, features.High)
	back.WindowStart = back.WindowEnd + 1
	host := mk(features.PeriodicBeacon, "10.0.0.1", 0, features.High) // no destination: no pair
	feed(t, e, []features.Signal{s, inv, back, host})
	st := e.Stats()
	if st.Ignored != 1 || st.Invalid != 2 || st.Entities != 0 || len(rec.events) != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestAssess(t *testing.T) {
	lm := ruleByID(t, referenceRules(t), "LM-001")
	f := func(rule Rule, best map[features.SignalType]features.Severity, str map[features.SignalType]float64, sev features.Severity, conf float64, score int) {
		t.Helper()
		a := assess(&rule, best, str)
		if a.severity != sev || round3(a.confidence) != conf || a.score != score {
			t.Errorf("assess(%v, %v) = %v %.3f %d, want %v %.3f %d", best, str, a.severity, a.confidence, a.score, sev, conf, score)
		}
	}
	all := map[features.SignalType]features.Severity{features.PortScan: features.Medium, features.ConnectionSpike: features.Critical, features.PrivilegedAccess: features.Critical}
	f(lm, all, nil, features.Critical, 0.917, 92)
	crit := map[features.SignalType]features.Severity{features.PortScan: features.Critical, features.ConnectionSpike: features.Critical, features.PrivilegedAccess: features.Critical}
	f(lm, crit, nil, features.Critical, 1, 100)
	// Weak evidence caps severity below the rule's: a full match of
	// strength 0.2 each has confidence 0.6, MEDIUM.
	weak := map[features.SignalType]float64{features.PortScan: 0.2, features.ConnectionSpike: 0.2, features.PrivilegedAccess: 0.2}
	f(lm, crit, weak, features.Medium, 0.6, 30)
	// A partial match: one level lower per missing type, and its
	// confidence (0.417) allows no more than LOW.
	two := map[features.SignalType]features.Severity{features.PortScan: features.Low, features.ConnectionSpike: features.Low}
	f(lm, two, nil, features.Low, 0.417, 10)
	twoStrong := map[features.SignalType]features.Severity{features.PortScan: features.Critical, features.ConnectionSpike: features.Critical}
	f(lm, twoStrong, nil, features.Medium, 0.667, 33)
	one := map[features.SignalType]features.Severity{features.PortScan: features.Low}
	low := lm
	low.Severity = features.Medium
	low.Confidence = "LOW"
	f(low, one, nil, features.Low, 0.146, 4)
	f(lm, nil, nil, features.SeverityNone, 0, 0)
}

func TestJSONLinesSink(t *testing.T) {
	var buf bytes.Buffer
	e, err := NewEngine(referenceRules(t), NewJSONLines(&buf), Options{})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, e, append(lmSet("10.0.0.5", 0), lmSet("10.0.0.5", 5)...))
	ds, err := ReadJSONLines(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].ID != ds[1].ID || ds[0].Count != 1 || ds[1].Count != 2 {
		t.Errorf("lines: %+v", ds)
	}
	if _, err := ReadJSONLines(strings.NewReader("{\"detection_id\": 3}\n")); err == nil {
		t.Error("read a bad line")
	}
}

// TestSinkOwnsEvent: what a sink keeps must not change under it.
func TestSinkOwnsEvent(t *testing.T) {
	e, rec := newEngine(t, referenceRules(t), Options{})
	feed(t, e, lmSet("10.0.0.5", 0))
	kept := rec.events[0].Detection
	snapshot, _ := kept.MarshalJSON()
	feed(t, e, lmSet("10.0.0.5", 5))
	after, _ := kept.MarshalJSON()
	if !bytes.Equal(snapshot, after) {
		t.Error("an update changed a detection the sink had kept")
	}
}

func BenchmarkEngine(b *testing.B) {
	rules := defaultRules(b)
	sigs := noisy(b)
	slices.SortStableFunc(sigs, func(x, y features.Signal) int { return compareSignals(&x, &y) })
	ctx := context.Background()
	for b.Loop() {
		e, err := NewEngine(rules, SinkFunc(func(context.Context, Event) error { return nil }), Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Consume(ctx, sigs); err != nil {
			b.Fatal(err)
		}
		if err := e.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(sigs)*b.N)/b.Elapsed().Seconds(), "signals/s")
}

// TestYieldTo: a rule yielding to another does not report an entity the
// other already reports, and reports it alone otherwise.
func TestYieldTo(t *testing.T) {
	rules := defaultRules(t)
	lm1, lm2 := ruleByID(t, rules, "LM-001"), ruleByID(t, rules, "LM-002")
	e, rec := newEngine(t, []Rule{lm1, lm2}, Options{})
	feed(t, e, []features.Signal{
		mk(features.PortScan, "10.0.0.5", 0, features.Medium),
		mk(features.ConnectionSpike, "10.0.0.5", 0, features.Critical),
		mk(features.PrivilegedAccess, "10.0.0.5", 0, features.Critical),
		// An SMB sweep: no port scan, so only LM-002 matches.
		mk(features.HostSweep, "10.0.0.6", 0, features.Medium),
		mk(features.PrivilegedAccess, "10.0.0.6", 0, features.High),
	})
	var got []string
	for _, ev := range rec.events {
		got = append(got, ev.Detection.RuleID+" "+ev.Detection.Src.String())
	}
	if want := []string{"LM-001 10.0.0.5", "LM-002 10.0.0.6"}; !slices.Equal(got, want) {
		t.Errorf("detections %v, want %v", got, want)
	}
}

// TestSameTypeRulesMerge: a second rule of the same detection type
// matching an entity whose incident is open adds to that detection rather
// than opening another; the rule listed first names it, and the id stays
// the one the detection was created with, so it remains one row.
func TestSameTypeRulesMerge(t *testing.T) {
	rules := referenceRules(t)
	lm := ruleByID(t, rules, "LM-001")
	sweep := lm
	sweep.ID, sweep.Name = "LM-900", "two_of_three"
	sweep.MinSignals = 2
	e, rec := newEngine(t, []Rule{lm, sweep}, Options{})
	feed(t, e, []features.Signal{
		mk(features.PortScan, "10.0.0.5", 0, features.Medium),
		mk(features.PrivilegedAccess, "10.0.0.5", 0, features.Critical),
		mk(features.ConnectionSpike, "10.0.0.5", 5, features.Critical),
	})
	// LM-900 opens the incident on two signals; with the third, LM-001
	// joins it and LM-900 updates it.
	if rec.kinds() != "cuu" {
		t.Fatalf("events %s, want created, then two updates", rec.kinds())
	}
	first, merged := rec.events[0].Detection, rec.events[2].Detection
	if first.RuleID != "LM-900" || merged.ID != first.ID || merged.RuleID != "LM-001" || merged.Version != 3 ||
		merged.Evidence.Summary.MatchedSignals != 3 || merged.Evidence.Summary.RequiredSignals != 3 || merged.Severity != features.Critical {
		t.Errorf("merged detection: %s rule %s v%d %d/%d %v, after %s rule %s", merged.ID, merged.RuleID, merged.Version,
			merged.Evidence.Summary.MatchedSignals, merged.Evidence.Summary.RequiredSignals, merged.Severity, first.ID, first.RuleID)
	}
	if st := e.Stats(); st.Created != 1 || st.Merged != 1 {
		t.Errorf("stats %+v, want 1 created, 1 merged", st)
	}
	// Another host is its own incident.
	feed(t, e, lmSet("10.0.0.6", 10))
	if st := e.Stats(); st.Created != 2 {
		t.Errorf("stats %+v, want a second detection for another host", st)
	}
}
