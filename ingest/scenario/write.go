package scenario

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ndr-go/ndr/ingest"
)

// Format is an output format for connection records.
type Format uint8

// Formats. Both are what Zeek itself writes, so ingest's readers (and any
// Zeek tooling) read them.
const (
	// FormatTSV is Zeek's ASCII conn.log: a header block, tab-separated
	// rows, a #close trailer.
	FormatTSV Format = iota + 1
	// FormatJSON is Zeek's JSON logging (LogAscii::use_json): one object
	// per line with dotted id keys, unset fields omitted.
	FormatJSON
)

// ErrUnknownFormat is returned by ParseFormat.
var ErrUnknownFormat = errors.New("scenario: unknown format")

// ParseFormat accepts "tsv" (or "zeek") and "json".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "tsv", "zeek":
		return FormatTSV, nil
	case "json":
		return FormatJSON, nil
	}
	return 0, fmt.Errorf("%w %q (want tsv or json)", ErrUnknownFormat, s)
}

func (f Format) String() string {
	switch f {
	case FormatTSV:
		return "tsv"
	case FormatJSON:
		return "json"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// Writer writes connection records in one format. It buffers: Close
// flushes and writes any trailer, and does not close the underlying
// io.Writer. Errors are sticky. A Writer is not safe for concurrent use.
type Writer interface {
	Write(c *ingest.Conn) error
	Close() error
}

// NewWriter returns a Writer for f. open is the time the TSV header's
// #open line records; JSON has no header.
func NewWriter(w io.Writer, f Format, open time.Time) (Writer, error) {
	switch f {
	case FormatTSV:
		return NewTSVWriter(w, open), nil
	case FormatJSON:
		return NewJSONWriter(w), nil
	}
	return nil, fmt.Errorf("%w %v", ErrUnknownFormat, f)
}

// WriteLog generates spec's run into w in format f, streaming, and returns
// its labels. This is what `ndr gen` calls.
func WriteLog(w io.Writer, f Format, spec Spec) ([]Label, error) {
	cw, err := NewWriter(w, f, spec.Start)
	if err != nil {
		return nil, err
	}
	labels, err := Stream(spec, cw.Write)
	if err != nil {
		return nil, err
	}
	if err := cw.Close(); err != nil {
		return nil, err
	}
	return labels, nil
}

// zeekTime is the layout of #open and #close.
const zeekTime = "2006-01-02-15-04-05"

// TSVWriter writes Zeek's ASCII conn.log with the classic 21 columns.
type TSVWriter struct {
	bw     *bufio.Writer
	buf    []byte
	open   time.Time
	header bool
	last   int64 // latest connection end written, microseconds
	err    error
}

// NewTSVWriter returns a writer whose header records open as #open. The
// #close trailer records the end of the latest connection written (open
// if none): Zeek writes the wall clock there, which would make output
// differ from run to run.
func NewTSVWriter(w io.Writer, open time.Time) *TSVWriter {
	return &TSVWriter{bw: bufio.NewWriterSize(w, 64<<10), open: open, last: open.UnixMicro()}
}

func (w *TSVWriter) writeHeader() {
	w.header = true
	w.bw.WriteString("#separator \\x09\n" +
		"#set_separator\t,\n" +
		"#empty_field\t(empty)\n" +
		"#unset_field\t-\n" +
		"#path\tconn\n" +
		"#open\t" + w.open.UTC().Format(zeekTime) + "\n" +
		"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n" +
		"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n")
}

// attemptOnly reports a connection Zeek saw one packet of: it leaves
// duration and the byte counts unset rather than zero.
func attemptOnly(c *ingest.Conn) bool {
	return c.Duration == 0 && c.OrigBytes == 0 && c.RespBytes == 0
}

// Write appends one row.
func (w *TSVWriter) Write(c *ingest.Conn) error {
	if w.err != nil {
		return w.err
	}
	if !w.header {
		w.writeHeader()
	}
	b := appendMicros(w.buf[:0], c.TS)
	b = append(b, '\t')
	b = appendTSVString(b, c.UID)
	b = append(b, '\t')
	b = c.OrigH.AppendTo(b)
	b = append(b, '\t')
	b = strconv.AppendUint(b, uint64(c.OrigP), 10)
	b = append(b, '\t')
	b = c.RespH.AppendTo(b)
	b = append(b, '\t')
	b = strconv.AppendUint(b, uint64(c.RespP), 10)
	b = append(b, '\t')
	b = append(b, c.Proto.String()...)
	b = append(b, '\t')
	b = appendTSVString(b, c.Service)
	b = append(b, '\t')
	if attemptOnly(c) {
		b = append(b, "-\t-\t-"...)
	} else {
		b = appendMicros(b, c.Duration.Microseconds())
		b = append(b, '\t')
		b = strconv.AppendUint(b, c.OrigBytes, 10)
		b = append(b, '\t')
		b = strconv.AppendUint(b, c.RespBytes, 10)
	}
	b = append(b, '\t')
	if c.ConnState == ingest.StateUnset {
		b = append(b, '-')
	} else {
		b = append(b, c.ConnState.String()...)
	}
	b = append(b, '\t')
	b = append(b, c.LocalOrig.String()...)
	b = append(b, '\t')
	b = append(b, c.LocalResp.String()...)
	b = append(b, '\t')
	b = strconv.AppendUint(b, c.MissedBytes, 10)
	b = append(b, '\t')
	b = appendTSVString(b, c.History)
	for _, n := range [...]uint64{c.OrigPkts, c.OrigIPBytes, c.RespPkts, c.RespIPBytes} {
		b = append(b, '\t')
		b = strconv.AppendUint(b, n, 10)
	}
	b = append(b, "\t-\n"...)
	w.buf = b
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("write conn log: %w", err)
		return w.err
	}
	w.last = max(w.last, c.TS+c.Duration.Microseconds())
	return nil
}

// Close writes the #close trailer (and the header, for an empty log) and
// flushes.
func (w *TSVWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	if !w.header {
		w.writeHeader()
	}
	w.bw.WriteString("#close\t" + time.UnixMicro(w.last).UTC().Format(zeekTime) + "\n")
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("write conn log: %w", err)
		return w.err
	}
	w.err = errors.New("scenario: writer closed")
	return nil
}

// appendTSVString writes s as Zeek does: "-" when empty, and with \xHH
// escapes for bytes that would break the row (separator, newline, other
// controls, backslash) and for a literal value equal to the unset or
// empty marker.
func appendTSVString(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	if s == "-" || s == "(empty)" {
		b = append(b, `\x`...)
		b = appendHex(b, s[0])
		return append(b, s[1:]...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '\\' {
			b = append(b, `\x`...)
			b = appendHex(b, c)
			continue
		}
		b = append(b, c)
	}
	return b
}

func appendHex(b []byte, c byte) []byte {
	const hex = "0123456789abcdef"
	return append(b, hex[c>>4], hex[c&15])
}

// appendMicros writes microseconds as seconds with six decimals, Zeek's
// format for time and interval.
func appendMicros(b []byte, us int64) []byte {
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1e6, 10)
	frac := us % 1e6
	b = append(b, '.')
	for d := int64(1e5); d > 0; d /= 10 {
		b = append(b, byte('0'+frac/d%10))
	}
	return b
}

// JSONWriter writes Zeek JSON lines.
type JSONWriter struct {
	bw  *bufio.Writer
	buf []byte
	err error
}

// NewJSONWriter returns a writer of Zeek JSON lines.
func NewJSONWriter(w io.Writer) *JSONWriter {
	return &JSONWriter{bw: bufio.NewWriterSize(w, 64<<10)}
}

// Write appends one line.
func (w *JSONWriter) Write(c *ingest.Conn) error {
	if w.err != nil {
		return w.err
	}
	b := append(w.buf[:0], `{"ts":`...)
	b = appendMicros(b, c.TS)
	b = append(b, `,"uid":`...)
	b = appendJSONString(b, c.UID)
	b = append(b, `,"id.orig_h":"`...)
	b = c.OrigH.AppendTo(b)
	b = append(b, `","id.orig_p":`...)
	b = strconv.AppendUint(b, uint64(c.OrigP), 10)
	b = append(b, `,"id.resp_h":"`...)
	b = c.RespH.AppendTo(b)
	b = append(b, `","id.resp_p":`...)
	b = strconv.AppendUint(b, uint64(c.RespP), 10)
	b = append(b, `,"proto":"`...)
	b = append(b, c.Proto.String()...)
	b = append(b, '"')
	if c.Service != "" {
		b = append(b, `,"service":`...)
		b = appendJSONString(b, c.Service)
	}
	if !attemptOnly(c) {
		b = append(b, `,"duration":`...)
		b = appendMicros(b, c.Duration.Microseconds())
		b = append(b, `,"orig_bytes":`...)
		b = strconv.AppendUint(b, c.OrigBytes, 10)
		b = append(b, `,"resp_bytes":`...)
		b = strconv.AppendUint(b, c.RespBytes, 10)
	}
	if c.ConnState != ingest.StateUnset {
		b = append(b, `,"conn_state":"`...)
		b = append(b, c.ConnState.String()...)
		b = append(b, '"')
	}
	if c.LocalOrig != ingest.Unknown {
		b = append(b, `,"local_orig":`...)
		b = strconv.AppendBool(b, c.LocalOrig == ingest.True)
	}
	if c.LocalResp != ingest.Unknown {
		b = append(b, `,"local_resp":`...)
		b = strconv.AppendBool(b, c.LocalResp == ingest.True)
	}
	b = append(b, `,"missed_bytes":`...)
	b = strconv.AppendUint(b, c.MissedBytes, 10)
	if c.History != "" {
		b = append(b, `,"history":`...)
		b = appendJSONString(b, c.History)
	}
	b = append(b, `,"orig_pkts":`...)
	b = strconv.AppendUint(b, c.OrigPkts, 10)
	b = append(b, `,"orig_ip_bytes":`...)
	b = strconv.AppendUint(b, c.OrigIPBytes, 10)
	b = append(b, `,"resp_pkts":`...)
	b = strconv.AppendUint(b, c.RespPkts, 10)
	b = append(b, `,"resp_ip_bytes":`...)
	b = strconv.AppendUint(b, c.RespIPBytes, 10)
	b = append(b, "}\n"...)
	w.buf = b
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("write conn log: %w", err)
	}
	return w.err
}

// Close flushes.
func (w *JSONWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("write conn log: %w", err)
		return w.err
	}
	w.err = errors.New("scenario: writer closed")
	return nil
}

// appendJSONString quotes s as JSON: controls, quotes and backslashes
// escaped, invalid UTF-8 replaced.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, `\u00`...)
			b = appendHex(b, c)
		default:
			b = append(b, c)
		}
		i++
	}
	return append(b, '"')
}
