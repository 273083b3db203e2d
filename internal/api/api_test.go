package api

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/hunt"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
	"github.com/ndr-go/ndr/scoring"
)

func TestMain(m *testing.M) { chtest.Main(m) }

var t0 = time.Date(2026, 2, 6, 0, 0, 0, 0, time.UTC)

func detection(id, typ string, sev features.Severity, src string, hour int, dsts ...string) scoring.Detection {
	d := scoring.Detection{
		ID: id, RuleID: "R-" + typ, Type: typ, Src: netip.MustParseAddr(src), Severity: sev,
		FirstSeen: t0.Add(time.Duration(hour) * time.Hour).UnixMicro(), LastSeen: t0.Add(time.Duration(hour)*time.Hour + time.Minute).UnixMicro(),
		Confidence: 0.9, Score: 90, Count: 1, Version: 1,
		MITRE: scoring.MITRE{Tactic: "TA0011", Techniques: []scoring.Technique{{ID: "T1071"}}},
	}
	for _, a := range dsts {
		d.Dsts = append(d.Dsts, netip.MustParseAddr(a))
	}
	return d
}

// serve starts a gRPC server with svc over bufconn and returns a client.
func serve(t *testing.T, svc *DetectionService) ndrv1.DetectionServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	svc.Register(g, nil)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return ndrv1.NewDetectionServiceClient(conn)
}

// watch opens a Watch and waits until the server has registered it.
func watch(t *testing.T, c ndrv1.DetectionServiceClient, f *ndrv1.DetectionFilter) grpc.ServerStreamingClient[ndrv1.Detection] {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	stream, err := c.Watch(ctx, &ndrv1.WatchDetectionsRequest{Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatalf("watch header: %v", err)
	}
	return stream
}

func TestWatchDeliversWithinASecond(t *testing.T) {
	bc := NewBroadcaster(DefaultBroadcasterConfig(), time.Now)
	c := serve(t, NewDetectionService(nil, bc, nil))
	all := watch(t, c, nil)
	c2only := watch(t, c, &ndrv1.DetectionFilter{Types: []string{"C2_BEACONING"}, MinSeverity: ndrv1.Severity_SEVERITY_HIGH})

	lm := detection("LM-1", "LATERAL_MOVEMENT", features.Critical, "10.0.0.5", 1, "10.0.0.10")
	c2low := detection("C2-1", "C2_BEACONING", features.Low, "10.0.0.23", 2, "203.0.113.99")
	c2 := detection("C2-2", "C2_BEACONING", features.Critical, "10.0.0.23", 3, "203.0.113.99")
	c2v2 := c2
	c2v2.Version, c2v2.Count = 2, 2

	var worst time.Duration
	for i, d := range []scoring.Detection{lm, c2low, c2, c2v2} {
		emitted := time.Now()
		kind := scoring.Created
		if d.Version > 1 {
			kind = scoring.Updated
		}
		if err := bc.Emit(t.Context(), scoring.Event{Kind: kind, Detection: d}); err != nil {
			t.Fatal(err)
		}
		got, err := all.Recv()
		if err != nil {
			t.Fatal(err)
		}
		latency := time.Since(emitted)
		worst = max(worst, latency)
		if latency > time.Second {
			t.Errorf("detection %d arrived %v after it was emitted, want within 1 s", i, latency)
		}
		if got.DetectionId != d.ID || got.Version != d.Version || got.Type != d.Type {
			t.Errorf("got %s v%d %s, want %s v%d %s", got.DetectionId, got.Version, got.Type, d.ID, d.Version, d.Type)
		}
		if got.DetectedAtUs < emitted.UnixMicro() || got.DetectedAtUs > time.Now().UnixMicro() {
			t.Errorf("detected_at %d outside the emission", got.DetectedAtUs)
		}
	}
	t.Logf("worst Watch latency over bufconn: %v", worst)

	// The filtered watcher saw only the high-severity C2 versions, in order.
	for _, want := range []uint64{1, 2} {
		got, err := c2only.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got.DetectionId != c2.ID || got.Version != want {
			t.Errorf("filtered watch got %s v%d, want %s v%d", got.DetectionId, got.Version, c2.ID, want)
		}
	}
	// The wire form: addresses as 4 bytes, the full JSON, severity.
	got := DetectionToProto(&lm, t0)
	if len(got.Src) != 4 || netip.AddrFrom4([4]byte(got.Src)) != lm.Src || len(got.Dsts) != 1 || got.Severity != ndrv1.Severity_SEVERITY_CRITICAL {
		t.Errorf("wire form %v", got)
	}
	var back scoring.Detection
	if err := back.UnmarshalJSON([]byte(got.Json)); err != nil || back.ID != lm.ID || back.MITRE.Tactic != "TA0011" {
		t.Errorf("json %q: %v", got.Json, err)
	}
}

func TestWatchEnds(t *testing.T) {
	bc := NewBroadcaster(BroadcasterConfig{Buffer: 4, MaxWatchers: 2}, time.Now)
	c := serve(t, NewDetectionService(nil, bc, nil))
	slow := watch(t, c, nil)
	other := watch(t, c, nil)

	// A third watcher is refused.
	third, err := c.Watch(t.Context(), &ndrv1.WatchDetectionsRequest{})
	if err == nil {
		_, err = third.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("third watcher: %v, want ResourceExhausted", err)
	}

	// Dropping a watcher (as Emit does when its buffer is full) ends its
	// stream with ResourceExhausted; the other keeps going.
	bc.mu.Lock()
	var victim *Watcher
	for w := range bc.watchers {
		victim = w
		break
	}
	bc.endLocked(victim, ErrSlowWatcher)
	bc.mu.Unlock()
	d := detection("X-1", "C2_BEACONING", features.High, "10.0.0.23", 1)
	bc.Emit(t.Context(), scoring.Event{Kind: scoring.Created, Detection: d})
	codesSeen := map[codes.Code]int{}
	for _, s := range []grpc.ServerStreamingClient[ndrv1.Detection]{slow, other} {
		m, err := s.Recv()
		if err != nil {
			codesSeen[status.Code(err)]++
		} else if m.DetectionId != d.ID {
			t.Errorf("got %s", m.DetectionId)
		}
	}
	if codesSeen[codes.ResourceExhausted] != 1 {
		t.Errorf("ends %v, want one ResourceExhausted", codesSeen)
	}

	// Shutdown ends the remaining watches with Unavailable and refuses new ones.
	bc.Shutdown(t.Context())
	for _, s := range []grpc.ServerStreamingClient[ndrv1.Detection]{slow, other} {
		for {
			if _, err := s.Recv(); err != nil {
				if c := status.Code(err); c != codes.Unavailable && c != codes.ResourceExhausted {
					t.Errorf("after shutdown: %v", err)
				}
				break
			}
		}
	}
	s, err := c.Watch(t.Context(), &ndrv1.WatchDetectionsRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("watch after shutdown: %v, want Unavailable", err)
	}

	// A bad filter is InvalidArgument.
	bc2 := NewBroadcaster(DefaultBroadcasterConfig(), time.Now)
	c2 := serve(t, NewDetectionService(nil, bc2, nil))
	s, err = c2.Watch(t.Context(), &ndrv1.WatchDetectionsRequest{Filter: &ndrv1.DetectionFilter{Host: []byte{1, 2, 3}}})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad host: %v, want InvalidArgument", err)
	}
}

// TestBroadcasterNeverBlocks: a watcher that never reads is dropped once
// its buffer is full, and Emit keeps returning at once.
func TestBroadcasterNeverBlocks(t *testing.T) {
	bc := NewBroadcaster(BroadcasterConfig{Buffer: 3, MaxWatchers: 4}, time.Now)
	stuck, err := bc.Watch(hunt.DetectionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := bc.Watch(hunt.DetectionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for i := range 100 {
		d := detection(fmt.Sprintf("D-%d", i), "C2_BEACONING", features.High, "10.0.0.23", 1)
		start := time.Now()
		bc.Emit(t.Context(), scoring.Event{Kind: scoring.Created, Detection: d})
		if time.Since(start) > 100*time.Millisecond {
			t.Fatalf("Emit %d took %v", i, time.Since(start))
		}
		select {
		case <-reader.C():
			got++
		default:
			t.Fatalf("reader missed detection %d", i)
		}
	}
	select {
	case <-stuck.Done():
	default:
		t.Fatal("a watcher that never reads was not dropped")
	}
	if stuck.Err() != ErrSlowWatcher || reader.Err() != nil || got != 100 {
		t.Errorf("stuck %v, reader %v, got %d", stuck.Err(), reader.Err(), got)
	}
	if st := bc.Stats(); st.Watchers != 1 || st.Dropped != 1 || st.Delivered != 103 {
		t.Errorf("stats %+v, want 1 watcher, 1 dropped, 103 delivered", st)
	}
	reader.Close()
	reader.Close()
	if reader.Err() != nil || bc.Stats().Watchers != 0 {
		t.Errorf("after Close: %v, %+v", reader.Err(), bc.Stats())
	}
}

func TestList(t *testing.T) {
	st := chtest.OpenStore(t)
	aw, err := st.NewAnalysisWriter(st.Config().Writer)
	if err != nil {
		t.Fatal(err)
	}
	aw.Start(t.Context())
	var all []scoring.Detection
	for i := range 7 {
		typ := "C2_BEACONING"
		if i%2 == 1 {
			typ = "LATERAL_MOVEMENT"
		}
		d := detection(fmt.Sprintf("D-%d", i), typ, features.Severity(1+i%4), fmt.Sprintf("10.0.0.%d", 10+i), i, "203.0.113.99")
		all = append(all, d)
		if err := aw.AddDetection(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	if err := aw.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := serve(t, NewDetectionService(st, nil, chtest.Logger(t)))

	// Pages of 3, newest first, then filters.
	var ids []string
	tok := ""
	for range 10 {
		resp, err := c.List(t.Context(), &ndrv1.ListDetectionsRequest{Limit: 3, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.Detections {
			ids = append(ids, d.DetectionId)
			if d.DetectedAtUs == 0 || d.Json == "" || len(d.Src) != 4 {
				t.Errorf("%s: incomplete %v", d.DetectionId, d)
			}
		}
		if tok = resp.NextPageToken; tok == "" {
			break
		}
	}
	if want := "[D-6 D-5 D-4 D-3 D-2 D-1 D-0]"; fmt.Sprint(ids) != want {
		t.Errorf("pages gave %v, want %s", ids, want)
	}
	resp, err := c.List(t.Context(), &ndrv1.ListDetectionsRequest{Filter: &ndrv1.DetectionFilter{
		Types: []string{"C2_BEACONING"}, MinSeverity: ndrv1.Severity_SEVERITY_HIGH,
		FromUs: t0.Add(time.Hour).UnixMicro(), ToUs: t0.Add(6 * time.Hour).UnixMicro()}})
	if err != nil {
		t.Fatal(err)
	}
	// C2 are the even ones; severities 1+i%4: D-2 HIGH (3), D-4 LOW, D-6 HIGH but at 06:00.
	if len(resp.Detections) != 1 || resp.Detections[0].DetectionId != "D-2" {
		t.Errorf("filtered list %v, want [D-2]", resp.Detections)
	}
	host := netip.MustParseAddr("10.0.0.13").As4()
	resp, err = c.List(t.Context(), &ndrv1.ListDetectionsRequest{Filter: &ndrv1.DetectionFilter{Host: host[:]}})
	if err != nil || len(resp.Detections) != 1 || resp.Detections[0].DetectionId != "D-3" {
		t.Errorf("host filter: %v, %v", resp.GetDetections(), err)
	}
	for _, req := range []*ndrv1.ListDetectionsRequest{
		{PageToken: "not-a-token"},
		{Filter: &ndrv1.DetectionFilter{FromUs: 10, ToUs: 5}},
		{Filter: &ndrv1.DetectionFilter{MinSeverity: 9}},
		{Filter: &ndrv1.DetectionFilter{Types: []string{"a'b"}}},
	} {
		if _, err := c.List(t.Context(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want InvalidArgument", req, err)
		}
	}
	if _, err := serve(t, NewDetectionService(nil, nil, nil)).List(t.Context(), &ndrv1.ListDetectionsRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("no store: %v, want Unavailable", err)
	}
}
