// Package hunt is the analysts' read side of the store, at the very end of
// the pipeline: it runs the hunting library (notebooks/queries/*.sql) and
// lists stored detections, for `ndr hunt`, `ndr detections` and the gRPC
// DetectionService (internal/api).
//
// A library query is one SQL file whose leading comment block says what it
// finds and declares its parameters:
//
//	-- name: beacon-candidates
//	-- finds: Internal hosts that call one external host and port at
//	--   regular intervals ...
//	-- params:
//	--   from Nullable(DateTime64(6, 'UTC')) default NULL, start of the range
//	--   detection_id String required, the detection to drill into
//
// The header ends at the first line that is not a comment or is an empty
// comment ("--"). Every parameter is a ClickHouse typed placeholder
// ({from:Nullable(DateTime64(6, 'UTC'))}) in the query, so values travel as
// server-side query parameters and are never spliced into SQL text. Load
// checks that the placeholders and the header agree, name for name and
// type for type. Queries name tables without a database (conn,
// detections, host_features ...); the connection's database resolves them.
//
// hunt reads through a Querier (a *store.Store) and imports scoring and
// features only for the Detection type it reads back.
package hunt

import "errors"

// Errors reported by hunt. Those about what a user typed (an unknown
// query, parameter or value) wrap ErrUsage too, so that a command can tell
// them from failures of the database.
var (
	// ErrUsage marks mistakes in how a query or listing was asked for.
	ErrUsage = errors.New("hunt: usage")
	// ErrBadHeader: a library file's header is malformed or disagrees
	// with its placeholders. It is a defect of the library, found by Load.
	ErrBadHeader = errors.New("hunt: bad query header")
	// ErrUnknownQuery: no library query has that name.
	ErrUnknownQuery = errors.New("hunt: unknown query")
	// ErrUnknownParam: the query declares no parameter of that name.
	ErrUnknownParam = errors.New("hunt: unknown parameter")
	// ErrMissingParam: a required parameter was not given.
	ErrMissingParam = errors.New("hunt: missing parameter")
	// ErrBadValue: a value does not parse as its parameter's type.
	ErrBadValue = errors.New("hunt: bad parameter value")
)
