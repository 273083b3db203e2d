package features

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/ndr-go/ndr/ingest"
)

// Each signal against an attack and the benign traffic that looks most
// like it. want is the highest severity of the signal for src, or
// SeverityNone when it must not fire.

var t0 = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)

// series makes n connections from src, step apart from t0 + offset.
func series(n int, offset, step time.Duration, f func(i int, ts time.Time) ingest.Conn) []ingest.Conn {
	out := make([]ingest.Conn, n)
	for i := range out {
		out[i] = f(i, t0.Add(offset+time.Duration(i)*step))
	}
	return out
}

func withState(c ingest.Conn, s ingest.ConnState) ingest.Conn { c.ConnState = s; return c }

// hostBaseline is a Baselines with one model per metric for every host.
type hostBaseline map[string][2]float64

func (b hostBaseline) Lookup(_ netip.Addr, metric string, _ int64) (float64, float64, bool) {
	v, ok := b[metric]
	return v[0], v[1], ok
}

// cat merges series in time order.
func cat(parts ...[]ingest.Conn) []ingest.Conn {
	var out []ingest.Conn
	for _, p := range parts {
		out = append(out, p...)
	}
	slices.SortStableFunc(out, func(a, b ingest.Conn) int { return cmp.Compare(a.TS, b.TS) })
	return out
}

// strongest is the first signal of the highest severity.
func strongest(s []Signal) Signal {
	best := s[0]
	for _, x := range s {
		if x.Severity > best.Severity {
			best = x
		}
	}
	return best
}

const src = "10.1.1.1"

func TestSignals(t *testing.T) {
	irregular := []time.Duration{7, 95, 12, 40, 118, 3, 66, 20, 85, 31, 9, 77} // seconds
	cases := []struct {
		name      string
		typ       SignalType
		conns     []ingest.Conn
		want      Severity
		baselines Baselines
		check     func(t *testing.T, s []Signal)
	}{
		// PORT_SCAN: > 20 distinct ports in 60 s.
		{"port scan 30 ports", PortScan, series(30, 0, time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "10.2.2.2", uint16(1000+i), 0, 0)
		}), Medium, nil, func(t *testing.T, s []Signal) {
			if s[0].Value != 30 {
				t.Errorf("value %g, want 30", s[0].Value)
			}
		}},
		{"port scan 150 ports", PortScan, series(150, 0, 300*time.Millisecond, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "10.2.2.2", uint16(1000+i), 0, 0)
		}), High, nil, nil},
		{"workstation on four ports", PortScan, series(200, 0, 1500*time.Millisecond, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("198.51.100.%d", i%50), []uint16{443, 80, 53, 123}[i%4], 500, 5000)
		}), SeverityNone, nil, nil},

		// CONNECTION_SPIKE: z > 3 against mean 10 / sd 3 per minute.
		{"60 connections a minute", ConnectionSpike, series(60, 0, time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.51.100.1", 443, 1, 1)
		}), Critical, nil, nil},
		{"28 connections a minute", ConnectionSpike, series(28, 0, 2*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.51.100.1", 443, 1, 1)
		}), High, nil, nil},
		{"15 connections a minute", ConnectionSpike, series(15, 0, 4*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.51.100.1", 443, 1, 1)
		}), SeverityNone, nil, nil},
		{"busy host with a baseline", ConnectionSpike, series(60, 0, time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.51.100.1", 443, 1, 1)
		}), SeverityNone, hostBaseline{BaselineConnections: {100, 20}}, nil},
		{"quiet host with a baseline", ConnectionSpike, series(8, 0, 5*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.51.100.1", 443, 1, 1)
		}), High, hostBaseline{BaselineConnections: {2, 1}}, func(t *testing.T, s []Signal) {
			if v, _ := s[0].Metric("baseline"); v != 1 {
				t.Errorf("baseline %g, want 1 (host)", v)
			}
			if s[0].Value != 6 {
				t.Errorf("z %g, want 6", s[0].Value)
			}
		}},

		// PRIVILEGED_ACCESS: >= 2 admin ports or >= 3 hosts, internal.
		{"SSH, SMB, RDP to three hosts", PrivilegedAccess, series(3, 0, 5*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("10.3.0.%d", i), []uint16{22, 445, 3389}[i], 100, 100)
		}), High, nil, nil},
		{"all four services", PrivilegedAccess, series(4, 0, 5*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "10.3.0.1", []uint16{22, 445, 3389, 5986}[i], 100, 100)
		}), Critical, nil, func(t *testing.T, s []Signal) {
			if got := strongest(s).Services; !slices.Equal(got, []string{"SSH", "SMB", "RDP", "WinRM"}) {
				t.Errorf("services %v, want in port order", got)
			}
		}},
		{"admin SSH to two servers", PrivilegedAccess, series(6, 0, 5*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("10.3.0.%d", i%2), 22, 3000, 30000)
		}), SeverityNone, nil, nil},
		{"admin SSH to three servers", PrivilegedAccess, series(6, 0, 5*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("10.3.0.%d", i%3), 22, 3000, 30000)
		}), Low, nil, nil},
		{"git over SSH to external hosts", PrivilegedAccess, series(6, 0, 5*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("140.82.112.%d", i), 22, 3000, 30000)
		}), SeverityNone, nil, nil},

		// HOST_SWEEP: >= 25 internal hosts on one port in 5 minutes.
		{"sweep of 30 hosts on 445", HostSweep, series(30, 0, 4*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("10.4.0.%d", i), 445, 0, 0)
		}), Medium, nil, func(t *testing.T, s []Signal) {
			if p, _ := s[0].Metric("port"); p != 445 || len(s[0].Dsts) != maxDetailDsts {
				t.Errorf("port %g, %d destinations listed", p, len(s[0].Dsts))
			}
		}},
		{"sweep of 150 hosts", HostSweep, series(150, 0, time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("10.4.%d.%d", i/100, i%100), 445, 0, 0)
		}), High, nil, nil},
		{"monitoring poller on 10 hosts", HostSweep, series(60, 0, 4*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("10.4.0.%d", i%10), 161, 80, 400)
		}), SeverityNone, nil, nil},

		// FAILED_CONNECTIONS: >= 20 attempts, >= half failed.
		{"40 of 50 unanswered", FailedConnections, series(50, 0, 2*time.Second, func(i int, ts time.Time) ingest.Conn {
			c := conn(ts, src, fmt.Sprintf("10.5.0.%d", i), 80, 0, 0)
			return withState(c, map[bool]ingest.ConnState{true: ingest.S0, false: ingest.SF}[i%5 != 0])
		}), Low, nil, nil},
		{"200 of 250 rejected", FailedConnections, series(250, 0, time.Second, func(i int, ts time.Time) ingest.Conn {
			c := conn(ts, src, fmt.Sprintf("10.5.%d.%d", i/100, i%100), 80, 0, 0)
			return withState(c, map[bool]ingest.ConnState{true: ingest.REJ, false: ingest.SF}[i%5 != 0])
		}), Medium, nil, nil},
		{"3 of 50 rejected", FailedConnections, series(50, 0, 2*time.Second, func(i int, ts time.Time) ingest.Conn {
			c := conn(ts, src, "10.5.0.1", 80, 100, 100)
			return withState(c, map[bool]ingest.ConnState{true: ingest.REJ, false: ingest.SF}[i%17 == 0])
		}), SeverityNone, nil, nil},
		{"no conn_state at all", FailedConnections, series(50, 0, 2*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("10.5.0.%d", i), 80, 0, 0)
		}), SeverityNone, nil, nil},

		// PERIODIC_BEACON: >= 3 connections, gap CV < 0.3, in 5 minutes.
		{"60 s beacon", PeriodicBeacon, series(10, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts.Add(time.Duration(i%3-1)*time.Second), src, "203.0.113.99", 8443, 300, 200)
		}), High, nil, nil},
		{"100 s beacon", PeriodicBeacon, series(3, 0, 100*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "203.0.113.99", 8443, 300, 200)
		}), Medium, nil, nil},
		{"human browsing", PeriodicBeacon, func() []ingest.Conn {
			var cs []ingest.Conn
			ts := t0
			for _, g := range irregular {
				ts = ts.Add(g * time.Second)
				cs = append(cs, conn(ts, src, "198.51.100.80", 443, 900, 40000))
			}
			return cs
		}(), SeverityNone, nil, nil},
		{"parallel connections", PeriodicBeacon, series(3, 0, 100*time.Millisecond, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.51.100.80", 443, 900, 40000)
		}), SeverityNone, nil, nil},

		// PERSISTENT_DESTINATION: >= 5 connections to a destination fewer
		// than 5 internal hosts contact, not on 80/443/53/123.
		{"rare destination, one host", PersistentDestination, series(10, 0, 50*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "203.0.113.99", 8443, 300, 900)
		}), Critical, nil, nil},
		{"two hosts", PersistentDestination, cat(series(10, 0, 50*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "203.0.113.99", 8443, 300, 900)
		}), series(10, time.Second, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, "10.1.1.2", "203.0.113.99", 8443, 300, 900)
		})), High, nil, nil},
		{"four hosts", PersistentDestination, cat(series(10, 0, 50*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "203.0.113.99", 8443, 300, 900)
		}), series(30, time.Second, 20*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, fmt.Sprintf("10.1.1.%d", 2+i%3), "203.0.113.99", 9000, 300, 900) // another port counts too
		})), Medium, nil, nil},
		{"a destination five hosts use", PersistentDestination, cat(series(10, 0, 50*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "203.0.113.99", 8443, 300, 900)
		}), series(40, time.Second, 15*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, fmt.Sprintf("10.1.1.%d", 2+i%4), "203.0.113.99", 8443, 300, 900)
		})), SeverityNone, nil, nil},
		{"NTP to pool.ntp.org", PersistentDestination, series(15, 0, 64*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "162.159.200.1", 123, 48, 48)
		}), SeverityNone, nil, nil},

		// COMMAND_EXCHANGE: a session of >= 3 exchanges, requests < 500 B
		// on average, responses > 2x requests, total ratio > 3.
		{"C2 exchanges", CommandExchange, series(8, 0, 45*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "203.0.113.99", 8443, 235, 1420)
		}), High, nil, nil},
		{"uploads", CommandExchange, series(8, 0, 45*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "203.0.113.99", 8443, 20000, 300)
		}), SeverityNone, nil, nil},
		{"DNS to a public resolver", CommandExchange, series(8, 0, 20*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "8.8.8.8", 53, 40, 200)
		}), SeverityNone, nil, nil},
		{"TLS page loads", CommandExchange, series(8, 0, 20*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.51.100.80", 443, 900, 40000)
		}), SeverityNone, nil, nil},

		// DATA_STAGING: internal transfers > 1 MB on 445/22/21/2049,
		// > 500 MB in 5 minutes.
		{"600 MB over SMB", DataStaging, series(3, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("10.6.0.%d", i), 445, 0, 200*mB)
		}), Medium, nil, nil},
		{"2 GB over NFS", DataStaging, series(2, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "10.6.0.1", 2049, 0, 1*gB)
		}), High, nil, nil},
		{"6 GB over SCP", DataStaging, series(1, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "10.6.0.1", 22, 6*gB, 0)
		}), Critical, nil, nil},
		{"nightly backup of 400 MB", DataStaging, series(1, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "10.6.0.1", 445, 400*mB, 1000)
		}), SeverityNone, nil, nil},
		{"900 MB in files under 1 MB", DataStaging, series(1000, 0, 250*time.Millisecond, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "10.6.0.1", 445, 0, 900*kB)
		}), SeverityNone, nil, nil},
		{"600 MB on a web port", DataStaging, series(1, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "10.6.0.1", 443, 0, 600*mB)
		}), SeverityNone, nil, nil},

		// OUTBOUND_SPIKE: > 1 GB, or z > 3 against 50 MB / 25 MB.
		{"1.5 GB upload", OutboundSpike, series(3, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.18.0.1", 443, 500*mB, 1000)
		}), Critical, nil, nil},
		{"200 MB upload", OutboundSpike, series(1, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.18.0.1", 443, 200*mB, 1000)
		}), Medium, nil, nil},
		{"400 MB upload", OutboundSpike, series(1, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.18.0.1", 443, 400*mB, 1000)
		}), High, nil, nil},
		{"50 MB to 8.8.8.8", OutboundSpike, series(1, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "8.8.8.8", 443, 50*mB, 0)
		}), SeverityNone, nil, nil},
		{"1.2 GB from a host that uploads 2 GB", OutboundSpike, series(1, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.18.0.1", 443, 1200*mB, 0)
		}), Critical, hostBaseline{BaselineBytesOutExternal: {2 * gB, 500 * mB}}, nil},
		{"30 MB from a host that uploads 10 MB", OutboundSpike, series(1, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.18.0.1", 443, 30*mB, 0)
		}), High, hostBaseline{BaselineBytesOutExternal: {10 * mB, 1 * mB}}, nil},
		{"backup client that uploads 600 MB with a baseline", OutboundSpike, series(1, 0, time.Minute, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, "198.18.0.1", 443, 600*mB, 0)
		}), SeverityNone, hostBaseline{BaselineBytesOutExternal: {500 * mB, 100 * mB}}, nil},

		// DESTINATION_DIVERSITY: >= 5 external destinations of connections
		// over 100 KB, > 50 MB in all, in 10 minutes.
		{"6 destinations of 20 MB", DestinationDiversity, series(6, 0, 30*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("198.18.%d.1", i), 443, 20*mB, 1000)
		}), Medium, nil, nil},
		{"12 destinations", DestinationDiversity, series(12, 0, 20*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("198.18.%d.1", i), 443, 20*mB, 1000)
		}), High, nil, nil},
		{"browsing 20 sites", DestinationDiversity, series(20, 0, 10*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("198.51.100.%d", i), 443, 50*kB, 2*mB)
		}), SeverityNone, nil, nil},
		{"6 destinations, 30 MB in all", DestinationDiversity, series(6, 0, 30*time.Second, func(i int, ts time.Time) ingest.Conn {
			return conn(ts, src, fmt.Sprintf("198.18.%d.1", i), 443, 5*mB, 1000)
		}), SeverityNone, nil, nil},
	}
	for _, tc := range cases {
		t.Run(string(tc.typ)+"/"+tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			c := &collector{}
			e, err := NewEngine(DefaultConfig(), c, nil, mem)
			if err != nil {
				t.Fatal(err)
			}
			e.SetBaselines(tc.baselines)
			if err := e.Process(context.Background(), tc.conns); err != nil {
				t.Fatal(err)
			}
			if err := e.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := c.of(tc.typ, src)
			if sev := maxSeverity(got); sev != tc.want {
				t.Fatalf("%s severity %s, want %s: %+v", tc.typ, sev, tc.want, got)
			}
			for _, s := range got {
				if s.WindowEnd <= s.WindowStart || s.FirstSeen < s.WindowStart || s.LastSeen >= s.WindowEnd {
					t.Errorf("bounds: window [%d, %d), seen %d..%d", s.WindowStart, s.WindowEnd, s.FirstSeen, s.LastSeen)
				}
				if len(s.Metrics) == 0 {
					t.Error("no metrics")
				}
			}
			if tc.check != nil && len(got) > 0 {
				tc.check(t, got)
			}
		})
	}
}

func TestBandsSeverity(t *testing.T) {
	up := Bands{{21, Medium}, {100, High}, {1000, Critical}}
	down := Bands{{4, Medium}, {2, High}, {1, Critical}}
	f := func(b Bands, desc bool, v float64, want Severity) {
		t.Helper()
		if got := b.severity(v, desc); got != want {
			t.Errorf("%v desc=%v: severity(%g) = %s, want %s", b, desc, v, got, want)
		}
	}
	f(up, false, 20, Low)
	f(up, false, 21, Medium)
	f(up, false, 99.9, Medium)
	f(up, false, 100, High)
	f(up, false, 1e9, Critical)
	f(down, true, 5, Low)
	f(down, true, 4, Medium)
	f(down, true, 3, Medium)
	f(down, true, 2, High)
	f(down, true, 1, Critical)
}
