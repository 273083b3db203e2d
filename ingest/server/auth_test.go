package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// startWith is startServer with server options.
func startWith(t *testing.T, cfg Config, sink Sink, opts ...Option) (ndrv1.IngestServiceClient, *grpc.ClientConn, *Server) {
	t.Helper()
	srv, err := New(cfg, sink, slog.New(slog.DiscardHandler), testNow, opts...)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := NewGRPCServer(DefaultGRPCConfig(), srv)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return ndrv1.NewIngestServiceClient(cc), cc, srv
}

// testTokens makes a token for each sensor and the Tokens holding them.
func testTokens(t *testing.T, sensors ...string) (map[string]string, *Tokens) {
	t.Helper()
	toks := map[string]string{}
	var file strings.Builder
	file.WriteString("# test tokens\n\n")
	for _, s := range sensors {
		toks[s] = NewToken()
		file.WriteString(s + "  " + HashToken(toks[s]) + "\n")
	}
	set, err := ParseTokens(strings.NewReader(file.String()), "tokens")
	if err != nil {
		t.Fatal(err)
	}
	return toks, set
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// streamOne sends one batch on a new stream and returns its ack or the
// stream's error.
func streamOne(ctx context.Context, cli ndrv1.IngestServiceClient, b *ndrv1.EventBatch) (*ndrv1.BatchAck, error) {
	st, err := cli.Stream(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(b); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return st.Recv()
}

func TestTokensRequired(t *testing.T) {
	toks, set := testTokens(t, "zeek-a", "zeek-b")
	sink := &memSink{}
	auth := NewAuthenticator(set, slog.New(slog.DiscardHandler), nil)
	cli, cc, srv := startWith(t, DefaultConfig(), sink, WithAuthenticator(auth))
	ctx := t.Context()

	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{
		{"no token", ctx},
		{"wrong token", withToken(ctx, NewToken())},
		{"hash instead of token", withToken(ctx, strings.TrimPrefix(HashToken(toks["zeek-a"]), "sha256:"))},
		{"not bearer", metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+toks["zeek-a"])},
		{"empty bearer", metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer ")},
		{"two tokens", metadata.AppendToOutgoingContext(withToken(ctx, toks["zeek-a"]), "authorization", "Bearer "+toks["zeek-b"])},
		{"oversized", withToken(ctx, strings.Repeat("x", 4096))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := streamOne(tc.ctx, cli, batch(1, 3)); status.Code(err) != codes.Unauthenticated {
				t.Errorf("stream: %v, want Unauthenticated", err)
			}
			if _, err := cli.Push(tc.ctx, batch(1, 3)); status.Code(err) != codes.Unauthenticated {
				t.Errorf("push: %v, want Unauthenticated", err)
			}
		})
	}
	if sink.stored() != 0 {
		t.Fatalf("stored %d events from unauthenticated calls", sink.stored())
	}

	// Health needs no token.
	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "ndr.v1.IngestService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without a token: %v %v", h, err)
	}

	// Token of zeek-a writing as zeek-b: refused as a whole.
	actx := withToken(ctx, toks["zeek-a"])
	b := batch(1, 3)
	b.SensorId = "zeek-b"
	if _, err := streamOne(actx, cli, b); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("batch of another sensor on a stream: %v, want PermissionDenied", err)
	}
	if _, err := cli.Push(actx, b); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("batch of another sensor by push: %v, want PermissionDenied", err)
	}

	// Valid: the batch's own sensor, or none (the token's is filled in). An
	// event naming another sensor is refused on its own.
	b = batch(1, 4)
	b.SensorId = ""
	b.Events[2].SensorId = "zeek-b"
	a, err := streamOne(actx, cli, b)
	if err != nil {
		t.Fatal(err)
	}
	if a.GetAccepted() != 3 || len(a.GetRejections()) != 1 {
		t.Fatalf("ack %v, want 3 accepted and 1 rejected", a)
	}
	if r := a.GetRejections()[0]; r.GetIndex() != 2 || r.GetField() != "sensor_id" || !strings.Contains(r.GetReason(), `"zeek-b"`) {
		t.Fatalf("rejection %v, want index 2 field sensor_id naming zeek-b", r)
	}
	b = batch(2, 2)
	b.SensorId = "zeek-a"
	if _, err := cli.Push(actx, b); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	for _, c := range sink.conns {
		if c.Sensor != "zeek-a" {
			t.Errorf("stored a row of sensor %q through zeek-a's token", c.Sensor)
		}
	}
	n := len(sink.conns)
	sink.mu.Unlock()
	if n != 5 {
		t.Fatalf("stored %d, want 5", n)
	}
	if st := srv.Stats(); st.Unauthenticated != 14 || st.Denied != 2 {
		t.Fatalf("stats %+v, want 14 unauthenticated and 2 denied", st)
	}
}

// TestDuplicateSuppressionIsPerToken: a token cannot claim another sensor's
// (stream, seq) numbers, which would make the server acknowledge that
// sensor's real batches as duplicates without storing them.
func TestDuplicateSuppressionIsPerToken(t *testing.T) {
	toks, set := testTokens(t, "zeek-a", "zeek-b")
	sink := &memSink{}
	cli, _, _ := startWith(t, DefaultConfig(), sink, WithAuthenticator(NewAuthenticator(set, slog.New(slog.DiscardHandler), nil)))
	b := batch(1, 2)
	b.SensorId = ""
	if a, err := cli.Push(withToken(t.Context(), toks["zeek-b"]), b); err != nil || a.GetDuplicate() {
		t.Fatalf("zeek-b: %v %v", a, err)
	}
	if a, err := cli.Push(withToken(t.Context(), toks["zeek-a"]), b); err != nil || a.GetDuplicate() {
		t.Fatalf("zeek-a's batch with the same stream and seq: %v %v, want stored, not a duplicate", a, err)
	}
	if sink.stored() != 4 {
		t.Fatalf("stored %d, want 4", sink.stored())
	}
}

func TestRevokedTokenEndsStream(t *testing.T) {
	toks, set := testTokens(t, "zeek-1")
	auth := NewAuthenticator(set, slog.New(slog.DiscardHandler), nil)
	cli, _, _ := startWith(t, DefaultConfig(), &memSink{}, WithAuthenticator(auth))
	st, err := cli.Stream(withToken(t.Context(), toks["zeek-1"]))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(batch(1, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	_, empty := testTokens(t)
	auth.SetTokens(empty)
	_ = st.Send(batch(2, 2))
	if _, err := st.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("batch after revocation: %v, want Unauthenticated", err)
	}
}

// TestServerWithoutInterceptorsRefuses: a Server given an Authenticator but
// served without its interceptors refuses rather than trusting batches.
func TestServerWithoutInterceptorsRefuses(t *testing.T) {
	_, set := testTokens(t, "zeek-a")
	srv, err := New(DefaultConfig(), &memSink{}, slog.New(slog.DiscardHandler), testNow,
		WithAuthenticator(NewAuthenticator(set, slog.New(slog.DiscardHandler), nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Push(t.Context(), batch(1, 1)); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("push without a principal: %v, want Unauthenticated", err)
	}
}

func TestParseTokens(t *testing.T) {
	tok := NewToken()
	if !strings.HasPrefix(tok, "ndr_") || len(tok) != 4+43 {
		t.Fatalf("token %q", tok)
	}
	if NewToken() == tok {
		t.Fatal("two tokens alike")
	}
	h := HashToken(tok)
	good := "# comment\n\nzeek-a " + h + "\n  zeek-a\t" + HashToken("second") + "  \nzeek-b " + HashToken("third") + "\n"
	set, err := ParseTokens(strings.NewReader(good), "good")
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 3 || strings.Join(set.Sensors(), ",") != "zeek-a,zeek-b" {
		t.Fatalf("%d tokens, sensors %v", set.Len(), set.Sensors())
	}
	if p, ok := set.lookup(tok); !ok || p.Sensor != "zeek-a" {
		t.Fatalf("lookup: %v %v", p, ok)
	}
	if _, ok := set.lookup(h); ok {
		t.Fatal("the hash authenticates as if it were the token")
	}

	bad := strings.Join([]string{
		"zeek-a " + strings.TrimPrefix(h, "sha256:"), // 1: no scheme
		"zeek-a sha256:abcd",                         // 2: short
		"zeek-a " + tok,                              // 3: a token, not a hash
		"zeek-a",                                     // 4: one field
		"zeek a " + HashToken("x"),                   // 5: three fields
		"zeek-c " + h,                                // 6: fine
		"zeek-d " + h,                                // 7: same hash again
		"zeek\x1b " + HashToken("y"),                 // 8: control character
		strings.Repeat("s", 257) + " " + HashToken("z"),       // 9: long sensor
		"zeek-e sha256:" + strings.Repeat("g", 64),            // 10: not hex
		"zeek-f sha256:" + strings.Repeat("A", 64) + "\n# ok", // 11: upper-case hex is hex
	}, "\n")
	_, err = ParseTokens(strings.NewReader(bad), "bad")
	if err == nil {
		t.Fatal("bad file accepted")
	}
	for _, want := range []string{"bad:1: token hash must start with sha256:", "bad:2: token hash must be 64 hex", "bad:3: token hash must start with sha256:",
		"bad:4: want", "bad:5: want", "bad:7: the same token hash", "bad:8: sensor id", "bad:9: sensor id", "bad:10: token hash must be 64 hex"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	for _, unwanted := range []string{"bad:6:", "bad:11:"} {
		if strings.Contains(err.Error(), unwanted) {
			t.Errorf("error blames a good line (%s):\n%v", unwanted, err)
		}
	}
}

func TestTokenFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	a, b := NewToken(), NewToken()
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("zeek-a " + HashToken(a) + "\n")
	tf, auth, err := LoadTokenFile(path, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	has := func(tok string) bool { _, ok := auth.Tokens().lookup(tok); return ok }
	if !has(a) || has(b) {
		t.Fatal("initial tokens wrong")
	}
	if changed, err := tf.Reload(); changed || err != nil {
		t.Fatalf("reload of the same file: changed %v, %v", changed, err)
	}
	write("") // caught half-written: not applied unless it stays so
	if changed, err := tf.Reload(); changed || err != nil || !has(a) {
		t.Fatalf("first read of new content: changed %v, %v", changed, err)
	}

	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { tf.Watch(ctx, ticks); close(done) }()
	// Two reloads apply a change; the third send returns once the second
	// reload is over.
	tick := func() {
		for range 3 {
			ticks <- time.Time{}
		}
	}

	write("zeek-b " + HashToken(b) + "\n") // a rotated, a revoked
	tick()
	if has(a) || !has(b) {
		t.Fatal("reload did not swap the tokens")
	}
	write("zeek-b sha256:nothex\n") // a bad edit keeps what is in force
	tick()
	if !has(b) {
		t.Fatal("a bad file replaced the tokens in force")
	}
	cancel()
	<-done
}

func TestTokenFileMissing(t *testing.T) {
	if _, _, err := LoadTokenFile(filepath.Join(t.TempDir(), "nope"), slog.New(slog.DiscardHandler), nil); err == nil {
		t.Fatal("missing tokens file accepted")
	}
}
