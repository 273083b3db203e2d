package store

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Migrations are NNNN_name.sql files applied in version order. Every
// statement is idempotent (IF NOT EXISTS), so a migration interrupted before
// it was recorded is simply applied again. ${db} stands for the database.
//
//go:embed migrations/*.sql
var embeddedMigrations embed.FS

func migrationFiles() fs.FS {
	sub, err := fs.Sub(embeddedMigrations, "migrations")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}

// dbPlaceholder is replaced by the quoted database name.
const dbPlaceholder = "${db}"

type migration struct {
	version  uint32
	name     string // file name
	sql      string
	checksum string // sha256 of the file, hex
}

var migrationNameRE = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

// loadMigrations reads and orders the migration files of fsys.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []migration
	seen := map[uint32]string{}
	for _, name := range names {
		m := migrationNameRE.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", name)
		}
		v, _ := strconv.ParseUint(m[1], 10, 32)
		if prev, dup := seen[uint32(v)]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", prev, name, v)
		}
		seen[uint32(v)] = name
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		sum := sha256.Sum256(b)
		ms = append(ms, migration{version: uint32(v), name: path.Base(name), sql: string(b), checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// migrate applies the migrations of fsys that db has not recorded yet and
// checks the recorded ones still match their files.
func migrate(ctx context.Context, conn driver.Conn, db string, fsys fs.FS, logger *slog.Logger) error {
	if !databaseNameRE.MatchString(db) {
		return fmt.Errorf("%w %q", ErrBadDatabaseName, db)
	}
	ms, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	table := quoteIdent(db) + ".schema_migrations"
	// The ledger is plain MergeTree: two processes migrating at once may
	// both record a version; reads below tolerate duplicates.
	err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
    version    UInt32,                  -- the NNNN of the file
    name       String,                  -- the file name
    checksum   String,                  -- sha256 of the file when applied
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY version`)
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	applied := map[uint32]string{} // version -> checksum
	rows, err := conn.Query(ctx, "SELECT version, checksum FROM "+table+" ORDER BY applied_at")
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			rows.Close()
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		if _, ok := applied[v]; !ok {
			applied[v] = sum
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}

	known := map[uint32]bool{}
	for _, m := range ms {
		known[m.version] = true
		if sum, ok := applied[m.version]; ok {
			if sum != m.checksum {
				return fmt.Errorf("%w: %s (recorded sha256 %.12s, file %.12s)", ErrMigrationChanged, m.name, sum, m.checksum)
			}
			continue
		}
		stmts, err := migrationStatements(m.sql, db)
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		for i, stmt := range stmts {
			if err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("migration %s statement %d: %w", m.name, i+1, err)
			}
		}
		err = conn.Exec(WithParams(ctx, Params{"v": strconv.FormatUint(uint64(m.version), 10), "n": m.name, "c": m.checksum}),
			"INSERT INTO "+table+" (version, name, checksum) VALUES ({v:UInt32}, {n:String}, {c:String})")
		if err != nil {
			return fmt.Errorf("record migration %s: %w", m.name, err)
		}
		logger.Info("applied migration", "database", db, "migration", m.name)
	}
	for v := range applied {
		if !known[v] {
			logger.Warn("database has a migration this binary does not know; it is newer than this binary",
				"database", db, "version", v)
		}
	}
	return nil
}

// migrationStatements substitutes the database and splits the file into
// statements.
func migrationStatements(sql, db string) ([]string, error) {
	sql = strings.ReplaceAll(sql, dbPlaceholder, quoteIdent(db))
	if i := strings.Index(sql, "${"); i >= 0 {
		return nil, fmt.Errorf("unknown placeholder near %q", sql[i:min(len(sql), i+20)])
	}
	return splitStatements(sql)
}

// splitStatements splits SQL text at semicolons outside quotes and
// comments and drops pieces that hold only comments and space.
func splitStatements(sql string) ([]string, error) {
	var (
		out   []string
		start int
		code  bool // the current piece has something besides comments
	)
	flush := func(end int) {
		if code {
			out = append(out, strings.TrimSpace(sql[start:end]))
		}
		start, code = end+1, false
	}
	for i := 0; i < len(sql); i++ {
		switch c := sql[i]; {
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				i = len(sql)
			} else {
				i += j
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			j := strings.Index(sql[i+2:], "*/")
			if j < 0 {
				return nil, fmt.Errorf("unterminated comment at byte %d", i)
			}
			i += j + 3
		case c == '\'' || c == '"' || c == '`':
			j, err := skipQuoted(sql, i)
			if err != nil {
				return nil, err
			}
			i, code = j, true
		case c == ';':
			flush(i)
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		default:
			code = true
		}
	}
	flush(len(sql))
	return out, nil
}

// skipQuoted returns the index of the quote closing the one at i; a
// backslash escapes and a doubled quote stands for itself.
func skipQuoted(sql string, i int) (int, error) {
	q := sql[i]
	for j := i + 1; j < len(sql); j++ {
		switch sql[j] {
		case '\\':
			j++
		case q:
			if j+1 < len(sql) && sql[j+1] == q {
				j++
				continue
			}
			return j, nil
		}
	}
	return 0, fmt.Errorf("unterminated %c quote at byte %d", q, i)
}

// retained lists the tables whose rows expire after RetentionDays, with the
// column that says when a row was stored. Detections are not among them:
// they are the analysts' record and are few.
func retained() []struct{ table, column string } {
	return []struct{ table, column string }{
		{"conn", "ingest_time"},
		{"signals", "inserted_at"},
		{"host_features", "inserted_at"},
		{"pair_features", "inserted_at"},
		{"rejected", "inserted_at"},
	}
}

// applyRetention sets each retained table's TTL to RetentionDays after the
// row was stored, or removes it for 0. It alters only on a change: MODIFY
// TTL starts a mutation that recomputes TTL information of every part.
func applyRetention(ctx context.Context, conn driver.Conn, db string, days int, logger *slog.Logger) error {
	for _, t := range retained() {
		if err := applyTableRetention(ctx, conn, db, t.table, t.column, days, logger); err != nil {
			return err
		}
	}
	return nil
}

func applyTableRetention(ctx context.Context, conn driver.Conn, db, name, column string, days int, logger *slog.Logger) error {
	var engine string
	err := conn.QueryRow(WithParams(ctx, Params{"db": db, "table": name}),
		"SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {table:String}").Scan(&engine)
	if err != nil {
		return fmt.Errorf("read %s ttl: %w", name, err)
	}
	cur, want := tableTTL(engine), ""
	if days > 0 {
		want = column + " + toIntervalDay(" + strconv.Itoa(days) + ")"
	}
	if cur == want {
		return nil
	}
	table := quoteIdent(db) + "." + name
	var stmt string
	if days > 0 {
		// days is a validated int and names are constants; DDL takes no
		// query parameters here.
		stmt = "ALTER TABLE " + table + " MODIFY TTL " + column + " + INTERVAL " + strconv.Itoa(days) + " DAY"
	} else {
		stmt = "ALTER TABLE " + table + " REMOVE TTL"
	}
	if err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("set %s retention: %w", name, err)
	}
	logger.Info("set retention", "table", name, "database", db, "days", days, "previous_ttl", cur)
	return nil
}

// tableTTL extracts the table TTL expression from system.tables.engine_full
// ("MergeTree PARTITION BY ... TTL expr SETTINGS ..."), or "".
func tableTTL(engineFull string) string {
	i := strings.Index(engineFull, " TTL ")
	if i < 0 {
		return ""
	}
	rest := engineFull[i+len(" TTL "):]
	if j := strings.Index(rest, " SETTINGS "); j >= 0 {
		rest = rest[:j]
	}
	return strings.TrimSpace(rest)
}
