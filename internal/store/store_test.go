package store_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/store"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := store.Default().Validate(); err != nil {
		t.Fatalf("Default() invalid: %v", err)
	}
	f := func(name string, mutate func(*store.Config), want ...string) {
		t.Helper()
		c := store.Default()
		mutate(&c)
		err := c.Validate()
		if len(want) == 0 {
			if err != nil {
				t.Errorf("%s: unexpected error %v", name, err)
			}
			return
		}
		if err == nil {
			t.Errorf("%s: accepted, want errors %q", name, want)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", name, err, w)
			}
		}
	}
	f("tls dsn", func(c *store.Config) {
		c.DSN = "clickhouse://u:p@db.example:9440/ndr_prod?secure=true&skip_verify=true"
		c.TLS = store.TLSConfig{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem"}
	})
	f("no database in dsn uses the default", func(c *store.Config) { c.DSN = "clickhouse://127.0.0.1:9000" })
	f("retention 0 keeps forever", func(c *store.Config) { c.RetentionDays = 0 })
	f("empty dsn", func(c *store.Config) { c.DSN = "" }, "dsn: empty")
	f("http scheme", func(c *store.Config) { c.DSN = "http://127.0.0.1:8123/ndr" }, `scheme "http"`)
	f("bad database", func(c *store.Config) { c.DSN = "clickhouse://127.0.0.1:9000/ndr-prod" }, "bad database name", "ndr-prod")
	f("database injection", func(c *store.Config) { c.DSN = "clickhouse://127.0.0.1:9000/x%60;DROP" }, "bad database name")
	f("tls files without secure", func(c *store.Config) { c.TLS.CAFile = "/ca.pem" }, "secure=true")
	f("cert without key", func(c *store.Config) {
		c.DSN += "?secure=true"
		c.TLS.CertFile = "/c.pem"
	}, "cert file and key file")
	f("password not echoed", func(c *store.Config) { c.DSN = "clickhouse://u:s3cret@[::1/ndr" }, "dsn")
	// Every problem is reported at once.
	f("many", func(c *store.Config) {
		c.RetentionDays = -1
		c.DialTimeout = 0
		c.ReadTimeout = 0
		c.Writer = store.WriterConfig{}
	}, "retention days -1", "dial timeout", "read timeout", "flush rows 0", "flush interval", "max attempts", "retry backoff")

	c := store.Default()
	c.DSN = "clickhouse://u:s3cret@[::1/ndr"
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad DSN error %v: want an error without the password", err)
	}
}

func TestSplitStatements(t *testing.T) {
	t.Parallel()
	f := func(in string, want ...string) {
		t.Helper()
		got, err := store.SplitStatements(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%q:\n got %q\nwant %q", in, got, want)
		}
	}
	f("SELECT 1", "SELECT 1")
	f("SELECT 1; SELECT 2;", "SELECT 1", "SELECT 2")
	f("-- only; a comment\n  ;\n/* and; another */")
	f("SELECT ';' -- x;y\n, 2", "SELECT ';' -- x;y\n, 2")
	f(`SELECT 'it''s;', "a;b", `+"`c;d`"+`, 'back\';slash'; SELECT 3`,
		`SELECT 'it''s;', "a;b", `+"`c;d`"+`, 'back\';slash'`, "SELECT 3")
	f("/* a; */ SELECT 1 /* b; */; SELECT 2", "/* a; */ SELECT 1 /* b; */", "SELECT 2")
	for _, bad := range []string{"SELECT 'open", "SELECT 1 /* open"} {
		if _, err := store.SplitStatements(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestTableTTL(t *testing.T) {
	t.Parallel()
	f := func(in, want string) {
		t.Helper()
		if got := store.TableTTL(in); got != want {
			t.Errorf("TableTTL(%q) = %q, want %q", in, got, want)
		}
	}
	f("MergeTree PARTITION BY toDate(ts) ORDER BY ts SETTINGS index_granularity = 8192", "")
	f("MergeTree PARTITION BY toDate(ts) ORDER BY ts TTL ingest_time + toIntervalDay(90) SETTINGS x = 1", "ingest_time + toIntervalDay(90)")
	f("MergeTree ORDER BY ts TTL ingest_time + toIntervalDay(7)", "ingest_time + toIntervalDay(7)")
}

// connColumns is the documented schema of ndr.conn: name and type.
var connColumns = [][2]string{
	{"ts", "DateTime64(6, 'UTC')"}, {"uid", "String"},
	{"orig_h", "IPv6"}, {"orig_p", "UInt16"}, {"resp_h", "IPv6"}, {"resp_p", "UInt16"},
	{"proto", "LowCardinality(String)"}, {"service", "LowCardinality(String)"},
	{"duration", "Float64"}, {"orig_bytes", "UInt64"}, {"resp_bytes", "UInt64"},
	{"conn_state", "LowCardinality(String)"},
	{"local_orig", "Nullable(Bool)"}, {"local_resp", "Nullable(Bool)"},
	{"missed_bytes", "UInt64"}, {"history", "LowCardinality(String)"},
	{"orig_pkts", "UInt64"}, {"orig_ip_bytes", "UInt64"}, {"resp_pkts", "UInt64"}, {"resp_ip_bytes", "UInt64"},
	{"sensor", "LowCardinality(String)"}, {"ingest_time", "DateTime"},
	{"orig_ip", "String"}, {"resp_ip", "String"},
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t)
	ctx := t.Context()

	rows, err := s.Query(store.WithParams(ctx, store.Params{"db": s.Database()}),
		"SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'conn' ORDER BY position")
	if err != nil {
		t.Fatal(err)
	}
	var got [][2]string
	for rows.Next() {
		var c [2]string
		if err := rows.Scan(&c[0], &c[1]); err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	rows.Close()
	if len(got) != len(connColumns) {
		t.Fatalf("conn has columns %q, want %q", got, connColumns)
	}
	for i := range got {
		if got[i] != connColumns[i] {
			t.Errorf("column %d = %q, want %q", i, got[i], connColumns[i])
		}
	}
	var engine, sortKey string
	err = s.QueryRow(store.WithParams(ctx, store.Params{"db": s.Database()}),
		"SELECT engine_full, sorting_key FROM system.tables WHERE database = {db:String} AND name = 'conn'").Scan(&engine, &sortKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PARTITION BY toDate(ts)", "non_replicated_deduplication_window = 10000", "ttl_only_drop_parts = 1"} {
		if !strings.Contains(engine, want) {
			t.Errorf("conn engine %q lacks %q", engine, want)
		}
	}
	if sortKey != "orig_h, ts" {
		t.Errorf("sorting key %q, want orig_h, ts", sortKey)
	}

	// Idempotent: opening again applies nothing and records nothing.
	again, err := store.Open(ctx, s.Config(), chtest.Logger(t))
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer again.Close()
	if err := store.MigrateFS(ctx, again, os.DirFS("migrations")); err != nil {
		t.Fatalf("third migration run: %v", err)
	}
	var n, versions uint64
	if err := s.QueryRow(ctx, "SELECT count(), uniqExact(version) FROM schema_migrations").Scan(&n, &versions); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir("migrations")
	if n != uint64(len(files)) || versions != n {
		t.Errorf("schema_migrations has %d rows for %d versions, want one per file (%d)", n, versions, len(files))
	}

	// A new migration is applied and recorded; its placeholder names the
	// store's database.
	orig, err := os.ReadFile("migrations/0001_conn.sql")
	if err != nil {
		t.Fatal(err)
	}
	next := fstest.MapFS{}
	for _, f := range files {
		b, err := os.ReadFile("migrations/" + f.Name())
		if err != nil {
			t.Fatal(err)
		}
		next[f.Name()] = &fstest.MapFile{Data: b}
	}
	extra := fmt.Sprintf("%04d_extra.sql", len(files)+1)
	next[extra] = &fstest.MapFile{Data: []byte("-- test\nCREATE TABLE IF NOT EXISTS ${db}.extra (x UInt8) ENGINE = Memory;\n")}
	if err := store.MigrateFS(ctx, s, next); err != nil {
		t.Fatalf("new migration: %v", err)
	}
	if err := s.Exec(ctx, "INSERT INTO extra VALUES (1)"); err != nil {
		t.Errorf("table of the new migration: %v", err)
	}
	if err := s.QueryRow(store.WithParams(ctx, store.Params{"v": fmt.Sprint(len(files) + 1), "name": extra}),
		"SELECT count() FROM schema_migrations WHERE version = {v:UInt32} AND name = {name:String}").Scan(&n); err != nil || n != 1 {
		t.Errorf("%s recorded %d times (err %v), want 1", extra, n, err)
	}

	// An applied migration that changed is refused.
	changed := fstest.MapFS{"0001_conn.sql": {Data: append(orig, []byte("\n-- edited\n")...)}}
	err = store.MigrateFS(ctx, s, changed)
	if !errors.Is(err, store.ErrMigrationChanged) || !strings.Contains(err.Error(), "0001_conn.sql") {
		t.Errorf("changed migration: err = %v, want ErrMigrationChanged naming the file", err)
	}
	// So are bad file names and unknown placeholders.
	for name, fsys := range map[string]fstest.MapFS{
		"bad name":    {"1_x.sql": {Data: []byte("SELECT 1")}},
		"placeholder": {"0001_conn.sql": {Data: orig}, "0099_x.sql": {Data: []byte("CREATE TABLE ${database}.x (x UInt8) ENGINE = Memory")}},
	} {
		if err := store.MigrateFS(ctx, s, fsys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRetention(t *testing.T) {
	t.Parallel()
	s := chtest.OpenStore(t) // default: 90 days
	ctx := t.Context()
	ttl := func() string {
		t.Helper()
		var engine string
		if err := s.QueryRow(store.WithParams(ctx, store.Params{"db": s.Database()}),
			"SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = 'conn'").Scan(&engine); err != nil {
			t.Fatal(err)
		}
		return store.TableTTL(engine)
	}
	mutations := func() uint64 {
		t.Helper()
		var n uint64
		if err := s.QueryRow(store.WithParams(ctx, store.Params{"db": s.Database()}),
			"SELECT count() FROM system.mutations WHERE database = {db:String} AND table = 'conn'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	reopen := func(days int) {
		t.Helper()
		cfg := s.Config()
		cfg.RetentionDays = days
		s2, err := store.Open(ctx, cfg, chtest.Logger(t))
		if err != nil {
			t.Fatalf("open with retention %d: %v", days, err)
		}
		s2.Close()
	}
	if got := ttl(); got != "ingest_time + toIntervalDay(90)" {
		t.Errorf("default TTL %q, want 90 days after ingest_time", got)
	}
	before := mutations()
	reopen(90)
	if m := mutations(); m != before {
		t.Errorf("reopening with the same retention ran %d mutations", m-before)
	}
	reopen(7)
	if got := ttl(); got != "ingest_time + toIntervalDay(7)" {
		t.Errorf("TTL %q after retention 7", got)
	}
	reopen(0)
	if got := ttl(); got != "" {
		t.Errorf("TTL %q after retention 0, want none", got)
	}
	reopen(0) // removing an absent TTL is not an error
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	cfg := store.Default()
	cfg.DSN = "clickhouse://127.0.0.1:1/ndr"
	cfg.DialTimeout = 2 * time.Second
	_, err := store.Open(t.Context(), cfg, nil)
	if err == nil || !store.Retryable(err) {
		t.Errorf("Open of a closed port: err = %v, want a retryable error", err)
	}
}
