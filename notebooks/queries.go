// Package notebooks is the analysts' hunting kit at the end of the
// pipeline, where people read what ndr stored: a library of ClickHouse
// queries (queries/*.sql, one hunt per file, each with a header saying what
// it finds and its typed parameters) and the Jupyter notebooks that walk
// through them with plots (*.ipynb, see README.md).
//
// The Go side only embeds the SQL files so that the ndr binary carries the
// library: internal/hunt parses and runs them (`ndr hunt`), and the
// notebooks read the same files from disk.
package notebooks

import (
	"embed"
	"io/fs"
)

//go:embed queries/*.sql
var queries embed.FS

// Queries returns the library's SQL files, named queries/NAME.sql.
func Queries() fs.FS { return queries }
