package store

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Store is a connection pool to one ndr database with its schema migrated.
// It is safe for concurrent use.
type Store struct {
	conn   driver.Conn
	db     string
	cfg    Config
	logger *slog.Logger
}

// Open connects (native protocol, lz4), pings, creates the database if it
// does not exist, applies pending migrations and sets retention.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("store config: %w", err)
	}
	opts, db, err := cfg.clickhouseOptions()
	if err != nil {
		return nil, fmt.Errorf("store config: %w", err)
	}
	if err := ensureDatabase(ctx, *opts, db, logger); err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open clickhouse: %w", err)
	}
	s := &Store{conn: conn, db: db, cfg: cfg, logger: logger}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ping clickhouse: %w", err)
	}
	if v, err := conn.ServerVersion(); err == nil {
		logger.Info("connected to clickhouse", "addr", opts.Addr, "database", db, "server", v.String())
	}
	if err := migrate(ctx, conn, db, migrationFiles(), logger); err != nil {
		conn.Close()
		return nil, err
	}
	if err := applyRetention(ctx, conn, db, cfg.RetentionDays, logger); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// ensureDatabase creates db through a connection without a default
// database (a connection naming a missing one is refused). It checks first
// so a user without CREATE DATABASE rights can use an existing database.
func ensureDatabase(ctx context.Context, opts clickhouse.Options, db string, logger *slog.Logger) error {
	opts.Auth.Database = ""
	opts.MaxOpenConns = 1
	conn, err := clickhouse.Open(&opts)
	if err != nil {
		return fmt.Errorf("open clickhouse: %w", err)
	}
	defer conn.Close()
	var n uint64
	err = conn.QueryRow(WithParams(ctx, Params{"db": db}),
		"SELECT count() FROM system.databases WHERE name = {db:String}").Scan(&n)
	if err != nil {
		return fmt.Errorf("look up database %s: %w", db, err)
	}
	if n > 0 {
		return nil
	}
	logger.Info("creating database", "database", db)
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(db)); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() error { return s.conn.Close() }

// Database is the name of the store's database.
func (s *Store) Database() string { return s.db }

// Config is the configuration the store was opened with.
func (s *Store) Config() Config { return s.cfg }

// Params are server-side query parameters: a query names them as
// {name:Type} and the server parses the values as that type, so values are
// never spliced into SQL text.
type Params map[string]string

// WithParams attaches query parameters to ctx for Exec, Query and QueryRow.
func WithParams(ctx context.Context, p Params) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters(p)))
}

// Rows is a query result; see Query.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Columns() []string
	Err() error
	Close() error
}

// Row is a one-row result; see QueryRow.
type Row interface {
	Scan(dest ...any) error
	Err() error
}

// Exec runs a statement without a result. Unqualified table names resolve
// in the store's database.
func (s *Store) Exec(ctx context.Context, query string, args ...any) error {
	return s.conn.Exec(ctx, query, args...)
}

// Query runs a query; the caller closes the Rows.
func (s *Store) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	return s.conn.Query(ctx, query, args...)
}

// QueryRow runs a query expected to return one row.
func (s *Store) QueryRow(ctx context.Context, query string, args ...any) Row {
	return s.conn.QueryRow(ctx, query, args...)
}

// quoteIdent backquotes a name already checked by databaseNameRE (which
// admits no backquote), so keywords are safe as names too.
func quoteIdent(name string) string { return "`" + name + "`" }

// DropDatabase drops cfg's database and everything in it. It is for tests
// and tooling that made a throwaway database; the service never calls it.
func DropDatabase(ctx context.Context, cfg Config) error {
	opts, db, err := cfg.clickhouseOptions()
	if err != nil {
		return fmt.Errorf("store config: %w", err)
	}
	opts.Auth.Database = ""
	opts.MaxOpenConns = 1
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return fmt.Errorf("open clickhouse: %w", err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(db)+" SYNC"); err != nil {
		return fmt.Errorf("drop database %s: %w", db, err)
	}
	return nil
}
