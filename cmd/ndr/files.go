package main

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ndr-go/ndr/ingest"
)

// fileSource reads a list of files in order as one stream of batches; it
// serves both `ndr send` (as a client.Source) and `ndr replay`. Bad lines
// are reported through onReject and counted; they never stop the stream. A
// file that cannot be read at all is an error.
type fileSource struct {
	paths    []string
	onSkip   func(name string, err error)
	skipped  int
	opts     ingest.ReaderOptions
	stdin    io.Reader
	next     int
	cur      *ingest.FileReader
	curName  string
	closer   io.Closer
	finished ingest.ReadStats // totals of closed files

	mu sync.Mutex // guards stats reads from the progress goroutine
}

func newFileSource(args []string, opts ingest.ReaderOptions, env *environment) (*fileSource, error) {
	paths, err := ingest.ExpandPaths(args)
	if err != nil {
		return nil, err
	}
	return &fileSource{paths: paths, opts: opts, stdin: env.stdin, onSkip: func(name string, err error) {
		env.log.Warn("skipping a file that is not a conn log", "file", name, "reason", err)
	}}, nil
}

// Next fills b.Conns with up to max records and returns the current file's
// name as the label.
func (s *fileSource) Next(b *ingest.Batch, max int) (string, error) {
	for len(b.Conns) < max {
		if s.cur == nil {
			if s.next == len(s.paths) {
				return s.curName, io.EOF
			}
			name := s.paths[s.next]
			s.next++
			if err := s.open(name); err != nil {
				if errors.Is(err, ingest.ErrNotConnLog) {
					s.skip(name, err)
					continue
				}
				return name, err
			}
		}
		if cap(b.Conns) < max {
			grown := make([]ingest.Conn, len(b.Conns), max)
			copy(grown, b.Conns)
			b.Conns = grown
		}
		var err error
		b.Conns, err = s.cur.Read(b.Conns[:len(b.Conns):max])
		if errors.Is(err, io.EOF) {
			s.closeCurrent()
			continue
		}
		if errors.Is(err, ingest.ErrNotConnLog) {
			// A Zeek directory holds dns.log, http.log...: not ours, not fatal.
			s.skip(s.curName, err)
			s.closeCurrent()
			continue
		}
		if err != nil {
			return s.curName, err
		}
	}
	return s.curName, nil
}

func (s *fileSource) open(name string) error {
	var (
		r      *ingest.FileReader
		closer io.Closer
		err    error
	)
	if name == ingest.Stdin {
		r, err = ingest.NewFileReader("stdin", s.stdin, s.opts)
		closer = io.NopCloser(nil)
	} else {
		r, closer, err = ingest.OpenFile(name, s.opts)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	s.mu.Lock()
	s.cur, s.closer, s.curName = r, closer, name
	s.mu.Unlock()
	return nil
}

func (s *fileSource) closeCurrent() {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.cur.Stats()
	s.finished.Lines += st.Lines
	s.finished.Events += st.Events
	s.finished.Rejected += st.Rejected
	s.finished.Bytes += st.Bytes
	_ = s.closer.Close()
	s.cur, s.closer = nil, nil
}

func (s *fileSource) skip(name string, err error) {
	s.skipped++
	if s.onSkip != nil {
		s.onSkip(name, err)
	}
}

// Close releases the open file, if any.
func (s *fileSource) Close() {
	if s.cur != nil {
		s.closeCurrent()
	}
}

// Stats returns totals over the files finished so far; after Next has
// returned io.EOF that is every file.
func (s *fileSource) Stats() ingest.ReadStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finished
}

// Files returns the expanded file list.
func (s *fileSource) Files() []string { return s.paths }
