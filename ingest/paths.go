package ingest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Stdin is the argument that names standard input.
const Stdin = "-"

// ErrNoFiles reports an argument that names no file: a missing path, a glob
// that matches nothing, or a directory without regular files.
var ErrNoFiles = errors.New("ingest: no such file")

// ExpandPaths turns command-line arguments into the files to read, sorted
// and without duplicates so that a replay reads the same files in the same
// order every time. An argument is a file, a directory (its regular files,
// recursively, skipping hidden names), a filepath.Glob pattern, or "-" for
// standard input. Rotated Zeek logs (conn.10:00:00-11:00:00.log.gz) are
// ordinary files; their names sort by hour within a day's directory.
func ExpandPaths(args []string) ([]string, error) {
	var out []string
	for _, arg := range args {
		if arg == Stdin {
			out = append(out, arg)
			continue
		}
		names := []string{arg}
		if hasMeta(arg) {
			m, err := filepath.Glob(arg)
			if err != nil {
				return nil, fmt.Errorf("expand %q: %w", arg, err)
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("expand %q: %w: the pattern matches nothing", arg, ErrNoFiles)
			}
			names = m
		}
		for _, name := range names {
			files, err := expandOne(name)
			if err != nil {
				return nil, fmt.Errorf("expand %q: %w", arg, err)
			}
			out = append(out, files...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// hasMeta reports whether a path is a glob pattern. A file whose name
// really contains '[' can still be named: the pattern matches it.
func hasMeta(p string) bool {
	return strings.ContainsAny(p, `*?[`)
}

func expandOne(name string) ([]string, error) {
	fi, err := os.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoFiles, name)
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() && fi.Mode()&(fs.ModeNamedPipe|fs.ModeCharDevice) == 0 {
			return nil, fmt.Errorf("%s is not a regular file", name)
		}
		return []string{name}, nil
	}
	var files []string
	err = filepath.WalkDir(name, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != name && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			// Symlinks count if they lead to a regular file; WalkDir does
			// not follow them, so neither do we into directories.
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no regular files in directory %s", ErrNoFiles, name)
	}
	return files, nil
}

// OpenFile opens a file named by ExpandPaths, "-" being standard input,
// and returns a reader for it. The caller closes the Closer once done
// reading; for standard input it does nothing.
func OpenFile(name string, opts ReaderOptions) (*FileReader, io.Closer, error) {
	if name == Stdin {
		r, err := NewFileReader("stdin", os.Stdin, opts)
		if err != nil {
			return nil, nil, err
		}
		return r, io.NopCloser(nil), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("open conn log: %w", err)
	}
	r, err := NewFileReader(name, f, opts)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return r, f, nil
}
