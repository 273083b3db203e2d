package store

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// DefaultDatabase is used when the DSN names none.
const DefaultDatabase = "ndr"

// Config configures Open and the writers it makes. Start from Default().
type Config struct {
	// DSN names the server and database:
	//   clickhouse://[user[:password]@]host:9000[,host2:9000]/ndr?secure=true&skip_verify=false
	// The path is the database (default "ndr"); secure=true turns on TLS.
	// Other query parameters are passed to the server as settings.
	DSN string
	// Username and Password override the DSN's user info when set; cmd
	// fills them from the environment or a file so secrets stay out of
	// command lines and config files.
	Username string
	Password string
	// TLS files, used only with secure=true in the DSN.
	TLS TLSConfig

	// RetentionDays deletes rows that many days after they were stored
	// (ingest_time, not the connection's ts). 0 keeps everything.
	RetentionDays int

	DialTimeout time.Duration // connecting, per attempt
	ReadTimeout time.Duration // waiting for the server's answer

	// Writer is the default configuration of ConnWriters.
	Writer WriterConfig
}

// TLSConfig names PEM files for a TLS connection.
type TLSConfig struct {
	CAFile     string // CA bundle that signs the server certificate; empty: system roots
	CertFile   string // client certificate, with KeyFile
	KeyFile    string
	SkipVerify bool // do not verify the server certificate (tests only)
}

// WriterConfig configures a ConnWriter.
type WriterConfig struct {
	// FlushRows flushes the buffer once it holds at least this many rows.
	// Batches are never split, so an INSERT may hold a little more.
	FlushRows int
	// FlushInterval flushes whatever is buffered at least this often.
	// ClickHouse advises about one INSERT per second per table.
	FlushInterval time.Duration
	// MaxAttempts bounds the tries of one INSERT on transient errors.
	MaxAttempts int
	// RetryBackoff is the wait before the first retry; it doubles up to
	// MaxRetryBackoff.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
}

// Default returns the configuration for a local server.
func Default() Config {
	return Config{
		DSN:           "clickhouse://127.0.0.1:9000/" + DefaultDatabase,
		RetentionDays: 90,
		DialTimeout:   10 * time.Second,
		ReadTimeout:   5 * time.Minute,
		Writer:        DefaultWriterConfig(),
	}
}

// DefaultWriterConfig: INSERTs of up to 250k rows, at least every 2 s.
// Under `ndr serve` at full rate on 2 cores, this cut ClickHouse's CPU per
// stored event by about 30 % against 100k rows and 1 s (fewer parts to
// write and merge), and raised the acknowledged rate by about 15 %
// (docs/performance.md). Rows become visible up to 2 s after their ack.
func DefaultWriterConfig() WriterConfig {
	return WriterConfig{
		FlushRows:       250_000,
		FlushInterval:   2 * time.Second,
		MaxAttempts:     8,
		RetryBackoff:    100 * time.Millisecond,
		MaxRetryBackoff: 5 * time.Second,
	}
}

// databaseNameRE is what may be spliced into DDL as the database name.
var databaseNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := c.parseDSN(); err != nil {
		errs = append(errs, err)
	}
	if c.RetentionDays < 0 || c.RetentionDays > 100*365 {
		errs = append(errs, fmt.Errorf("retention days %d: want 0 (keep forever) to %d", c.RetentionDays, 100*365))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("dial timeout %v: want > 0", c.DialTimeout))
	}
	if c.ReadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("read timeout %v: want > 0", c.ReadTimeout))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls: cert file and key file go together"))
	}
	if err := c.Writer.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Validate reports every problem of the writer configuration at once.
func (w WriterConfig) Validate() error {
	var errs []error
	if w.FlushRows < 1 || w.FlushRows > 10_000_000 {
		errs = append(errs, fmt.Errorf("writer flush rows %d: want 1 to 10000000", w.FlushRows))
	}
	if w.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("writer flush interval %v: want > 0", w.FlushInterval))
	}
	if w.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("writer max attempts %d: want >= 1", w.MaxAttempts))
	}
	if w.RetryBackoff <= 0 || w.MaxRetryBackoff < w.RetryBackoff {
		errs = append(errs, fmt.Errorf("writer retry backoff %v..%v: want 0 < first <= max", w.RetryBackoff, w.MaxRetryBackoff))
	}
	return errors.Join(errs...)
}

// parseDSN checks the DSN and returns clickhouse-go options without the
// TLS files loaded, and the database name.
func (c Config) parseDSN() (*clickhouse.Options, string, error) {
	if c.DSN == "" {
		return nil, "", errors.New("dsn: empty")
	}
	u, err := url.Parse(c.DSN)
	if err != nil {
		// url's error repeats the DSN, password included.
		return nil, "", errors.New("dsn: not a URL (URL-encode special characters in user and password)")
	}
	if u.Scheme != "clickhouse" && u.Scheme != "tcp" {
		return nil, "", fmt.Errorf("dsn: scheme %q: want clickhouse:// (native protocol)", u.Scheme)
	}
	opts, err := clickhouse.ParseDSN(c.DSN)
	if err != nil {
		return nil, "", fmt.Errorf("dsn: %w", err)
	}
	db := opts.Auth.Database
	if db == "" {
		db = DefaultDatabase
	}
	var errs []error
	if !databaseNameRE.MatchString(db) {
		errs = append(errs, fmt.Errorf("%w %q: want %s", ErrBadDatabaseName, db, databaseNameRE))
	}
	hasFiles := c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.KeyFile != ""
	if opts.TLS == nil && (hasFiles || c.TLS.SkipVerify) {
		errs = append(errs, errors.New("tls: files or skip_verify set but the DSN lacks secure=true"))
	}
	return opts, db, errors.Join(errs...)
}

// clickhouseOptions builds the driver options: DSN, credentials, TLS files,
// timeouts, lz4.
func (c Config) clickhouseOptions() (*clickhouse.Options, string, error) {
	opts, db, err := c.parseDSN()
	if err != nil {
		return nil, "", err
	}
	opts.Auth.Database = db
	if c.Username != "" {
		opts.Auth.Username = c.Username
	}
	if c.Password != "" {
		opts.Auth.Password = c.Password
	}
	if opts.TLS != nil {
		if c.TLS.SkipVerify {
			opts.TLS.InsecureSkipVerify = true
		}
		if c.TLS.CAFile != "" {
			pem, err := os.ReadFile(c.TLS.CAFile)
			if err != nil {
				return nil, "", fmt.Errorf("tls ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, "", fmt.Errorf("tls ca: no certificate in %s", c.TLS.CAFile)
			}
			opts.TLS.RootCAs = pool
		}
		if c.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
			if err != nil {
				return nil, "", fmt.Errorf("tls client cert: %w", err)
			}
			opts.TLS.Certificates = []tls.Certificate{cert}
		}
	}
	opts.Compression = &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
	opts.DialTimeout = c.DialTimeout
	opts.ReadTimeout = c.ReadTimeout
	opts.ClientInfo.Products = append(opts.ClientInfo.Products, struct{ Name, Version string }{Name: "ndr"})
	return opts, db, nil
}
