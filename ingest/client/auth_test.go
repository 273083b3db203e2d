package client

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/server"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// authServer serves an ingest server that requires tokens over bufconn and
// returns a dialer for it.
func authServer(t *testing.T, sink server.Sink, tokens map[string]string) func(...grpc.DialOption) (*grpc.ClientConn, error) {
	t.Helper()
	var file strings.Builder
	for sensor, tok := range tokens {
		file.WriteString(sensor + " " + server.HashToken(tok) + "\n")
	}
	set, err := server.ParseTokens(strings.NewReader(file.String()), "tokens")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.DefaultConfig(), sink, slog.New(slog.DiscardHandler),
		func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) },
		server.WithAuthenticator(server.NewAuthenticator(set, nil, nil)))
	if err != nil {
		t.Fatal(err)
	}
	g, _ := server.NewGRPCServer(server.DefaultGRPCConfig(), srv)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return func(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
		opts = append(opts,
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		cc, err := grpc.NewClient("passthrough:///bufnet", opts...)
		if err == nil {
			t.Cleanup(func() { cc.Close() })
		}
		return cc, err
	}
}

func TestBearerToken(t *testing.T) {
	tok := server.NewToken()
	sink := &countingSink{byUID: map[string]int{}}
	sensors := map[string]int{}
	rec := server.SinkFunc(func(ctx context.Context, b *ingest.Batch, done func(error)) error {
		sink.mu.Lock()
		for _, c := range b.Conns {
			sensors[c.Sensor]++
		}
		sink.mu.Unlock()
		return sink.Write(ctx, b, done)
	})
	dial := authServer(t, rec, map[string]string{"zeek-a": tok})
	cfg := testConfig()
	cfg.Sensor = "" // the server fills in the token's sensor
	cfg.GiveUpAfter = 5 * time.Second

	// With the token: everything is stored as zeek-a.
	cc, err := dial(grpc.WithPerRPCCredentials(BearerToken(tok, false)))
	if err != nil {
		t.Fatal(err)
	}
	snd, _ := New(cc, cfg, slog.New(slog.DiscardHandler))
	if err := snd.Run(t.Context(), &sliceSource{conns: events(250)}); err != nil {
		t.Fatal(err)
	}
	sink.check(t, 250)
	if len(sensors) != 1 || sensors["zeek-a"] != 250 {
		t.Fatalf("stored sensors %v, want 250 of zeek-a", sensors)
	}

	for _, tc := range []struct {
		name string
		opts []grpc.DialOption
		cfg  func(*Config)
		code codes.Code
	}{
		{"no token", nil, nil, codes.Unauthenticated},
		{"wrong token", []grpc.DialOption{grpc.WithPerRPCCredentials(BearerToken(server.NewToken(), false))}, nil, codes.Unauthenticated},
		{"another sensor", []grpc.DialOption{grpc.WithPerRPCCredentials(BearerToken(tok, false))}, func(c *Config) { c.Sensor = "zeek-b" }, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.cfg != nil {
				tc.cfg(&c)
			}
			cc, err := dial(tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			snd, _ := New(cc, c, slog.New(slog.DiscardHandler))
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
			defer cancel()
			err = snd.Run(ctx, &sliceSource{conns: events(10)})
			if status.Code(err) != tc.code || ctx.Err() != nil {
				t.Fatalf("run: %v, want %v at once (a permanent error)", err, tc.code)
			}
		})
	}
	sink.check(t, 250)

	// A token that requires TLS is never put on a plaintext connection.
	if _, err := dial(grpc.WithPerRPCCredentials(BearerToken(tok, true))); err == nil || !strings.Contains(err.Error(), "transport level security") {
		t.Fatalf("plaintext dial with a token that requires TLS: %v", err)
	}
}

// TestUnencodableRecordsDropped: a record protobuf cannot encode is dropped
// and reported on its own; the rest of its batch is sent.
func TestUnencodableRecordsDropped(t *testing.T) {
	sink := &countingSink{byUID: map[string]int{}}
	h := newHarness(t, server.DefaultConfig(), sink)
	ev := events(10)
	ev[4].History = "S\xffh"
	ev[7].UID = "C\xc3"
	var got []string
	cfg := testConfig()
	cfg.OnReject = func(label string, seq uint64, r *ndrv1.Rejection) {
		got = append(got, label+"/"+itoa(int(seq))+"/"+itoa(int(r.GetIndex()))+"/"+r.GetField())
	}
	snd, _ := New(h.cc, cfg, slog.New(slog.DiscardHandler))
	if err := snd.Run(t.Context(), &sliceSource{conns: ev}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "mem/1/4/history mem/1/7/uid" {
		t.Fatalf("rejections %v", got)
	}
	sink.check(t, 8)
	if st := snd.Stats(); st.Unsendable != 2 || st.Events != 8 || st.Accepted != 8 {
		t.Fatalf("stats %+v", st)
	}
}
