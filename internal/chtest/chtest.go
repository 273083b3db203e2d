// Package chtest gives tests a real ClickHouse: one embedded server
// (internal/chembed) per test binary, or the server named by
// NDR_TEST_CLICKHOUSE_DSN, and a fresh database per test. It is test
// infrastructure for the store adapter and whatever reads what the store
// wrote; production code never imports it.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { chtest.Main(m) }
//
// and then chtest.OpenStore(t) or chtest.NewDatabase(t) in tests. When no
// server can be had, those tests are skipped with the reason, or fail when
// CI=true, never silently pass.
package chtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ndr-go/ndr/internal/chembed"
	"github.com/ndr-go/ndr/internal/store"
)

const (
	// EnvDSN names an existing server (clickhouse://host:port, any
	// database path) to test against instead of starting one.
	EnvDSN = "NDR_TEST_CLICKHOUSE_DSN"
	// envUnavailable carries, from Main to the tests, why no server could
	// be started.
	envUnavailable = "NDR_CHTEST_UNAVAILABLE"
)

// Main runs the tests of a package that uses chtest and exits. It serves
// ClickHouse instead when this process is chtest's own server child, and
// otherwise starts one embedded server under a temporary directory for all
// the package's tests unless EnvDSN is set.
//
// The server is published to the tests through EnvDSN, the same way a
// developer points tests at a server of their own.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Main is the test binary's entry point, so it owns the root context.
	ctx := context.Background()
	if code, ok := chembed.RunChildIfRequested(ctx); ok {
		return code
	}
	if os.Getenv(EnvDSN) != "" {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "ndr-chtest-")
	if err != nil {
		return unavailable(m, err)
	}
	defer os.RemoveAll(dir)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := chembed.Start(ctx, chembed.Options{DataDir: dir, Reexec: true, Logger: logger})
	if err != nil {
		return unavailable(m, err)
	}
	os.Setenv(EnvDSN, srv.Endpoint().DSN("default"))
	code := m.Run()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		fmt.Fprintf(os.Stderr, "chtest: stop embedded clickhouse: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func unavailable(m *testing.M, err error) int {
	fmt.Fprintf(os.Stderr, "chtest: embedded clickhouse unavailable: %v\n", err)
	os.Setenv(envUnavailable, err.Error())
	return m.Run()
}

// serverDSN is the server's DSN, or skips (fails under CI=true) t.
func serverDSN(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn
	}
	reason := os.Getenv(envUnavailable)
	if reason == "" {
		t.Fatal("chtest: no ClickHouse: call chtest.Main from TestMain or set " + EnvDSN)
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("chtest: ClickHouse unavailable (CI=true, not skipping): %s", reason)
	}
	t.Skipf("chtest: ClickHouse unavailable, skipping: %s", reason)
	return ""
}

// NewDatabase returns a DSN naming a database of its own for t on the test
// server; store.Open creates it. It is dropped when t ends, unless t
// failed (then its name is logged for a look).
func NewDatabase(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(serverDSN(t))
	if err != nil {
		t.Fatalf("chtest: %s: %v", EnvDSN, err)
	}
	db := databaseName(t.Name())
	u.Path = "/" + db
	dsn := u.String()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chtest: keeping database %s of the failed test", db)
			return
		}
		cfg := store.Default()
		cfg.DSN = dsn
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		if err := store.DropDatabase(ctx, cfg); err != nil {
			t.Errorf("chtest: %v", err)
		}
	})
	return dsn
}

// databaseName makes a valid, unique database name that says which test
// it belongs to.
func databaseName(test string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(test) {
		if b.Len() >= 40 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteByte('_')
	b.WriteString(strings.ToLower(rand.Text()[:10]))
	return b.String()
}

// OpenStore opens a store on a fresh database (see NewDatabase), after
// applying opts to the default config, and closes it when t ends.
func OpenStore(t testing.TB, opts ...func(*store.Config)) *store.Store {
	t.Helper()
	cfg := store.Default()
	cfg.DSN = NewDatabase(t)
	for _, o := range opts {
		o(&cfg)
	}
	s, err := store.Open(t.Context(), cfg, Logger(t))
	if err != nil {
		t.Fatalf("chtest: open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Logger logs to t.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
