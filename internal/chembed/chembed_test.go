package chembed_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ndr-go/ndr/internal/chembed"
)

// fakeChildEnv makes the test binary a stand-in child that answers /ping
// and ignores SIGTERM, to test Shutdown's escalation without ClickHouse.
const fakeChildEnv = "CHEMBED_TEST_FAKE_CHILD"

func TestMain(m *testing.M) {
	// TestMain is this binary's entry point, so it owns the root context.
	if code, ok := chembed.RunChildIfRequested(context.Background()); ok {
		os.Exit(code)
	}
	if os.Getenv(fakeChildEnv) == "ignore-term" {
		os.Exit(fakeChild())
	}
	os.Exit(m.Run())
}

func fakeChild() int {
	opts, err := chembed.ParseServeArgs(os.Args[2:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	signal.Ignore(syscall.SIGTERM)
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "Ok.\n") })
	fmt.Fprintln(os.Stderr, http.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", opts.HTTPPort), mux))
	return 1
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, nil))
}

// needLibrary installs libchdb if needed; without it the test is skipped
// with the reason, or fails under CI=true.
func needLibrary(t *testing.T) string {
	t.Helper()
	lib, err := chembed.EnsureLibrary(t.Context(), chembed.InstallOptions{Logger: testLogger(t)})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("embedded clickhouse unavailable: %v", err)
		}
		t.Skipf("embedded clickhouse unavailable: %v", err)
	}
	return lib
}

// httpQuery runs one statement over the HTTP interface. It keeps no idle
// connection, so a Shutdown afterwards can stop the server cleanly.
func httpQuery(t *testing.T, addr, query string) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Post("http://"+addr+"/?"+url.Values{"query": {query}}.Encode(), "text/plain", nil)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s: %s", query, resp.Status, b)
	}
	return strings.TrimSpace(string(b))
}

func TestServerLifecycle(t *testing.T) {
	lib := needLibrary(t)
	dir := t.TempDir()
	opts := chembed.Options{DataDir: dir, LibPath: lib, Reexec: true, Logger: testLogger(t)}

	s, err := chembed.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	if got := httpQuery(t, s.HTTPAddr(), "SELECT version()"); !strings.HasPrefix(got, "26.7.") {
		t.Errorf("version = %q, want 26.7.x", got)
	}
	if want := "clickhouse://" + s.TCPAddr() + "/ndr"; s.DSN() != want {
		t.Errorf("DSN = %q, want %q", s.DSN(), want)
	}
	// The native port is really the native protocol: it accepts TCP.
	c, err := net.Dial("tcp", s.TCPAddr())
	if err != nil {
		t.Fatalf("native port: %v", err)
	}
	c.Close()
	httpQuery(t, s.HTTPAddr(), "CREATE DATABASE ndr")
	httpQuery(t, s.HTTPAddr(), "CREATE TABLE ndr.t (x UInt64) ENGINE = MergeTree ORDER BY x")
	httpQuery(t, s.HTTPAddr(), "INSERT INTO ndr.t SELECT number FROM numbers(1000)")

	// A second server on the same data dir is refused, by Start's check ...
	if _, err := chembed.Start(t.Context(), opts); !errors.Is(err, chembed.ErrDataDirInUse) {
		t.Errorf("second Start: err = %v, want ErrDataDirInUse", err)
	} else if !strings.Contains(err.Error(), fmt.Sprint(s.PID())) {
		t.Errorf("second Start: %v does not name the holder pid %d", err, s.PID())
	}
	// ... and by the child's own lock, which Start's check only mirrors.
	exe, _ := os.Executable()
	cmd := exec.CommandContext(t.Context(), exe, "clickhouse", "--data-dir", dir, "--lib", lib)
	cmd.Env = append(os.Environ(), chembed.ChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != chembed.ExitDataDirInUse {
		t.Errorf("child on a locked dir: err = %v, want exit %d; output:\n%s", err, chembed.ExitDataDirInUse, out)
	} else if !strings.Contains(string(out), "data dir in use") {
		t.Errorf("child on a locked dir says %q, want a clear message", out)
	}

	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Shutdown")
	}
	if _, err := http.Get("http://" + s.HTTPAddr() + "/ping"); err == nil {
		t.Error("server still answers after Shutdown")
	}
	log, _ := os.ReadFile(s.LogPath())
	if !strings.Contains(string(log), "clickhouse stopped") {
		t.Errorf("child did not stop cleanly; log:\n%s", log)
	}

	// Restart on the same directory keeps the data.
	s2, err := chembed.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() { _ = s2.Shutdown(t.Context()) })
	if got := httpQuery(t, s2.HTTPAddr(), "SELECT count(), sum(x) FROM ndr.t"); got != "1000\t499500" {
		t.Errorf("after restart: %q, want 1000 rows summing to 499500", got)
	}
	// A client that keeps its connection open does not stall Shutdown
	// (clickhouse-local alone would wait 5 s and exit with status 1).
	idle, err := net.Dial("tcp", s2.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	start := time.Now()
	if err := s2.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown with an open client connection: %v", err)
	}
	if d := time.Since(start); d > 4500*time.Millisecond {
		t.Errorf("Shutdown with an open client connection took %v", d)
	}
}

func TestStartChildExitsEarly(t *testing.T) {
	t.Parallel()
	_, err := chembed.Start(t.Context(), chembed.Options{
		DataDir: t.TempDir(),
		LibPath: "/nonexistent/libchdb.so",
		Command: []string{"/bin/sh", "-c", "echo boom: cannot serve >&2; exit 7", "sh"},
	})
	if !errors.Is(err, chembed.ErrExited) {
		t.Fatalf("err = %v, want ErrExited", err)
	}
	if !strings.Contains(err.Error(), "boom: cannot serve") || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("error lacks the child's log tail and status: %v", err)
	}
}

func TestStartNotReady(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := chembed.Start(t.Context(), chembed.Options{
		DataDir:      t.TempDir(),
		LibPath:      "/nonexistent/libchdb.so",
		Command:      []string{"/bin/sh", "-c", "echo waiting >&2; exec sleep 60", "sh"},
		ReadyTimeout: 300 * time.Millisecond,
	})
	if !errors.Is(err, chembed.ErrNotReady) {
		t.Fatalf("err = %v, want ErrNotReady", err)
	}
	if !strings.Contains(err.Error(), "waiting") {
		t.Errorf("error lacks the child's log: %v", err)
	}
	// The child was killed, not left to run its 60 s.
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Start took %v; the unready child was not killed", d)
	}
}

func TestShutdownKillsAfterDeadline(t *testing.T) {
	t.Parallel()
	exe, _ := os.Executable()
	s, err := chembed.Start(t.Context(), chembed.Options{
		DataDir: t.TempDir(),
		LibPath: "/nonexistent/libchdb.so",
		Command: []string{exe, "clickhouse"},
		Env:     []string{fakeChildEnv + "=ignore-term"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err = s.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown of a child ignoring SIGTERM: err = %v, want DeadlineExceeded", err)
	}
	<-s.Done() // killed
	if err2 := s.Shutdown(t.Context()); err2 != err {
		t.Errorf("second Shutdown = %v, want the first result %v", err2, err)
	}
}

func TestParseServeArgs(t *testing.T) {
	t.Parallel()
	want := chembed.ServeOptions{DataDir: "/d", TCPPort: 9001, HTTPPort: 8124, LibPath: "/l.so", CacheDir: "/c"}
	got, err := chembed.ParseServeArgs(want.Args())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip = %+v, want %+v", got, want)
	}
	for _, bad := range [][]string{
		{"--tcp-port", "1"},                  // no data dir
		{"--data-dir", "/d", "--bogus"},      // unknown flag
		{"--data-dir", "/d", "extra"},        // positional
		{"--data-dir", "/d", "--tcp-port=x"}, // not a number
	} {
		if _, err := chembed.ParseServeArgs(bad); err == nil {
			t.Errorf("ParseServeArgs(%q) accepted", bad)
		}
	}
}

// fakeNPM writes a script that behaves like `npm install --prefix DIR ...`
// for the chdb package and counts its runs in dir/runs.
func fakeNPM(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "npm")
	script := `#!/bin/sh
echo run >> "` + filepath.Join(dir, "runs") + `"
prefix=""
while [ $# -gt 0 ]; do
  case "$1" in --prefix) prefix="$2"; shift ;; esac
  shift
done
` + body
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

const fakeInstall = `mkdir -p "$prefix/node_modules/@chdb/lib-linux-x64-gnu"
echo fake > "$prefix/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so"
`

func runs(t *testing.T, dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "runs"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

func TestEnsureLibraryConcurrentFirstUse(t *testing.T) {
	t.Parallel()
	bin, cache := t.TempDir(), t.TempDir()
	npm := fakeNPM(t, bin, fakeInstall)
	// An install interrupted earlier left a temporary dir behind.
	stale := filepath.Join(cache, "chdb-"+chembed.LibVersion+".tmp-123")
	if err := os.MkdirAll(filepath.Join(stale, "node_modules"), 0o755); err != nil {
		t.Fatal(err)
	}

	const n = 6
	paths, errs := make(chan string, n), make(chan error, n)
	for range n {
		go func() {
			p, err := chembed.EnsureLibrary(t.Context(), chembed.InstallOptions{CacheDir: cache, NPM: npm, Logger: testLogger(t)})
			paths <- p
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if p := <-paths; p != chembed.LibraryPath(cache) {
			t.Errorf("path = %q, want %q", p, chembed.LibraryPath(cache))
		}
	}
	if r := runs(t, bin); r != 1 {
		t.Errorf("npm ran %d times for %d concurrent first uses, want 1", r, n)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary install dir not removed: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(cache, "*.tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary dirs left: %q", left)
	}
	// Installed: later uses do not run npm.
	if _, err := chembed.EnsureLibrary(t.Context(), chembed.InstallOptions{CacheDir: cache, NPM: npm}); err != nil {
		t.Fatal(err)
	}
	if r := runs(t, bin); r != 1 {
		t.Errorf("npm ran again for an installed library (%d runs)", r)
	}
}

func TestEnsureLibraryFailedInstallLeavesNothing(t *testing.T) {
	t.Parallel()
	bin, cache := t.TempDir(), t.TempDir()
	// npm that writes half a tree and fails, like an interrupted download.
	npm := fakeNPM(t, bin, `mkdir -p "$prefix/node_modules/@chdb/lib-linux-x64-gnu"
echo partial > "$prefix/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so"
echo "npm ERR! network timeout" >&2
exit 1
`)
	_, err := chembed.EnsureLibrary(t.Context(), chembed.InstallOptions{CacheDir: cache, NPM: npm})
	if err == nil || !strings.Contains(err.Error(), "npm ERR! network timeout") {
		t.Fatalf("err = %v, want npm's output", err)
	}
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if e.IsDir() {
			t.Errorf("failed install left %s in the cache", e.Name())
		}
	}
	if _, err := os.Stat(chembed.LibraryPath(cache)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half library visible after a failed install: %v", err)
	}
}

func TestEnsureLibraryWithoutNPM(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := chembed.EnsureLibrary(t.Context(), chembed.InstallOptions{CacheDir: t.TempDir()})
	if !errors.Is(err, chembed.ErrNPMNotFound) {
		t.Fatalf("err = %v, want ErrNPMNotFound", err)
	}
}
