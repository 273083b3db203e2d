package scoring

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ndr-go/ndr/features"
)

func defaultRules(t testing.TB) []Rule {
	t.Helper()
	rules, err := DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// referenceRules are the default rules of the reference's three
// detections, without Layer 2's and LM-002, for engine tests written
// against their shapes.
func referenceRules(t testing.TB) []Rule {
	t.Helper()
	var out []Rule
	for _, r := range defaultRules(t) {
		if r.ID == "LM-001" || r.ID == "C2-BEACON-001" || r.ID == "EXFIL-001" {
			out = append(out, r)
		}
	}
	return out
}

func ruleByID(t testing.TB, rules []Rule, id string) Rule {
	t.Helper()
	for _, r := range rules {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no rule %s", id)
	return Rule{}
}

func TestDefaultRules(t *testing.T) {
	rules := defaultRules(t)
	type want struct {
		typ        string
		signals    []features.SignalType
		tactic     string
		techniques []string
		entity     Entity
	}
	for id, w := range map[string]want{
		"LM-001": {"LATERAL_MOVEMENT", []features.SignalType{features.PortScan, features.ConnectionSpike, features.PrivilegedAccess},
			"TA0008", []string{"T1021"}, EntitySrc},
		"C2-BEACON-001": {"C2_BEACONING", []features.SignalType{features.PeriodicBeacon, features.PersistentDestination, features.CommandExchange},
			"TA0011", []string{"T1071", "T1573"}, EntityPair},
		"EXFIL-001": {"DATA_EXFILTRATION", []features.SignalType{features.DataStaging, features.OutboundSpike, features.DestinationDiversity},
			"TA0010", []string{"T1567", "T1048", "T1074"}, EntitySrc},
	} {
		r := ruleByID(t, rules, id)
		var techs []string
		for _, tq := range r.MITRE.Techniques {
			techs = append(techs, tq.ID)
		}
		if r.DetectionType != w.typ || !slices.Equal(r.RequiredSignals, w.signals) || r.MITRE.Tactic != w.tactic ||
			!slices.Equal(techs, w.techniques) || r.Entity != w.entity {
			t.Errorf("%s: %+v", id, r)
		}
		if r.TimeWindowMinutes != 15 || r.Severity != features.Critical || r.minSignals() != 3 || len(r.RecommendedActions) == 0 {
			t.Errorf("%s: window %d, severity %v, min %d, %d actions; want the reference's 15 min, CRITICAL, all 3 signals",
				id, r.TimeWindowMinutes, r.Severity, r.minSignals(), len(r.RecommendedActions))
		}
	}
	// Layer 2's rules: the scorers' signals, with their own windows.
	for id, w := range map[string]struct {
		typ     string
		signals []features.SignalType
		min     int
		entity  Entity
	}{
		"C2-BEACON-002":  {"C2_BEACONING", []features.SignalType{SignalBeaconScore}, 1, EntityPair},
		"EXFIL-002":      {"DATA_EXFILTRATION", []features.SignalType{SignalUploadAnomaly}, 1, EntitySrc},
		"EXFIL-003":      {"DATA_EXFILTRATION", []features.SignalType{SignalMultiDstUpload}, 1, EntitySrc},
		"KILL-CHAIN-001": {"KILL_CHAIN", []features.SignalType{SignalBeaconScore, SignalStagingAnomaly, SignalUploadAnomaly}, 3, EntitySrc},
		"LM-002": {"LATERAL_MOVEMENT", []features.SignalType{features.HostSweep, features.PrivilegedAccess, features.PortScan,
			features.FailedConnections, features.ConnectionSpike}, 2, EntitySrc},
	} {
		r := ruleByID(t, rules, id)
		if r.DetectionType != w.typ || !slices.Equal(r.RequiredSignals, w.signals) || r.minSignals() != w.min || r.Entity != w.entity {
			t.Errorf("%s: %+v", id, r)
		}
	}
	if len(rules) != 8 {
		t.Errorf("%d default rules, want 8", len(rules))
	}
	// Each call is a fresh copy: callers may tune what they get.
	rules[0].RequiredSignals[0] = "X"
	if again := defaultRules(t); again[0].RequiredSignals[0] == "X" {
		t.Error("DefaultRules returned shared slices")
	}
}

// TestBadRules loads every testdata/rules/*.bad.json and expects each line
// of the .err file beside it in a distinct error of the joined result.
func TestBadRules(t *testing.T) {
	// Fixtures whose .err lists every problem, so the count must match.
	exact := map[string]bool{"unknown-keys": true, "every-field": true, "duplicate": true, "syntax": true, "case": true}
	files, err := filepath.Glob("testdata/rules/*.bad.json")
	if err != nil || len(files) == 0 {
		t.Fatal("no fixtures", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".bad.json")
		t.Run(name, func(t *testing.T) {
			wantText, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			_, err = LoadRules(f)
			if err == nil {
				t.Fatal("loaded")
			}
			if !errors.Is(err, ErrRuleSyntax) && !errors.Is(err, ErrRuleInvalid) {
				t.Errorf("error wraps neither sentinel: %v", err)
			}
			got := unwrapJoined(err)
			want := strings.Split(strings.TrimSpace(string(wantText)), "\n")
			used := make([]bool, len(got))
			for _, w := range want {
				found := false
				for i, g := range got {
					if !used[i] && strings.Contains(g.Error(), w) {
						used[i], found = true, true
						break
					}
				}
				if !found {
					t.Errorf("no error contains %q", w)
				}
			}
			if exact[name] && len(got) != len(want) {
				t.Errorf("%d errors, want %d:\n%v", len(got), len(want), err)
			}
			if t.Failed() {
				t.Logf("errors:\n%v", err)
			}
		})
	}
}

func unwrapJoined(err error) []error {
	var out []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, unwrapJoined(e)...)
		}
		return out
	}
	return []error{err}
}

func TestGoodRules(t *testing.T) {
	rules, err := LoadRules("testdata/rules/partial.good.json")
	if err != nil {
		t.Fatal(err)
	}
	r := rules[0]
	if r.MinSignals != 2 || r.Severity != features.Critical || r.SuppressionUS() != 120*60e6 || r.Entity != "" {
		t.Errorf("%+v", r)
	}
	e, err := NewEngine(rules, SinkFunc(nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &e.rules[0]
	for _, tc := range []struct {
		addr string
		port uint16
		src  bool
		want bool
	}{
		{"10.30.0.10", 0, true, true},
		{"10.30.0.11", 0, true, false},
		{"10.40.200.1", 0, true, true},
		{"10.50.0.9", 0, true, true},
		{"203.0.113.7", 443, false, true},
		{"203.0.113.7", 80, false, false},
		{"2001:db8::5", 22, false, true},
		{"2001:db8::5", 23, false, false},
		{"2001:db8::1", 23, false, true},
	} {
		s := features.Signal{Type: features.PortScan, Src: netip.MustParseAddr("10.0.0.1"), DstPort: tc.port}
		if tc.src {
			s.Src = netip.MustParseAddr(tc.addr)
		} else {
			s.Dst = netip.MustParseAddr(tc.addr)
		}
		if _, ok := c.admit(&s); ok == tc.want {
			t.Errorf("%s port %d (src %v): allowlisted=%v, want %v", tc.addr, tc.port, tc.src, !ok, tc.want)
		}
	}
}

// TestReferenceRulesRefused documents how the reference's own rules.json
// files differ from ndr's format: the strict loader names each difference.
func TestReferenceRulesRefused(t *testing.T) {
	for file, want := range map[string][]string{
		"01-rules.json": {`mitre_attack: scoring: rule syntax: json: unknown field "technique"`},
		"02-rules.json": {`detection_type: scoring: invalid rule: "Active C2 Communication"`, "mitre_attack.tactic"},
		"07-rules.json": {"metadata: scoring: invalid rule: unknown field", "tuning_notes: scoring: invalid rule: unknown field"},
	} {
		_, err := LoadRules(filepath.Join("testdata/reference", file))
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: want %q in %v", file, w, err)
			}
		}
	}
}

func TestLoadRulesDir(t *testing.T) {
	dir := t.TempDir()
	lm, err := os.ReadFile("rules/lm-001.json")
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile("testdata/rules/partial.good.json")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.json", lm)
	write("a.json", good)
	write("notes.txt", []byte("not a rule"))
	rules, err := LoadRules(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0].ID != "LM-002" || rules[1].ID != "LM-001" {
		t.Errorf("loaded %v, want LM-002 (a.json) then LM-001 (b.json)", ids(rules))
	}
	write("c.json", lm)
	if _, err := LoadRules(dir); err == nil || !strings.Contains(err.Error(), `rule "LM-001": rule_id: scoring: invalid rule: defined more than once`) {
		t.Errorf("duplicate across files: %v", err)
	}
	if _, err := LoadRules(t.TempDir()); !errors.Is(err, ErrNoRules) {
		t.Errorf("empty dir: %v", err)
	}
	if _, err := LoadRules(filepath.Join(dir, "missing.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := ParseRules("empty", []byte(" \n")); !errors.Is(err, ErrNoRules) {
		t.Errorf("empty file: %v", err)
	}
	if _, err := ParseRules("empty-array", []byte("[]")); !errors.Is(err, ErrNoRules) {
		t.Errorf("empty array: %v", err)
	}
	bom := append([]byte("\xef\xbb\xbf"), lm...)
	if _, err := ParseRules("bom", bom); err != nil {
		t.Errorf("BOM: %v", err)
	}
}

func ids(rules []Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.ID)
	}
	return out
}

func TestOverride(t *testing.T) {
	base := defaultRules(t)
	tuned := ruleByID(t, base, "C2-BEACON-001")
	tuned.Allowlist.Destinations = []string{"198.19.123.0/24"}
	extra := ruleByID(t, base, "LM-001")
	extra.ID = "LM-900"
	got := Override(base, []Rule{tuned, extra})
	if len(got) != len(base)+1 || got[len(base)].ID != "LM-900" {
		t.Fatalf("got %v", ids(got))
	}
	if r := ruleByID(t, got, "C2-BEACON-001"); len(r.Allowlist.Destinations) != 1 {
		t.Error("override did not replace C2-BEACON-001")
	}
	if r := ruleByID(t, base, "C2-BEACON-001"); len(r.Allowlist.Destinations) != 0 {
		t.Error("Override changed its input")
	}
}

func TestParseDest(t *testing.T) {
	f := func(in, prefix string, port uint16, ok bool) {
		t.Helper()
		d, err := parseDest(in)
		if (err == nil) != ok {
			t.Errorf("parseDest(%q): err %v, want ok=%v", in, err, ok)
			return
		}
		if ok && (d.p.String() != prefix || d.port != port) {
			t.Errorf("parseDest(%q) = %v port %d, want %s port %d", in, d.p, d.port, prefix, port)
		}
	}
	f("198.51.100.7", "198.51.100.7/32", 0, true)
	f("198.51.100.7:443", "198.51.100.7/32", 443, true)
	f("198.51.100.9/24", "198.51.100.0/24", 0, true)
	f("198.51.100.0/24:443", "198.51.100.0/24", 443, true)
	f("2001:db8::1", "2001:db8::1/128", 0, true)
	f("[2001:db8::1]:443", "2001:db8::1/128", 443, true)
	f("[2001:db8::/32]:22", "2001:db8::/32", 22, true)
	f("::ffff:10.0.0.0/104", "10.0.0.0/8", 0, true)
	f("::ffff:10.0.0.0/64", "", 0, false)
	f("198.51.100.7:0", "", 0, false)
	f("198.51.100.7:http", "", 0, false)
	f("[2001:db8::1]", "", 0, false)
	f("fe80::1%eth0", "", 0, false)
	f("example.com", "", 0, false)
	f("", "", 0, false)
}

// FuzzParseRules: the loader never panics, and whatever it accepts
// survives a marshal and a second load unchanged.
func FuzzParseRules(f *testing.F) {
	for _, glob := range []string{"rules/*.json", "testdata/rules/*.json", "testdata/reference/*-rules.json"} {
		files, _ := filepath.Glob(glob)
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"rule_id":"A","required_signals":["PORT_SCAN"],"time_window_minutes":1,"detection_type":"A","severity":"low","mitre_attack":{"tactic":"TA0001","techniques":[{"id":"T0001"}]},"allowlist":{}}`))
	f.Add([]byte(`[null]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := ParseRules("fuzz", data)
		if err != nil {
			if !errors.Is(err, ErrRuleSyntax) && !errors.Is(err, ErrRuleInvalid) && !errors.Is(err, ErrNoRules) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		for i := range rules {
			if err := rules[i].Validate(); err != nil {
				t.Fatalf("accepted an invalid rule: %v", err)
			}
		}
		b, err := json.Marshal(rules)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseRules("again", b)
		if err != nil {
			t.Fatalf("reload of %s: %v", b, err)
		}
		if !reflect.DeepEqual(normalise(rules), normalise(again)) {
			t.Fatalf("changed in a round trip:\n%+v\n%+v", rules, again)
		}
		if _, err := NewEngine(rules, SinkFunc(nil), Options{}); err != nil {
			t.Fatalf("engine refused loaded rules: %v", err)
		}
	})
}

// normalise maps empty and nil slices together: omitempty drops both.
func normalise(rules []Rule) []Rule {
	out := slices.Clone(rules)
	for i := range out {
		r := &out[i]
		if len(r.RecommendedActions) == 0 {
			r.RecommendedActions = nil
		}
		if len(r.FalsePositiveConsiderations) == 0 {
			r.FalsePositiveConsiderations = nil
		}
		if len(r.Allowlist.CIDRs) == 0 {
			r.Allowlist.CIDRs = nil
		}
		if len(r.Allowlist.Destinations) == 0 {
			r.Allowlist.Destinations = nil
		}
		r.MITRE.Techniques = slices.Clone(r.MITRE.Techniques)
		for j := range r.MITRE.Techniques {
			if len(r.MITRE.Techniques[j].SubTechniques) == 0 {
				r.MITRE.Techniques[j].SubTechniques = nil
			}
		}
	}
	return out
}
