package scenario

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBenchmarkSpec(t *testing.T) {
	o := DefaultBenchmarkOptions()
	o.Hosts, o.Days = 40, 2
	s := Benchmark(o)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(s.C2) != 120 || len(s.KillChain) != 4 || len(s.Lateral) != 9 || len(s.Exfil)+len(s.LowSlow) != 18 {
		t.Fatalf("instances: c2 %d, kill chains %d, lateral %d, exfil %d + %d", len(s.C2), len(s.KillChain), len(s.Lateral), len(s.Exfil), len(s.LowSlow))
	}
	again := Benchmark(o)
	if a, b := s.C2[100], again.C2[100]; a.Interval != b.Interval || a.Jitter != b.Jitter || a.ReqBytes != b.ReqBytes {
		t.Errorf("the benchmark spec is not a function of its options: %+v vs %+v", a, b)
	}
	conns, labels := generate(t, s)
	kinds := map[Kind]int{}
	hostOf := map[string]netip.Addr{}
	for _, l := range labels {
		kinds[l.Kind]++
		if l.Conns == 0 {
			t.Errorf("%s produced no traffic", l.ID)
		}
		if len(l.Hosts) > 0 {
			hostOf[l.ID] = l.Hosts[0]
		}
	}
	if kinds[KindC2] != 124 || kinds[KindKillChain] != 4 || kinds[KindExfil] != 22 || kinds[KindLateral] != 9 {
		t.Errorf("labels by kind: %v", kinds)
	}
	for i := range 4 {
		id := "kill-chain-" + string(rune('0'+i))
		kc := labelByID(t, labels, id)
		c2, ex := labelByID(t, labels, id+"-c2"), labelByID(t, labels, id+"-exfil")
		if kc.Expect != ExpectKillChain || c2.Hosts[0] != kc.Hosts[0] || ex.Hosts[0] != kc.Hosts[0] ||
			kc.Conns != c2.Conns+ex.Conns || !kc.First.Equal(c2.First) || !slices.Contains(kc.Dsts, c2.Dsts[0]) {
			t.Errorf("%s: %+v\nc2 %+v\nexfil %+v", id, kc, c2, ex)
		}
		if !ex.First.After(c2.First.Add(time.Hour)) {
			t.Errorf("%s: exfiltration at %v, beacon from %v", id, ex.First, c2.First)
		}
	}
	// Favourites are rare destinations: each is visited by few hosts, and
	// hosts return to their own.
	visitors := map[netip.Addr]map[netip.Addr]int{}
	for _, c := range conns {
		b := c.RespH.As4()
		if b[0] == 198 && b[1] == 18 && int(b[2])*250+int(b[3])-1 >= s.Background.Destinations {
			if visitors[c.RespH] == nil {
				visitors[c.RespH] = map[netip.Addr]int{}
			}
			visitors[c.RespH][c.OrigH]++
		}
	}
	repeat := 0
	for dst, hs := range visitors {
		if len(hs) > 3 {
			t.Errorf("favourite %s visited by %d hosts", dst, len(hs))
		}
		for _, n := range hs {
			if n >= 8 {
				repeat++
			}
		}
	}
	if len(visitors) < o.Hosts || repeat < o.Hosts {
		t.Errorf("%d favourites visited, %d (host, favourite) pairs with 8+ connections", len(visitors), repeat)
	}
}

func TestTelemetryAndCloudSyncShapes(t *testing.T) {
	s := Spec{Seed: 3, Start: t0, Duration: 3 * time.Hour, Sensor: "test"}
	tel := DefaultTelemetry()
	tel.Hosts, tel.FirstHost = 5, 10
	cs := DefaultCloudSync()
	cs.Hosts, cs.UploadRate = 4, 0.5
	s.Telemetry, s.CloudSync = []Telemetry{tel}, []CloudSync{cs}
	conns, labels := generate(t, s)
	lt := labelByID(t, labels, "telemetry-0")
	if len(lt.Hosts) != 5 || lt.Hosts[0] != workstation(10) {
		t.Fatalf("telemetry hosts %v", lt.Hosts)
	}
	for _, h := range lt.Hosts {
		var ts []int64
		dsts := map[netip.Addr]bool{}
		for _, c := range connsOf(conns, h, netip.Addr{}) {
			ts = append(ts, c.TS)
			dsts[c.RespH] = true
		}
		if len(dsts) != 1 || len(ts) < 30 {
			t.Errorf("%s: %d reports to %d collectors", h, len(ts), len(dsts))
		}
		for i := 1; i < len(ts); i++ {
			if g := time.Duration(ts[i]-ts[i-1]) * time.Microsecond; g < 4*time.Minute || g > 6*time.Minute {
				t.Errorf("%s: gap %s for a 5-minute agent with 5 %% jitter", h, g)
			}
		}
	}
	var uploads int
	for _, h := range labelByID(t, labels, "cloud-sync-0").Hosts {
		for _, c := range connsOf(conns, h, netip.Addr{}) {
			if !slices.Contains(cs.Dsts, c.RespH) {
				t.Errorf("cloud sync to %s", c.RespH)
			}
			if c.OrigBytes >= cs.UploadMin {
				uploads++
			}
		}
	}
	if uploads < 10 {
		t.Errorf("%d sync uploads at a rate of 0.5 over 4 hosts x 18 polls", uploads)
	}
}

func TestValidateNewScenarios(t *testing.T) {
	s := Spec{Start: t0, Duration: time.Hour}
	s.Background = Background{Hosts: 1, SessionsPerHour: 1, Destinations: webDests, Favourites: 2}
	s.C2 = []Beacon{{Interval: time.Minute, Port: 443, SizeJitter: 2}}
	s.KillChain = []KillChain{{Beacon: Beacon{Interval: 0, Port: 443}, Exfil: DefaultExfil()}}
	s.Telemetry = []Telemetry{{Hosts: 0}}
	s.CloudSync = []CloudSync{{Hosts: 1, Dsts: cloudAddrs(1), Interval: time.Minute, UploadRate: 0.5}}
	err := s.Validate()
	for _, want := range []string{"favourite_share", "background.destinations", "c2[0].size_jitter",
		"kill_chain[0]", "telemetry[0].hosts", "telemetry[0].endpoints", "cloud_sync[0]: upload_min"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}
