package hunt

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ndr-go/ndr/internal/store"
)

// usageError is an error about what the user asked for: it matches
// ErrUsage and its own sentinel, and reads as the latter.
type usageError struct{ err error }

func (e usageError) Error() string   { return e.err.Error() }
func (e usageError) Unwrap() []error { return []error{ErrUsage, e.err} }

func usage(err error) error { return usageError{err} }

// joinErrors is errors.Join that keeps a single error as itself.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// Bind checks given values (parameter name -> value as the user typed it)
// against q's declarations and returns the server-side parameters for
// every declared one, defaults filled in. Unknown and missing parameters
// and bad values are usage errors naming each of them.
func Bind(q *Query, given map[string]string) (store.Params, error) {
	var errs []error
	out := store.Params{}
	var unknown []string
	for name := range given {
		if _, ok := q.Param(name); !ok {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		errs = append(errs, usage(fmt.Errorf("%w %q for %s (it takes %s)", ErrUnknownParam, name, q.Name, paramNames(q))))
	}
	for _, p := range q.Params {
		v, ok := given[p.Name]
		switch {
		case ok:
			enc, err := p.Encode(v)
			if err != nil {
				errs = append(errs, usage(fmt.Errorf("%w for %s (%s): %q: %v", ErrBadValue, p.Name, p.Type, v, err)))
				continue
			}
			out[p.Name] = enc
		case p.Required:
			errs = append(errs, usage(fmt.Errorf("%w %s (%s): %s", ErrMissingParam, p.Name, p.Type, p.Meaning)))
		default:
			enc, err := p.DefaultValue()
			if err != nil { // Load checked every default
				return nil, fmt.Errorf("%s: default of %s: %w", q.Name, p.Name, err)
			}
			out[p.Name] = enc
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return out, nil
}

func paramNames(q *Query) string {
	if len(q.Params) == 0 {
		return "no parameters"
	}
	names := make([]string, len(q.Params))
	for i, p := range q.Params {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// nullValue is NULL in the text format of query parameters.
const nullValue = `\N`

// DefaultValue is the parameter's default as a query parameter value.
func (p Param) DefaultValue() (string, error) {
	if p.Required {
		return "", fmt.Errorf("%s is required", p.Name)
	}
	lit := p.Default
	if strings.EqualFold(lit, "NULL") {
		if !isNullable(p.Type) {
			return "", fmt.Errorf("NULL default for a type that is not Nullable")
		}
		return nullValue, nil
	}
	if len(lit) >= 2 && lit[0] == '\'' && lit[len(lit)-1] == '\'' {
		s, err := unquote(lit)
		if err != nil {
			return "", err
		}
		lit = s
	}
	return p.Encode(lit)
}

// unquote reads a single-quoted ClickHouse string literal.
func unquote(lit string) (string, error) {
	body := lit[1 : len(lit)-1]
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == '\\' && i+1 < len(body) {
			i++
			switch body[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(body[i])
			}
			continue
		}
		if c == '\'' {
			return "", fmt.Errorf("unescaped quote in %s", lit)
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

func isNullable(t string) bool { return strings.HasPrefix(normType(t), "Nullable(") }

// baseType strips Nullable(...) and LowCardinality(...) wrappers and any
// arguments: "Nullable(DateTime64(6,'UTC'))" -> "DateTime64".
func baseType(t string) string {
	t = normType(t)
	for {
		inner, ok := unwrap(t, "Nullable")
		if !ok {
			inner, ok = unwrap(t, "LowCardinality")
		}
		if !ok {
			break
		}
		t = inner
	}
	if i := strings.IndexByte(t, '('); i >= 0 {
		t = t[:i]
	}
	return t
}

func unwrap(t, wrapper string) (string, bool) {
	if strings.HasPrefix(t, wrapper+"(") && strings.HasSuffix(t, ")") {
		return t[len(wrapper)+1 : len(t)-1], true
	}
	return "", false
}

// Encode checks v, as a user typed it, against the parameter's type and
// returns it in the text format ClickHouse parses query parameters from.
// Times are normalised to UTC "2006-01-02 15:04:05.999999" from RFC 3339,
// that format, a date, or Unix seconds; NULL (or \N) sets a Nullable
// parameter to NULL; strings have backslash, tab and newline escaped.
// Composite types (Array, Tuple, Map) are ClickHouse literals such as
// ['10.0.0.0/8', '192.168.0.0/16'] and are checked by the server.
func (p Param) Encode(v string) (string, error) {
	v = strings.TrimSpace(v)
	if isNullable(p.Type) && (strings.EqualFold(v, "NULL") || v == nullValue) {
		return nullValue, nil
	}
	base := baseType(p.Type)
	switch base {
	case "UInt8", "UInt16", "UInt32", "UInt64":
		bits, _ := strconv.Atoi(strings.TrimPrefix(base, "UInt"))
		n, err := strconv.ParseUint(v, 10, bits)
		if err != nil {
			return "", fmt.Errorf("want an integer from 0 to %d", uint64(1)<<bits-1)
		}
		return strconv.FormatUint(n, 10), nil
	case "Int8", "Int16", "Int32", "Int64":
		bits, _ := strconv.Atoi(strings.TrimPrefix(base, "Int"))
		n, err := strconv.ParseInt(v, 10, bits)
		if err != nil {
			return "", fmt.Errorf("want a %d-bit integer", bits)
		}
		return strconv.FormatInt(n, 10), nil
	case "Float32", "Float64":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return "", errors.New("want a number")
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	case "Bool":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return "", errors.New("want true or false")
		}
		return strconv.FormatBool(b), nil
	case "IPv4", "IPv6":
		a, err := netip.ParseAddr(v)
		if err != nil {
			return "", errors.New("want an IP address")
		}
		a = a.Unmap()
		if base == "IPv4" && !a.Is4() {
			return "", errors.New("want an IPv4 address")
		}
		return a.String(), nil
	case "Date", "Date32":
		t, err := ParseTime(v)
		if err != nil {
			return "", err
		}
		return t.Format(time.DateOnly), nil
	case "DateTime", "DateTime64":
		t, err := ParseTime(v)
		if err != nil {
			return "", err
		}
		return FormatParamTime(t), nil
	case "String", "FixedString", "Enum8", "Enum16", "UUID":
		return escapeText(v), nil
	case "Array", "Tuple", "Map":
		if v == "" {
			return "", errors.New("want a ClickHouse literal such as ['a', 'b']")
		}
		return v, nil
	}
	return v, nil
}

// FormatParamTime writes t as a DateTime64 query parameter, in UTC with
// microseconds.
func FormatParamTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.000000")
}

// ParseTime reads RFC 3339 (2026-02-06T10:00:00Z), ClickHouse's
// "2006-01-02 15:04:05[.ffffff]" and "2006-01-02T15:04:05" (both taken
// as UTC), a date (midnight UTC), or Unix seconds.
func ParseTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", time.DateOnly} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f < 1e11 {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC().Truncate(time.Microsecond), nil
	}
	return time.Time{}, errors.New("want a time: RFC 3339 (2026-02-06T10:00:00Z), '2026-02-06 10:00:00' (UTC), a date or Unix seconds")
}

// escapeText escapes a string for ClickHouse's escaped text format, in
// which query parameter values are read.
func escapeText(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`, "\x00", `\0`).Replace(s)
}
