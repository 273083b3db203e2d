package features

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigValid(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g := cfg.geometry()
	// The panes the design relies on: 10 s host panes kept 10 minutes,
	// 30 s pair panes kept for the 10-minute session cut.
	if g.hostPane != 10e6 || g.pairPane != 30e6 || g.tick != 10e6 || g.hostKeep != 600e6 || g.pairKeep != 630e6 {
		t.Errorf("geometry %+v", g)
	}
}

// TestConfigJSONRoundTrip: what DefaultConfig writes, LoadConfig reads
// back unchanged.
func TestConfigJSONRoundTrip(t *testing.T) {
	b, err := json.MarshalIndent(DefaultConfig(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("round trip changed the configuration:\n%+v\nwant\n%+v", got, want)
	}
	for _, s := range []string{`"allowed_lateness": "30s"`, `"severity": "CRITICAL"`, `"10.0.0.0/8"`, `"size": "1m0s"`} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("JSON lacks %s", s)
		}
	}
}

// TestConfigFixtures loads testdata/config: *.good.json must load,
// *.bad.json must fail with every message listed in the sibling .err.
func TestConfigFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/config/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cfg, err := LoadConfig(f)
			if strings.HasSuffix(path, ".good.json") {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := NewEngine(cfg, &collector{}, nil, nil); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded a bad configuration")
			}
			want, rerr := os.ReadFile(strings.TrimSuffix(path, ".json") + ".err")
			if rerr != nil {
				t.Fatal(rerr)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if !strings.Contains(err.Error(), line) {
					t.Errorf("error lacks %q:\n%v", line, err)
				}
			}
		})
	}
}

func TestConfigTunedFixture(t *testing.T) {
	f, err := os.Open("testdata/config/tuned.good.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := LoadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if cfg.AllowedLateness != Duration(5*time.Minute) || cfg.EventTime != EventTimeEnd || cfg.Limits.Overflow != Refuse ||
		cfg.Signals.ConnectionSpike.Enabled || cfg.Signals.PortScan.DistinctPortsOver != 50 ||
		len(cfg.Signals.PortScan.Bands) != 2 || cfg.Signals.OutboundSpike.AbsoluteSeverity != High {
		t.Errorf("overrides not applied: %+v", cfg)
	}
	// Keys absent from the file keep their defaults, inside objects too.
	if cfg.Signals.PortScan.Window != d.Signals.PortScan.Window || !cfg.Signals.PortScan.Enabled ||
		cfg.Limits.MaxSetElements != d.Limits.MaxSetElements ||
		!reflect.DeepEqual(cfg.Signals.DataStaging, d.Signals.DataStaging) {
		t.Error("defaults lost")
	}
}

// TestValidateReportsEveryProblem: one error per problem, joined.
func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AllowedLateness = -1
	cfg.Signals.PortScan.Window.Hop = Duration(7 * time.Second)
	cfg.Signals.DestinationDiversity.Bands = nil
	err := cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Errorf("%d problems reported, want 3:\n%v", len(lines), err)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "features config: ") {
			t.Errorf("message without the package context: %q", l)
		}
	}
}
