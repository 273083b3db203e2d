// Package chembed runs an embedded ClickHouse for tests and single-user local
// use. It sits beside the store adapter (internal/store): the store talks to
// any ClickHouse through a DSN, and chembed provides one on loopback when
// there is no real server.
//
// The engine is libchdb (ClickHouse 26.7 as a shared library, shipped in the
// npm package @chdb/lib-linux-x64-gnu). chembed owns three things:
//
//   - installing that library on first use into a cache directory outside the
//     clone (EnsureLibrary), atomically and safely across processes;
//   - serving it in the current process (Serve): dlopen through purego (no
//     cgo), clickhouse-local's entry point with listeners on 127.0.0.1, and
//     a flock on the data directory so two servers never share it;
//   - running that server as a child process (Start), which is what services
//     and tests call: the parent never loads the library, so a crash or a
//     SIGTERM of the engine stays in the child.
//
// The child is the ndr binary's own "clickhouse" subcommand; test binaries
// re-execute themselves instead and call RunChildIfRequested from TestMain.
//
// The listener is clickhouse-local's: the default user has no password and
// there is no users.xml. It is for tests and local use only; production
// points the store at a real server.
package chembed

import "errors"

// Errors reported by chembed.
var (
	// ErrDataDirInUse: another server holds the data directory's lock.
	ErrDataDirInUse = errors.New("chembed: data dir in use by another server")
	// ErrNPMNotFound: the library is not installed and npm is not in PATH.
	ErrNPMNotFound = errors.New("chembed: npm not found in PATH (needed once to install libchdb; install Node.js and npm)")
	// ErrUnsupportedPlatform: libchdb is only installed for linux/amd64.
	ErrUnsupportedPlatform = errors.New("chembed: embedded clickhouse needs linux/amd64")
	// ErrExited: the ClickHouse process or call ended on its own.
	ErrExited = errors.New("chembed: clickhouse exited")
	// ErrNotReady: the server did not answer /ping before the deadline.
	ErrNotReady = errors.New("chembed: clickhouse not ready before deadline")
	// ErrNoDataDir: no data directory was given.
	ErrNoDataDir = errors.New("chembed: data dir not set")

	// errPortTaken marks a start that failed because another process took
	// an automatically picked port; Start retries with new ports.
	errPortTaken = errors.New("chembed: port in use")
)
