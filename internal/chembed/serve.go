package chembed

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// ChildEnv marks a process as a chembed child: RunChildIfRequested serves
// when it is set to "1". Start sets it when Options.Reexec is true.
const ChildEnv = "NDR_CHEMBED_CHILD"

// Exit codes of a serving process, so the parent can tell a locked data dir
// from other failures without parsing the log.
const (
	ExitOK           = 0
	ExitError        = 1
	ExitUsage        = 2
	ExitDataDirInUse = 3
)

// keepAliveQueryID names the query that keeps clickhouse-local serving, so
// Serve can stop it with KILL QUERY.
const keepAliveQueryID = "ndr-chembed-keepalive"

// ServeOptions configures Serve. Command-line flags map one to one; see
// ParseServeArgs.
type ServeOptions struct {
	DataDir  string // required; created if missing
	TCPPort  int    // native protocol port; 0 picks a free one
	HTTPPort int    // HTTP port; 0 picks a free one
	LibPath  string // libchdb.so; empty installs into CacheDir if needed
	CacheDir string // see InstallOptions.CacheDir

	// Ready, if set, is called once the server answers /ping.
	Ready func(Endpoint)
	// Logger receives lifecycle messages; nil discards.
	Logger *slog.Logger
}

// ParseServeArgs parses the flags of the `ndr clickhouse` subcommand:
//
//	--data-dir DIR  --tcp-port N  --http-port N  [--lib PATH]  [--cache-dir DIR]
//
// Start passes exactly these, so a subcommand that uses this parser accepts
// whatever Start gives it.
func ParseServeArgs(args []string) (ServeOptions, error) {
	var o ServeOptions
	fs := flag.NewFlagSet("clickhouse", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.DataDir, "data-dir", "", "ClickHouse data directory (required)")
	fs.IntVar(&o.TCPPort, "tcp-port", 0, "native protocol port on 127.0.0.1 (0: pick a free one)")
	fs.IntVar(&o.HTTPPort, "http-port", 0, "HTTP port on 127.0.0.1 (0: pick a free one)")
	fs.StringVar(&o.LibPath, "lib", "", "path of libchdb.so (default: install into the cache dir)")
	fs.StringVar(&o.CacheDir, "cache-dir", "", "libchdb cache dir (default $XDG_CACHE_HOME/ndr or ~/.cache/ndr)")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("clickhouse flags: %w", err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("clickhouse flags: unexpected arguments %q", fs.Args())
	}
	if o.DataDir == "" {
		return o, ErrNoDataDir
	}
	return o, nil
}

// Args is the inverse of ParseServeArgs.
func (o ServeOptions) Args() []string {
	args := []string{"--data-dir", o.DataDir, "--tcp-port", strconv.Itoa(o.TCPPort), "--http-port", strconv.Itoa(o.HTTPPort)}
	if o.LibPath != "" {
		args = append(args, "--lib", o.LibPath)
	}
	if o.CacheDir != "" {
		args = append(args, "--cache-dir", o.CacheDir)
	}
	return args
}

// Serve runs ClickHouse in the current process until ctx ends, then stops
// it and returns nil. It returns an error if the server cannot start or
// stops on its own.
//
// Run it in a process of its own (Start does): libchdb installs its own
// threads and state into the process and can be started only once per
// process. The data directory is locked for the life of the call;
// ErrDataDirInUse means another server has it.
func Serve(ctx context.Context, opts ServeOptions) error {
	logger := orDiscard(opts.Logger)
	if opts.DataDir == "" {
		return ErrNoDataDir
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return err
	}
	defer lock.Close()

	lib := opts.LibPath
	if lib == "" {
		lib, err = EnsureLibrary(ctx, InstallOptions{CacheDir: opts.CacheDir, Logger: logger})
		if err != nil {
			return err
		}
	}
	ep := Endpoint{TCPPort: opts.TCPPort, HTTPPort: opts.HTTPPort}
	if ep.TCPPort == 0 || ep.HTTPPort == 0 {
		p, err := freePorts(2)
		if err != nil {
			return err
		}
		if ep.TCPPort == 0 {
			ep.TCPPort = p[0]
		}
		if ep.HTTPPort == 0 {
			ep.HTTPPort = p[1]
		}
	}
	query, err := loadLibchdb(lib)
	if err != nil {
		return err
	}

	logger.Info("starting clickhouse", "data_dir", dir, "tcp", ep.TCPAddr(), "http", ep.HTTPAddr(), "lib", lib)
	exited := make(chan error, 1)
	go func() { exited <- query(serverArgv(dir, ep)) }()

	if err := waitPing(ctx, ep.HTTPAddr(), exited, nil); err != nil {
		if errors.Is(err, ErrExited) {
			return err
		}
		// ctx ended before this process saw the server ready: a stop was
		// asked for (SIGTERM), which is a clean end. The parent may have
		// seen it ready first and already be shutting it down.
		return stopServer(ctx, ep, exited, logger)
	}
	logger.Info("clickhouse ready", "tcp", ep.TCPAddr(), "http", ep.HTTPAddr(), "dsn", ep.DSN(DefaultDatabase))
	if opts.Ready != nil {
		opts.Ready(ep)
	}
	select {
	case err := <-exited:
		return fmt.Errorf("%w: %v", ErrExited, err)
	case <-ctx.Done():
	}
	return stopServer(ctx, ep, exited, logger)
}

// serverArgv is clickhouse-local's command line that opens the listeners
// and keeps serving: the last query never ends (a row every 0.1 s from an
// endless table) until stopServer kills it. The short sleep bounds how long
// the kill takes; the wakeups cost nothing measurable.
func serverArgv(dir string, ep Endpoint) []string {
	return []string{
		"clickhouse",
		"--path=" + dir,
		"--listen_host=127.0.0.1",
		"--tcp_port=" + strconv.Itoa(ep.TCPPort),
		"--http_port=" + strconv.Itoa(ep.HTTPPort),
		"--multiquery",
		"--query_id=" + keepAliveQueryID,
		"--query=SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; " +
			"SELECT sleepEachRow(0.1) FROM system.numbers FORMAT Null " +
			"SETTINGS function_sleep_max_microseconds_per_block=0, max_block_size=1",
	}
}

// stopServer kills the keep-alive query; clickhouse-local then closes its
// listeners, releases the data dir and the call returns (about 0.5 s).
// The caller must exit the process soon after: the engine cannot be
// started again in it.
func stopServer(ctx context.Context, ep Endpoint, exited <-chan error, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	logger.Info("stopping clickhouse")
	q := url.Values{
		"query":    {"KILL QUERY WHERE query_id = {id:String} SYNC"},
		"param_id": {keepAliveQueryID},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ep.HTTPAddr()+"/?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("stop clickhouse: %w", err)
	}
	resp, err := noKeepAlive(0).Do(req)
	if err != nil {
		return fmt.Errorf("stop clickhouse: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// With client connections still open, clickhouse-local waits about
	// 5 s for them and then exits the process with status 1 itself
	// (measured). Do not wait that long: after a short grace the caller
	// exits the process, which loses nothing an INSERT acknowledged.
	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	select {
	case <-exited: // "Query was cancelled": the expected end
		logger.Info("clickhouse stopped")
	case <-grace.C:
		logger.Warn("clickhouse still has client connections; not waiting for them", "grace", stopGrace)
	}
	return nil
}

// stopGrace is how long stopServer waits for clickhouse-local to finish
// after its keep-alive query was killed.
const stopGrace = 2 * time.Second

// waitPing polls GET /ping until it answers, the server exits, ctx ends or
// deadline fires (nil: no deadline).
func waitPing(ctx context.Context, addr string, exited <-chan error, deadline <-chan time.Time) error {
	client := noKeepAlive(time.Second)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if ping(ctx, client, addr) {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("%w before ready: %v", ErrExited, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return ErrNotReady
		case <-t.C:
		}
	}
}

// noKeepAlive is a client that leaves no idle connection behind: an open
// connection makes clickhouse-local's shutdown wait for it.
func noKeepAlive(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

func ping(ctx context.Context, client *http.Client, addr string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/ping", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == "Ok."
}

// localResultV2 mirrors struct local_result_v2 in chdb.h.
type localResultV2 struct {
	buf          *byte
	len          uintptr
	vec          unsafe.Pointer
	elapsed      float64
	rowsRead     uint64
	bytesRead    uint64
	errorMessage *byte
}

// loadLibchdb dlopens the library and returns a function that runs
// clickhouse-local with argv and returns its error (nil on success).
func loadLibchdb(path string) (func(argv []string) error, error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	var (
		queryV2 func(argc int32, argv **byte) *localResultV2
		freeV2  func(*localResultV2)
	)
	purego.RegisterLibFunc(&queryV2, h, "query_stable_v2")
	purego.RegisterLibFunc(&freeV2, h, "free_result_v2")
	return func(args []string) error {
		bufs := make([][]byte, len(args))
		argv := make([]*byte, len(args)+1) // NULL-terminated, as main's argv
		for i, a := range args {
			bufs[i] = append([]byte(a), 0)
			argv[i] = &bufs[i][0]
		}
		res := queryV2(int32(len(args)), &argv[0])
		runtime.KeepAlive(bufs)
		runtime.KeepAlive(argv)
		if res == nil {
			return errors.New("query_stable_v2 returned no result")
		}
		defer freeV2(res)
		if msg := goString(res.errorMessage); msg != "" {
			return errors.New(strings.TrimSpace(msg))
		}
		return nil
	}, nil
}

// goString copies a NUL-terminated C string.
func goString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// RunChildIfRequested serves ClickHouse if this process was started as a
// chembed child (ChildEnv=1) and reports the exit code; ok is false in any
// other process. Test binaries call it first thing in TestMain:
//
//	if code, ok := chembed.RunChildIfRequested(ctx); ok {
//		os.Exit(code)
//	}
//
// The arguments are those of ParseServeArgs after an optional leading
// "clickhouse". SIGTERM and SIGINT stop the server cleanly.
func RunChildIfRequested(ctx context.Context) (code int, ok bool) {
	if os.Getenv(ChildEnv) != "1" {
		return 0, false
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "clickhouse" {
		args = args[1:]
	}
	opts, err := ParseServeArgs(args)
	if err != nil {
		logger.Error("chembed child", "err", err)
		return ExitUsage, true
	}
	opts.Logger = logger
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = Serve(ctx, opts)
	if err != nil {
		logger.Error("chembed child", "err", err)
	}
	return ExitCode(err), true
}

// ExitCode maps Serve's error to the process exit code a parent expects.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrDataDirInUse):
		return ExitDataDirInUse
	case errors.Is(err, ErrNoDataDir):
		return ExitUsage
	}
	return ExitError
}
