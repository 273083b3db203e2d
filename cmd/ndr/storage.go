package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ndr-go/ndr/internal/chembed"
	"github.com/ndr-go/ndr/internal/store"
)

// storageFlags are the ClickHouse flags shared by serve and replay.
type storageFlags struct {
	dsn           string
	dataDir       string
	cacheDir      string
	retentionDays int
	caFile        string
	certFile      string
	keyFile       string
	skipVerify    bool
	flushRows     int
	flushInterval time.Duration
	wait          time.Duration
}

func (f *storageFlags) register(fs *flag.FlagSet) {
	def := store.Default()
	fs.StringVar(&f.dsn, "clickhouse", "", "ClickHouse DSN, e.g. clickhouse://user@host:9000/ndr?secure=true\n(default: start an embedded ClickHouse under --data-dir; env NDR_CLICKHOUSE_DSN)")
	fs.StringVar(&f.dataDir, "data-dir", "./ndr-data", "directory for the embedded ClickHouse's data")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "where the embedded ClickHouse library is installed (default $XDG_CACHE_HOME/ndr or ~/.cache/ndr)")
	fs.IntVar(&f.retentionDays, "retention-days", def.RetentionDays, "delete stored connections this many days after they were stored (0 keeps them)")
	fs.StringVar(&f.caFile, "clickhouse-ca", "", "CA bundle for a TLS (secure=true) ClickHouse")
	fs.StringVar(&f.certFile, "clickhouse-cert", "", "client certificate for ClickHouse mTLS")
	fs.StringVar(&f.keyFile, "clickhouse-key", "", "client key for ClickHouse mTLS")
	fs.BoolVar(&f.skipVerify, "clickhouse-insecure-skip-verify", false, "do not verify ClickHouse's certificate (testing only)")
	fs.IntVar(&f.flushRows, "flush-rows", def.Writer.FlushRows, "insert into ClickHouse once this many rows are buffered")
	fs.DurationVar(&f.flushInterval, "flush-interval", def.Writer.FlushInterval, "insert into ClickHouse at least this often")
	fs.DurationVar(&f.wait, "clickhouse-wait", time.Minute, "at start, how long to keep retrying a ClickHouse that cannot be reached (0: fail at once)")
}

// config builds the store configuration. Credentials come from the
// environment (NDR_CLICKHOUSE_USER, NDR_CLICKHOUSE_PASSWORD or
// NDR_CLICKHOUSE_PASSWORD_FILE) so they stay out of process listings.
func (f *storageFlags) config(env *environment, dsn string) (store.Config, error) {
	cfg := store.Default()
	cfg.DSN = dsn
	cfg.RetentionDays = f.retentionDays
	cfg.TLS = store.TLSConfig{CAFile: f.caFile, CertFile: f.certFile, KeyFile: f.keyFile, SkipVerify: f.skipVerify}
	cfg.Writer.FlushRows = f.flushRows
	cfg.Writer.FlushInterval = f.flushInterval
	cfg.Username = env.getenv("NDR_CLICKHOUSE_USER")
	cfg.Password = env.getenv("NDR_CLICKHOUSE_PASSWORD")
	if file := env.getenv("NDR_CLICKHOUSE_PASSWORD_FILE"); file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return cfg, fmt.Errorf("read NDR_CLICKHOUSE_PASSWORD_FILE: %w", err)
		}
		cfg.Password = strings.TrimRight(string(b), "\r\n")
	}
	return cfg, cfg.Validate()
}

// storage is an open store and, when ndr started it, the embedded server.
type storage struct {
	*store.Store
	embedded *chembed.Server
}

// openStorage connects to the DSN given, or starts an embedded ClickHouse
// under the data dir, and runs the schema migrations.
func (f *storageFlags) open(ctx context.Context, env *environment) (*storage, error) {
	dsn := orDefault(f.dsn, env.getenv("NDR_CLICKHOUSE_DSN"))
	s := &storage{}
	if dsn == "" {
		dir, err := filepath.Abs(filepath.Join(f.dataDir, "clickhouse"))
		if err != nil {
			return nil, err
		}
		env.log.Info("starting embedded ClickHouse", "data_dir", dir)
		srv, err := chembed.Start(ctx, chembed.Options{DataDir: dir, CacheDir: f.cacheDir, Logger: env.log})
		if err != nil {
			return nil, fmt.Errorf("start embedded clickhouse: %w", err)
		}
		s.embedded = srv
		dsn = srv.DSN()
		env.log.Info("embedded ClickHouse ready", "native", srv.TCPAddr(), "http", "http://"+srv.HTTPAddr(), "log", srv.LogPath())
	}
	cfg, err := f.config(env, dsn)
	if err != nil {
		s.close(ctx, env)
		return nil, err
	}
	st, err := openRetrying(ctx, cfg, f.wait, env)
	if err != nil {
		s.close(ctx, env)
		return nil, fmt.Errorf("open clickhouse: %w", err)
	}
	s.Store = st
	return s, nil
}

// close closes the connection and stops an embedded server, giving it a
// few seconds to stop cleanly even when ctx is already cancelled.
func (s *storage) close(ctx context.Context, env *environment) {
	if s.Store != nil {
		if err := s.Store.Close(); err != nil {
			env.log.Warn("close clickhouse connection", "err", err)
		}
	}
	if s.embedded != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		if err := s.embedded.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
			env.log.Warn("stop embedded clickhouse", "err", err)
		}
	}
}

func runClickHouse(ctx context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "clickhouse", "")
	dataDir := fs.String("data-dir", "./ndr-data/clickhouse", "ClickHouse data directory")
	tcpPort := fs.Int("tcp-port", 9000, "native protocol port on 127.0.0.1 (0 picks a free one)")
	httpPort := fs.Int("http-port", 8123, "HTTP port on 127.0.0.1 (0 picks a free one)")
	lib := fs.String("lib", "", "path of libchdb.so (default: installed into the cache dir on first use)")
	cacheDir := fs.String("cache-dir", "", "library cache (default $XDG_CACHE_HOME/ndr or ~/.cache/ndr)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments %q", fs.Args())
	}
	opts := chembed.ServeOptions{
		DataDir: *dataDir, TCPPort: *tcpPort, HTTPPort: *httpPort, LibPath: *lib, CacheDir: *cacheDir, Logger: env.log,
		Ready: func(ep chembed.Endpoint) {
			fmt.Fprintf(env.stdout, "ClickHouse is serving (Ctrl-C stops it)\n  native: %s\n  http:   http://%s\n  dsn:    %s\n",
				ep.TCPAddr(), ep.HTTPAddr(), ep.DSN(chembed.DefaultDatabase))
		},
	}
	if err := chembed.Serve(ctx, opts); err != nil {
		return &codedError{code: chembed.ExitCode(err), err: err}
	}
	return nil
}

// openRetrying opens the store, retrying with backoff for up to wait while
// the failure is one of reaching ClickHouse (refused, reset, timed out: a
// server that is starting or restarting), so that serve started beside its
// ClickHouse, or during a restart of it, comes up once ClickHouse does.
// Any other failure (credentials, a bad DSN, a failed migration) is
// returned at once.
func openRetrying(ctx context.Context, cfg store.Config, wait time.Duration, env *environment) (*store.Store, error) {
	deadline := time.Now().Add(wait)
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		st, err := store.Open(ctx, cfg, env.log)
		if err == nil || !unreachable(err) || time.Now().Add(backoff).After(deadline) {
			return st, err
		}
		env.log.Warn("clickhouse unreachable, retrying", "attempt", attempt, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// unreachable reports whether err is a network failure to reach the server
// rather than an answer from it.
func unreachable(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrDeadlineExceeded)
}
