// Package store is the ClickHouse adapter, the last stage of the pipeline:
// ingest hands it connection records and scoring hands it detections, and
// it is the only package that imports clickhouse-go.
//
// It owns the schema (versioned migrations embedded from migrations/*.sql,
// whose comment blocks document every column), retention (a TTL set from
// Config after migrating), and the batched columnar writer for connection
// records (ConnWriter). Other internal adapters and tests reach the database
// through Exec, Query and QueryRow, which take server-side query parameters
// (WithParams) so no user value is ever spliced into SQL text.
package store

import "errors"

// Errors reported by store.
var (
	// ErrMigrationChanged: an applied migration's file no longer matches the
	// checksum recorded when it was applied. Add a new migration instead.
	ErrMigrationChanged = errors.New("store: applied migration changed")
	// ErrBadDatabaseName: the database name is not a plain identifier.
	ErrBadDatabaseName = errors.New("store: bad database name")
	// ErrWriterClosed: Write or Flush after Shutdown.
	ErrWriterClosed = errors.New("store: conn writer shut down")
	// ErrWriterNotStarted: Write or Flush before Start.
	ErrWriterNotStarted = errors.New("store: conn writer not started")
)
