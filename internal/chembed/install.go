package chembed

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

const (
	// LibVersion is the pinned libchdb release; the library reports the
	// ClickHouse engine version 26.7.2.1.
	LibVersion = "26.7.3"
	// npmPackage is pinned exactly: the npm "latest" tag (26.5.3) rejects
	// --listen_host, so a floating version would break the listener.
	npmPackage = "@chdb/lib-linux-x64-gnu@26.7.3-stable.1"
	// libRel is where npm puts the library under its --prefix.
	libRel = "node_modules/@chdb/lib-linux-x64-gnu/libchdb.so"
	// installDirName is the cache subdirectory that holds one version.
	installDirName = "chdb-" + LibVersion
)

// InstallOptions says where the library lives and how to install it.
type InstallOptions struct {
	// CacheDir holds chdb-<version>/; empty means DefaultCacheDir().
	// Keep it outside the clone so a fresh clone does not download again.
	CacheDir string
	// NPM is the npm executable; empty means "npm" looked up in PATH.
	NPM string
	// Logger receives what the installer does; nil discards.
	Logger *slog.Logger
}

// DefaultCacheDir is $XDG_CACHE_HOME/ndr, or ~/.cache/ndr.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "ndr"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache dir: %w", err)
	}
	return filepath.Join(home, ".cache", "ndr"), nil
}

// LibraryPath is where EnsureLibrary puts libchdb.so under cacheDir.
func LibraryPath(cacheDir string) string {
	return filepath.Join(cacheDir, installDirName, libRel)
}

// EnsureLibrary returns the path of libchdb.so, installing it with npm first
// if it is not in the cache yet.
//
// The install runs npm into a temporary directory beside the final one and
// renames it into place, so an interrupted or failed install never leaves a
// half library where the check looks. An exclusive file lock in the cache dir
// serialises concurrent first uses across processes; the ones that waited
// find the library installed and return.
func EnsureLibrary(ctx context.Context, opts InstallOptions) (string, error) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return "", ErrUnsupportedPlatform
	}
	logger := orDiscard(opts.Logger)
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return "", err
		}
		cacheDir = d
	}
	lib := LibraryPath(cacheDir)
	if fileExists(lib) {
		return lib, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("install libchdb: %w", err)
	}
	lock, err := waitLock(ctx, filepath.Join(cacheDir, installDirName+".lock"), func() {
		logger.Info("waiting for another process installing libchdb", "cache_dir", cacheDir)
	})
	if err != nil {
		return "", fmt.Errorf("install libchdb: %w", err)
	}
	defer lock.Close()
	if fileExists(lib) { // installed while we waited
		return lib, nil
	}
	if err := install(ctx, cacheDir, opts.NPM, logger); err != nil {
		return "", fmt.Errorf("install libchdb: %w", err)
	}
	return lib, nil
}

// install runs with the cache lock held.
func install(ctx context.Context, cacheDir, npm string, logger *slog.Logger) error {
	if npm == "" {
		p, err := exec.LookPath("npm")
		if err != nil {
			return ErrNPMNotFound
		}
		npm = p
	}
	// Temporary dirs left by interrupted installs: nobody else uses them
	// while we hold the lock.
	stale, _ := filepath.Glob(filepath.Join(cacheDir, installDirName+".tmp-*"))
	for _, d := range stale {
		logger.Info("removing interrupted libchdb install", "dir", d)
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp(cacheDir, installDirName+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // no-op after the rename

	logger.Info("installing libchdb with npm (about 180 MB, once per cache dir)",
		"package", npmPackage, "cache_dir", cacheDir)
	start := time.Now()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", tmp,
		"--no-save", "--no-package-lock", npmPackage)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm install %s: %w\n%s", npmPackage, err, tail(out.Bytes(), 2048))
	}
	if !fileExists(filepath.Join(tmp, libRel)) {
		return fmt.Errorf("npm install %s: %s missing afterwards\n%s", npmPackage, libRel, tail(out.Bytes(), 2048))
	}
	final := filepath.Join(cacheDir, installDirName)
	if _, err := os.Stat(final); err == nil {
		// A directory without the library (made by hand or by an old
		// non-atomic install): replace it.
		logger.Info("replacing incomplete libchdb dir", "dir", final)
		if err := os.RemoveAll(final); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	logger.Info("libchdb installed", "path", LibraryPath(cacheDir), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// tail returns at most the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
