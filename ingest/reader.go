package ingest

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Errors of the file readers, wrapped with the position they refer to.
var (
	// ErrLineTooLong rejects a line (or JSON array element) over
	// ReaderOptions.MaxLineBytes.
	ErrLineTooLong = errors.New("ingest: line too long")
	// ErrNoHeader rejects a Zeek TSV data line that no #fields header
	// describes.
	ErrNoHeader = errors.New("ingest: data line before #fields header")
	// ErrNotConnLog stops reading a Zeek log whose #path is not conn: its
	// records are not connections.
	ErrNotConnLog = errors.New("ingest: not a conn log")
	// ErrSyntax rejects a line that is not well-formed JSON or TSV.
	ErrSyntax = errors.New("ingest: syntax error")
)

// DefaultMaxLineBytes is the default for ReaderOptions.MaxLineBytes.
const DefaultMaxLineBytes = 64 << 10

// defaultReadBatch is how many records Read appends when dst has no spare
// capacity.
const defaultReadBatch = 256

// ReaderOptions configure a FileReader.
type ReaderOptions struct {
	// Sensor is copied into every Conn's Sensor field.
	Sensor string
	// Validator checks every record; nil means DefaultLimits with the
	// wall clock. Records it refuses are rejected like malformed lines.
	Validator *Validator
	// MaxLineBytes bounds one line, or one element of a JSON array,
	// without its newline; 0 means DefaultMaxLineBytes. Longer lines are
	// rejected without being buffered.
	MaxLineBytes int
	// OnReject, if set, is called synchronously from Read for every
	// rejected line. The LineError is the callee's to keep.
	OnReject func(*LineError)
}

// LineError is a rejected line: its position and why. Err is usually a
// *FieldError, so FieldOf names the offending field.
type LineError struct {
	File string
	Line int // 1-based; for a JSON array element, the line where it starts
	Elem int // 1-based position in a top-level JSON array, 0 otherwise
	Err  error
	// Raw is a copy of the rejected line (or array element) as read, after
	// decompression, without its newline; nil for a line over the length
	// limit, which is refused unread.
	Raw []byte
}

func (e *LineError) Error() string {
	s := e.File + ":" + strconv.Itoa(e.Line) + ": "
	if e.Elem > 0 {
		s += "element " + strconv.Itoa(e.Elem) + ": "
	}
	if e.Err == nil {
		return s + "rejected"
	}
	return s + e.Err.Error()
}

func (e *LineError) Unwrap() error { return e.Err }

// ReadStats count what a FileReader has read so far.
type ReadStats struct {
	Lines    int   // lines read, including headers, blank and rejected lines
	Events   int   // records returned
	Rejected int   // lines or array elements rejected
	Bytes    int64 // decompressed bytes consumed
}

type format uint8

const (
	formatEmpty format = iota
	formatTSV
	formatNDJSON
	formatArray
)

func (f format) String() string {
	return [...]string{"empty", "zeek-tsv", "ndjson", "json-array"}[f]
}

// FileReader turns one file's content into Conns: Zeek conn.log TSV, Zeek
// JSON lines, or the reference repository's simple events as JSON lines or
// a JSON array. The format is detected from the content, and gzip is
// decompressed transparently.
//
// A FileReader is not safe for concurrent use. The Conns it returns belong
// to the caller and share no memory with the reader: their strings are
// copies or interned values that are never overwritten.
type FileReader struct {
	name     string
	sensor   string
	v        *Validator
	onReject func(*LineError)
	src      *source
	format   format
	tsv      tsvHeader
	scratch  []byte // decoded JSON strings with escapes
	keyHints []keyHint
	intern   interner
	arr      arrayState
	stats    ReadStats
	err      error // sticky: io.EOF or the file-level error
}

// NewFileReader detects r's format and returns a reader for it; name is
// used in errors only. It reads the first bytes of r to decide, so an
// empty input or a broken gzip header is reported here.
func NewFileReader(name string, r io.Reader, opts ReaderOptions) (*FileReader, error) {
	fr := &FileReader{name: name, sensor: opts.Sensor, v: opts.Validator, onReject: opts.OnReject}
	if fr.v == nil {
		fr.v = NewValidator(DefaultLimits(), nil)
	}
	maxLine := opts.MaxLineBytes
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open gzip %s: %w", name, err)
		}
		fr.src = newSource(zr, maxLine)
	} else {
		// bufio hands large reads straight to r, so it costs nothing
		// after the peek.
		fr.src = newSource(br, maxLine)
	}
	fr.tsv.reset()
	c, ok := fr.src.peekNonSpace()
	switch {
	case !ok:
		if fr.src.err != nil && fr.src.err != io.EOF {
			return nil, fr.fileErr(fr.src.err)
		}
		fr.format = formatEmpty
	case c == '#':
		fr.format = formatTSV
	case c == '[':
		fr.format = formatArray
	default:
		fr.format = formatNDJSON
	}
	return fr, nil
}

// Format names the detected format: "zeek-tsv", "ndjson", "json-array" or
// "empty".
func (r *FileReader) Format() string { return r.format.String() }

// Stats returns the counts so far.
func (r *FileReader) Stats() ReadStats {
	s := r.stats
	s.Lines = r.src.line
	s.Bytes = r.src.offset
	return s
}

// Read appends up to cap(dst)-len(dst) records to dst, or up to 256 when
// dst has no spare capacity, and returns the extended slice. As with
// io.Reader, callers process the returned records before looking at the
// error: io.EOF at the end, or a file-level error (truncated gzip, I/O)
// that says how far the file was read. Rejected lines are not errors here;
// they go to OnReject and Stats.
func (r *FileReader) Read(dst []Conn) ([]Conn, error) {
	if r.err != nil {
		return dst, r.err
	}
	room := cap(dst) - len(dst)
	if room == 0 {
		room = defaultReadBatch
	}
	for room > 0 {
		var (
			b    []byte
			res  lineResult
			elem int
			err  error
		)
		switch r.format {
		case formatTSV, formatNDJSON:
			b, res = r.src.nextLine()
		case formatArray:
			b, res, elem, err = r.nextElement()
			if err != nil {
				r.err = r.fileErr(err)
				return dst, r.err
			}
		default:
			res = lineEnd
		}
		line := r.src.line
		if r.format == formatArray {
			line = r.arr.elemLine
		}
		switch res {
		case lineEnd:
			r.err = io.EOF
			return dst, io.EOF
		case lineErr:
			r.err = r.fileErr(r.src.err)
			return dst, r.err
		case lineTooLong:
			r.reject(line, elem, fmt.Errorf("%w: over %d bytes", ErrLineTooLong, r.src.max), nil)
			continue
		}
		dst = append(dst, Conn{})
		c := &dst[len(dst)-1]
		var ok bool
		if r.format == formatTSV {
			ok, err = r.parseTSV(c, b)
		} else {
			ok, err = r.parseJSON(c, b)
		}
		if err == nil && ok {
			c.Sensor = r.sensor
			err = r.v.Check(c)
		}
		if err != nil || !ok {
			dst = dst[:len(dst)-1]
			if errors.Is(err, ErrNotConnLog) {
				r.err = r.fileErrAt(line, err)
				return dst, r.err
			}
			if err != nil {
				r.reject(line, elem, err, b)
			}
			continue
		}
		r.stats.Events++
		room--
	}
	return dst, nil
}

func (r *FileReader) reject(line, elem int, err error, raw []byte) {
	r.stats.Rejected++
	if r.onReject != nil {
		r.onReject(&LineError{File: r.name, Line: line, Elem: elem, Err: err, Raw: append([]byte(nil), raw...)})
	}
}

// fileErr reports a file-level error at the line being read, with how
// many records came before it.
func (r *FileReader) fileErr(err error) error { return r.fileErrAt(r.src.line+1, err) }

func (r *FileReader) fileErrAt(line int, err error) error {
	return fmt.Errorf("read %s at line %d (%d events read): %w", r.name, line, r.stats.Events, err)
}
