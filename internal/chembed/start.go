package chembed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LogFileName is the child's stdout and stderr, in the data directory.
const LogFileName = "clickhouse.log"

// Options configures Start.
type Options struct {
	DataDir  string // required; created if missing; one server at a time
	TCPPort  int    // 0 picks a free loopback port
	HTTPPort int    // 0 picks a free loopback port
	LibPath  string // libchdb.so; empty installs it (in the parent) if needed
	CacheDir string // see InstallOptions.CacheDir

	// Command is the program and leading arguments of the child; Start
	// appends ServeOptions.Args(). Default: this executable and
	// "clickhouse", i.e. the ndr binary's subcommand.
	Command []string
	// Env is added to the child's environment (which is otherwise this
	// process's).
	Env []string
	// Reexec sets ChildEnv=1 in the child, for test binaries whose TestMain
	// calls RunChildIfRequested.
	Reexec bool
	// ReadyTimeout bounds the wait for /ping; default 60 s.
	ReadyTimeout time.Duration
	// Logger receives lifecycle messages; nil discards.
	Logger *slog.Logger
}

// Server is a ClickHouse child process started by Start.
type Server struct {
	ep      Endpoint
	dataDir string
	logPath string
	pid     int
	logger  *slog.Logger

	exited  chan struct{} // closed when the child has been waited for
	waitErr error         // valid after exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Start runs ClickHouse as a child process and returns once it answers
// /ping. ctx bounds only the start; the server runs until Shutdown (or
// until this process dies: the child gets SIGKILL then).
//
// When the ports were picked automatically and another process took one in
// the meantime, Start tries again with new ports (three attempts).
func Start(ctx context.Context, opts Options) (*Server, error) {
	logger := orDiscard(opts.Logger)
	if opts.DataDir == "" {
		return nil, ErrNoDataDir
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// Fail early with the holder's pid; the child's own lock is what
	// really keeps two servers apart.
	if err := checkDataDir(dir); err != nil {
		return nil, err
	}
	lib := opts.LibPath
	if lib == "" {
		lib, err = EnsureLibrary(ctx, InstallOptions{CacheDir: opts.CacheDir, Logger: logger})
		if err != nil {
			return nil, err
		}
	}
	command := opts.Command
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("child command: %w", err)
		}
		command = []string{exe, "clickhouse"}
	}
	timeout := opts.ReadyTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	autoPorts := opts.TCPPort == 0 || opts.HTTPPort == 0
	attempts := 1
	if autoPorts {
		attempts = 3
	}
	for attempt := 1; ; attempt++ {
		so := ServeOptions{DataDir: dir, TCPPort: opts.TCPPort, HTTPPort: opts.HTTPPort, LibPath: lib, CacheDir: opts.CacheDir}
		if autoPorts {
			p, err := freePorts(2)
			if err != nil {
				return nil, err
			}
			if so.TCPPort == 0 {
				so.TCPPort = p[0]
			}
			if so.HTTPPort == 0 {
				so.HTTPPort = p[1]
			}
		}
		s, err := start(ctx, command, opts, so, timeout, logger)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortTaken) || attempt >= attempts {
			return nil, err
		}
		logger.Warn("clickhouse port taken, retrying with new ports", "err", err)
	}
}

func start(ctx context.Context, command []string, opts Options, so ServeOptions, timeout time.Duration, logger *slog.Logger) (*Server, error) {
	s := &Server{
		ep:      Endpoint{TCPPort: so.TCPPort, HTTPPort: so.HTTPPort},
		dataDir: so.DataDir,
		logPath: filepath.Join(so.DataDir, LogFileName),
		logger:  logger,
		exited:  make(chan struct{}),
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("child log: %w", err)
	}
	var logStart int64
	if st, err := logf.Stat(); err == nil {
		logStart = st.Size()
	}
	cmd := exec.Command(command[0], append(command[1:], so.Args()...)...)
	cmd.Env = append(os.Environ(), opts.Env...)
	if opts.Reexec {
		cmd.Env = append(cmd.Env, ChildEnv+"=1")
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childSysProcAttr()
	err = cmd.Start()
	logf.Close() // the child has its own descriptor
	if err != nil {
		return nil, fmt.Errorf("start clickhouse child: %w", err)
	}
	s.pid = cmd.Process.Pid
	logger.Info("clickhouse child started", "pid", s.pid, "data_dir", so.DataDir,
		"tcp", s.ep.TCPAddr(), "http", s.ep.HTTPAddr(), "log", s.logPath)
	exitErr := make(chan error, 1)
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
		exitErr <- s.waitErr
	}()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	err = waitPing(ctx, s.ep.HTTPAddr(), exitErr, deadline.C)
	if err == nil {
		logger.Info("clickhouse ready", "pid", s.pid, "dsn", s.DSN())
		return s, nil
	}
	if errors.Is(err, ErrExited) {
		logTail := readTail(s.logPath, logStart, 4096)
		var ee *exec.ExitError
		switch {
		case errors.As(s.waitErr, &ee) && ee.ExitCode() == ExitDataDirInUse:
			err = ErrDataDirInUse
		case strings.Contains(logTail, "Address already in use"):
			err = fmt.Errorf("%w: %w", ErrExited, errPortTaken)
		}
		return nil, fmt.Errorf("%w (%v); %s says:\n%s", err, s.waitErr, s.logPath, logTail)
	}
	// Not ready in time or ctx ended: do not leave it running.
	s.kill()
	<-s.exited
	return nil, fmt.Errorf("%w; %s says:\n%s", err, s.logPath, readTail(s.logPath, logStart, 4096))
}

// Endpoint is where the server answers.
func (s *Server) Endpoint() Endpoint { return s.ep }

// TCPAddr is the native protocol address, 127.0.0.1:port.
func (s *Server) TCPAddr() string { return s.ep.TCPAddr() }

// HTTPAddr is the HTTP interface address, 127.0.0.1:port.
func (s *Server) HTTPAddr() string { return s.ep.HTTPAddr() }

// DSN is the store DSN for the ndr database on this server.
func (s *Server) DSN() string { return s.ep.DSN(DefaultDatabase) }

// LogPath is the child's log file.
func (s *Server) LogPath() string { return s.logPath }

// PID is the child's process id.
func (s *Server) PID() int { return s.pid }

// Done is closed when the child has exited, whether by Shutdown or not.
func (s *Server) Done() <-chan struct{} { return s.exited }

// Shutdown sends SIGTERM and waits for the child to exit; when ctx ends
// first it kills the child's process group with SIGKILL. It is safe to call
// more than once and returns the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.shutdown(ctx) })
	return s.stopErr
}

func (s *Server) shutdown(ctx context.Context) error {
	select {
	case <-s.exited:
		return s.exitResult()
	default:
	}
	s.logger.Info("stopping clickhouse child", "pid", s.pid)
	_ = syscall.Kill(-s.pid, syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.exitResult()
	case <-ctx.Done():
		s.kill()
		<-s.exited
		return fmt.Errorf("stop clickhouse child: killed after %w", ctx.Err())
	}
}

func (s *Server) kill() { _ = syscall.Kill(-s.pid, syscall.SIGKILL) }

// exitResult treats a clean exit and death by our SIGTERM as success.
func (s *Server) exitResult() error {
	if s.waitErr == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(s.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	return fmt.Errorf("%w: %v; %s says:\n%s", ErrExited, s.waitErr, s.logPath, readTail(s.logPath, 0, 2048))
}

// readTail returns up to n bytes from the end of the file, not before off.
func readTail(path string, off int64, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	from := max(st.Size()-n, off, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, from, st.Size()-from))
	if err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	return string(b)
}
