package hunt

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Query is one hunt of the library.
type Query struct {
	// Name is the file name without .sql, e.g. "beacon-candidates".
	Name string
	// Finds says what the query finds, as one paragraph.
	Finds string
	// Params are the declared parameters, in header order.
	Params []Param
	// SQL is the whole file, header included; it is sent as is.
	SQL string
}

// Param is a typed query parameter declared in a header.
type Param struct {
	Name string
	// Type is the ClickHouse type as written, e.g. "Nullable(IPv6)".
	Type string
	// Default is the ClickHouse literal the header gives ("NULL", "10",
	// "'10m0s'", "['10.0.0.0/8']"); empty when Required.
	Default  string
	Required bool
	// Meaning says what the parameter does.
	Meaning string
}

// Param returns the parameter called name.
func (q *Query) Param(name string) (Param, bool) {
	i := slices.IndexFunc(q.Params, func(p Param) bool { return p.Name == name })
	if i < 0 {
		return Param{}, false
	}
	return q.Params[i], true
}

// Library is a set of queries by name. It is immutable once loaded and
// safe for concurrent use.
type Library struct {
	queries map[string]*Query
	names   []string
}

// Load reads every *.sql file of dir in fsys and checks its header. All
// problems are reported together.
func Load(fsys fs.FS, dir string) (*Library, error) {
	files, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	lib := &Library{queries: map[string]*Query{}}
	var errs []error
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		name := strings.TrimSuffix(path.Base(f), ".sql")
		q, err := Parse(name, string(b))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		lib.queries[name] = &q
		lib.names = append(lib.names, name)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	slices.Sort(lib.names)
	return lib, nil
}

// Names lists the queries in name order.
func (l *Library) Names() []string { return slices.Clone(l.names) }

// Get returns the query called name, or an ErrUnknownQuery usage error
// naming the queries there are.
func (l *Library) Get(name string) (*Query, error) {
	if q, ok := l.queries[name]; ok {
		return q, nil
	}
	return nil, usage(fmt.Errorf("%w %q (have %s)", ErrUnknownQuery, name, strings.Join(l.names, ", ")))
}

var (
	nameRE        = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	paramNameRE   = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	placeholderRE = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+)\}`)
)

// Parse reads one query file called name (its file name without .sql).
func Parse(name, text string) (Query, error) {
	q := Query{Name: name, SQL: text}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadHeader, fmt.Sprintf(format, args...))
	}
	if !nameRE.MatchString(name) {
		return q, bad("file name %q: want lowercase words joined by '-'", name)
	}
	var (
		errs    []error
		key     string // the header key the current line continues
		gotName bool
		finds   []string
	)
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, " \t\r")
		rest, ok := strings.CutPrefix(line, "--")
		if !ok || strings.TrimSpace(rest) == "" {
			break // the header ends at the first code or empty comment line
		}
		lineNo := i + 1
		if strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "  ") {
			k, v, ok := strings.Cut(rest[1:], ":")
			if !ok {
				errs = append(errs, bad("line %d: want 'key: value' (name, finds, params)", lineNo))
				continue
			}
			key, v = k, strings.TrimSpace(v)
			switch key {
			case "name":
				gotName = true
				if v != name {
					errs = append(errs, bad("line %d: name %q differs from the file name %q", lineNo, v, name))
				}
			case "finds":
				if v != "" {
					finds = append(finds, v)
				}
			case "params":
				if v != "" {
					errs = append(errs, bad("line %d: params are listed one per line below 'params:'", lineNo))
				}
			default:
				errs = append(errs, bad("line %d: unknown key %q (want name, finds, params)", lineNo, key))
			}
			continue
		}
		// An indented line continues the current key.
		v := strings.TrimSpace(rest)
		switch key {
		case "finds":
			finds = append(finds, v)
		case "params":
			p, err := parseParam(v)
			if err != nil {
				errs = append(errs, bad("line %d: %v", lineNo, err))
				continue
			}
			if _, dup := q.Param(p.Name); dup {
				errs = append(errs, bad("line %d: parameter %s declared twice", lineNo, p.Name))
				continue
			}
			q.Params = append(q.Params, p)
		default:
			errs = append(errs, bad("line %d: indented line outside finds or params", lineNo))
		}
	}
	q.Finds = strings.Join(finds, " ")
	if !gotName {
		errs = append(errs, bad("no '-- name:' line"))
	}
	if q.Finds == "" {
		errs = append(errs, bad("no '-- finds:' text"))
	}
	errs = append(errs, checkPlaceholders(&q)...)
	if strings.HasSuffix(strings.TrimSpace(stripLineComments(text)), ";") {
		errs = append(errs, bad("the query ends with ';': one statement, no terminator"))
	}
	if len(errs) > 0 {
		return q, joinErrors(errs)
	}
	return q, nil
}

// parseParam reads "NAME TYPE default LITERAL, MEANING" or
// "NAME TYPE required, MEANING".
func parseParam(s string) (Param, error) {
	var p Param
	name, rest, _ := strings.Cut(s, " ")
	if !paramNameRE.MatchString(name) {
		return p, fmt.Errorf("parameter name %q: want lowercase letters, digits and '_'", name)
	}
	p.Name = name
	rest = strings.TrimLeft(rest, " ")
	typ, n, err := scanBalanced(rest, func(r byte) bool { return r == ' ' })
	if err != nil || typ == "" {
		return p, fmt.Errorf("parameter %s: want a ClickHouse type after the name", name)
	}
	p.Type = typ
	rest = strings.TrimLeft(rest[n:], " ")
	switch {
	case strings.HasPrefix(rest, "required"):
		p.Required = true
		rest = strings.TrimPrefix(rest, "required")
	case strings.HasPrefix(rest, "default "):
		rest = strings.TrimLeft(strings.TrimPrefix(rest, "default "), " ")
		lit, n, err := scanBalanced(rest, func(r byte) bool { return r == ',' })
		if err != nil {
			return p, fmt.Errorf("parameter %s: default: %v", name, err)
		}
		p.Default = strings.TrimSpace(lit)
		if p.Default == "" {
			return p, fmt.Errorf("parameter %s: empty default", name)
		}
		rest = rest[n:]
	default:
		return p, fmt.Errorf("parameter %s: want 'default VALUE' or 'required' after the type", name)
	}
	meaning, ok := strings.CutPrefix(strings.TrimLeft(rest, " "), ",")
	if !ok || strings.TrimSpace(meaning) == "" {
		return p, fmt.Errorf("parameter %s: want ', meaning' at the end", name)
	}
	p.Meaning = strings.TrimSpace(meaning)
	if !p.Required {
		if _, err := p.DefaultValue(); err != nil {
			return p, fmt.Errorf("parameter %s: default %s: %v", name, p.Default, err)
		}
	}
	return p, nil
}

// scanBalanced returns the prefix of s up to the first byte for which stop
// is true outside brackets and quotes, and its length.
func scanBalanced(s string, stop func(byte) bool) (string, int, error) {
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			j, err := skipQuote(s, i)
			if err != nil {
				return "", 0, err
			}
			i = j
		case c == '(' || c == '[':
			depth++
		case c == ')' || c == ']':
			depth--
			if depth < 0 {
				return "", 0, fmt.Errorf("unbalanced %q", c)
			}
		case depth == 0 && stop(c):
			return s[:i], i, nil
		}
	}
	if depth != 0 {
		return "", 0, fmt.Errorf("unbalanced brackets in %q", s)
	}
	return s, len(s), nil
}

// skipQuote returns the index of the quote closing the one at s[i]; a
// backslash escapes the next byte, as in ClickHouse literals.
func skipQuote(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j, nil
		}
	}
	return 0, fmt.Errorf("unterminated %c quote", q)
}

// checkPlaceholders reports placeholders the header does not declare,
// declared parameters the query does not use, and type disagreements.
func checkPlaceholders(q *Query) []error {
	var errs []error
	used := map[string]bool{}
	for _, m := range placeholderRE.FindAllStringSubmatch(stripLineComments(q.SQL), -1) {
		name, typ := m[1], m[2]
		p, ok := q.Param(name)
		if !ok {
			errs = append(errs, fmt.Errorf("%w: placeholder {%s:%s} is not declared under params", ErrBadHeader, name, typ))
			continue
		}
		if normType(typ) != normType(p.Type) {
			errs = append(errs, fmt.Errorf("%w: placeholder {%s:%s} has another type than its declaration %s", ErrBadHeader, name, typ, p.Type))
		}
		used[name] = true
	}
	for _, p := range q.Params {
		if !used[p.Name] {
			errs = append(errs, fmt.Errorf("%w: parameter %s is declared but the query does not use it", ErrBadHeader, p.Name))
		}
	}
	return errs
}

func normType(t string) string { return strings.Join(strings.Fields(t), "") }

// stripLineComments removes "--" comments that are not inside quotes, so
// that documentation may mention {placeholders} and end with ';'.
func stripLineComments(sql string) string {
	var b strings.Builder
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			j, err := skipQuote(sql, i)
			if err != nil {
				b.WriteString(sql[i:])
				return b.String()
			}
			b.WriteString(sql[i : j+1])
			i = j
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
			if i < len(sql) {
				b.WriteByte('\n')
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
