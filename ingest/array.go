package ingest

import (
	"fmt"
	"io"
)

// arrayState tracks a top-level JSON array, read one element at a time so
// that a large array costs one element of memory, not the whole file.
type arrayState struct {
	started  bool // the '[' and the first element's position are behind us
	done     bool
	count    int    // elements returned so far
	elem     []byte // the current element's text, up to the line limit
	elemLine int    // the line the current element starts on
}

// nextElement returns the next element's text, its 1-based position, and
// lineTooLong for an element over the limit. A malformed array (a missing
// comma, no closing bracket) is a file-level error: past it there is no
// reliable way to find the next element.
func (r *FileReader) nextElement() ([]byte, lineResult, int, error) {
	a, s := &r.arr, r.src
	if a.done {
		return nil, lineEnd, 0, nil
	}
	c, ok := r.nextNonSpace()
	if !ok {
		return r.arrayEOF()
	}
	if !a.started {
		a.started = true
		// NewFileReader saw the '['.
		if c, ok = r.nextNonSpace(); !ok {
			return r.arrayEOF()
		}
		if c == ']' {
			return r.arrayTail()
		}
	} else {
		switch c {
		case ']':
			return r.arrayTail()
		case ',':
		default:
			return nil, lineErr, 0, fmt.Errorf("%w: json array: expected ',' or ']' after element %d", ErrSyntax, a.count)
		}
		if c, ok = r.nextNonSpace(); !ok {
			return r.arrayEOF()
		}
	}
	a.count++
	a.elemLine = s.line + 1
	a.elem = append(a.elem[:0], c)
	tooLong := false
	keep := func(c byte) {
		if len(a.elem) < s.max {
			a.elem = append(a.elem, c)
		} else {
			tooLong = true
		}
	}
	depth, inStr, esc := 0, false, false
	switch c {
	case '{', '[':
		depth = 1
	case '"':
		inStr = true
	default:
		// A bare number or literal ends at the next delimiter, which
		// belongs to the array.
		for {
			c, ok := s.peekByte()
			if !ok {
				return r.arrayEOF()
			}
			if c == ',' || c == ']' || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				break
			}
			s.readByte()
			keep(c)
		}
		return a.elem, r.elemResult(tooLong), a.count, nil
	}
	for depth > 0 || inStr {
		c, ok := s.readByte()
		if !ok {
			return r.arrayEOF()
		}
		keep(c)
		switch {
		case esc:
			esc = false
		case inStr:
			if c == '\\' {
				esc = true
			} else if c == '"' {
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		}
	}
	return a.elem, r.elemResult(tooLong), a.count, nil
}

func (r *FileReader) elemResult(tooLong bool) lineResult {
	if tooLong {
		return lineTooLong
	}
	return lineOK
}

func (r *FileReader) nextNonSpace() (byte, bool) {
	for {
		c, ok := r.src.readByte()
		if !ok {
			return 0, false
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c, true
	}
}

// arrayEOF reports the input ending inside the array: a read error as
// such, a clean end as a syntax error.
func (r *FileReader) arrayEOF() ([]byte, lineResult, int, error) {
	if err := r.src.err; err != nil && err != io.EOF {
		return nil, lineErr, 0, nil
	}
	return nil, lineErr, 0, fmt.Errorf("%w: json array: unexpected end of input", ErrSyntax)
}

// arrayTail checks that only whitespace follows the closing bracket.
func (r *FileReader) arrayTail() ([]byte, lineResult, int, error) {
	r.arr.done = true
	if _, ok := r.nextNonSpace(); ok {
		return nil, lineErr, 0, fmt.Errorf("%w: json array: data after the closing bracket", ErrSyntax)
	}
	if err := r.src.err; err != nil && err != io.EOF {
		return nil, lineErr, 0, nil
	}
	return nil, lineEnd, 0, nil
}
