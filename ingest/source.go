package ingest

import (
	"bytes"
	"io"
)

// source is a byte buffer over an io.Reader that hands out lines and bytes
// without copying them. Unlike bufio.Scanner it survives over-long lines:
// they are skipped up to their newline with the buffer never growing past
// the line limit.
type source struct {
	r      io.Reader
	buf    []byte
	pos    int   // first unconsumed byte
	end    int   // end of valid data
	err    error // sticky error from r; io.EOF at the end
	max    int   // longest accepted line, without its newline
	line   int   // lines consumed so far
	offset int64 // bytes consumed so far
}

// The buffer starts small so that small inputs (a JSON sample, one gRPC
// test file, a fuzz case) stay cheap, and grows to minBufSize on the first
// refill: a file that needs one needs many, and large reads amortise the
// system calls. It grows further only for a line longer than that, up to
// the line limit.
const (
	startBufSize = 16 << 10
	minBufSize   = 256 << 10
)

func newSource(r io.Reader, max int) *source {
	return &source{r: r, buf: make([]byte, startBufSize), max: max}
}

// fill reads more data after compacting the buffer, growing it while it is
// full and smaller than the line limit requires. It reports whether new
// data arrived; when it did not, s.err says why.
func (s *source) fill() bool {
	if s.err != nil {
		return false
	}
	if s.pos > 0 {
		n := copy(s.buf, s.buf[s.pos:s.end])
		s.pos, s.end = 0, n
	}
	if s.offset > 0 && len(s.buf) < minBufSize {
		nb := make([]byte, minBufSize)
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	if s.end == len(s.buf) {
		want := len(s.buf) * 2
		if limit := s.max + 1; want > limit && len(s.buf) >= limit {
			// Full and large enough to prove a line too long: the caller
			// decides, nothing more to read until it consumes.
			return false
		} else if want > limit {
			want = max(limit, len(s.buf)+1)
		}
		nb := make([]byte, want)
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	// Some readers return 0, nil; give up after a few as bufio does.
	for range 100 {
		n, err := s.r.Read(s.buf[s.end:])
		if n < 0 || n > len(s.buf)-s.end {
			s.err = io.ErrNoProgress
			return false
		}
		s.end += n
		if err != nil {
			s.err = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	s.err = io.ErrNoProgress
	return false
}

// lineResult says what nextLine found.
type lineResult uint8

const (
	lineOK      lineResult = iota
	lineTooLong            // a line over the limit was skipped
	lineEnd                // clean end of input
	lineErr                // read error; s.err holds it
)

// nextLine returns the next line without its "\n" or "\r\n". The slice is
// valid until the next call. A final line without a newline is returned at
// a clean end of input; after a read error a partial line is dropped because
// it is most likely truncated.
func (s *source) nextLine() ([]byte, lineResult) {
	scanned := 0
	for {
		if i := bytes.IndexByte(s.buf[s.pos+scanned:s.end], '\n'); i >= 0 {
			n := scanned + i
			if n > s.max {
				s.consume(n + 1)
				s.line++
				return nil, lineTooLong
			}
			b := s.buf[s.pos : s.pos+n]
			s.consume(n + 1)
			s.line++
			if len(b) > 0 && b[len(b)-1] == '\r' {
				b = b[:len(b)-1]
			}
			return b, lineOK
		}
		scanned = s.end - s.pos
		if scanned > s.max {
			s.line++
			return nil, s.skipLine()
		}
		if !s.fill() {
			if s.err == nil {
				// Buffer full yet under the limit cannot happen: fill grows
				// to max+1. Treat defensively as too long.
				s.line++
				return nil, s.skipLine()
			}
			if s.err != io.EOF {
				return nil, lineErr
			}
			if s.end == s.pos {
				return nil, lineEnd
			}
			b := s.buf[s.pos:s.end]
			s.consume(len(b))
			s.line++
			if b[len(b)-1] == '\r' {
				b = b[:len(b)-1]
			}
			return b, lineOK
		}
	}
}

// skipLine discards input up to and including the next newline.
func (s *source) skipLine() lineResult {
	for {
		if i := bytes.IndexByte(s.buf[s.pos:s.end], '\n'); i >= 0 {
			s.consume(i + 1)
			return lineTooLong
		}
		s.consume(s.end - s.pos)
		if !s.fill() {
			if s.err == nil || s.err == io.EOF {
				return lineTooLong
			}
			return lineErr
		}
	}
}

func (s *source) consume(n int) {
	s.pos += n
	s.offset += int64(n)
}

// peekNonSpace returns the first byte that is not whitespace or a UTF-8
// byte order mark, consuming what it skipped, or ok=false at the end.
func (s *source) peekNonSpace() (byte, bool) {
	for {
		for s.pos < s.end {
			switch c := s.buf[s.pos]; c {
			case ' ', '\t', '\r':
				s.consume(1)
			case '\n':
				s.consume(1)
				s.line++
			case 0xEF:
				if s.end-s.pos < 3 && s.err == nil {
					goto more
				}
				if s.end-s.pos >= 3 && s.buf[s.pos+1] == 0xBB && s.buf[s.pos+2] == 0xBF {
					s.consume(3)
					continue
				}
				return c, true
			default:
				return c, true
			}
		}
	more:
		if !s.fill() && s.pos >= s.end {
			return 0, false
		}
	}
}

// peekByte returns the next byte without consuming it.
func (s *source) peekByte() (byte, bool) {
	if s.pos >= s.end && !s.fill() && s.pos >= s.end {
		return 0, false
	}
	return s.buf[s.pos], true
}

// readByte returns the next byte, counting lines.
func (s *source) readByte() (byte, bool) {
	c, ok := s.peekByte()
	if !ok {
		return 0, false
	}
	s.consume(1)
	if c == '\n' {
		s.line++
	}
	return c, true
}
