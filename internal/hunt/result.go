package hunt

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ndr-go/ndr/internal/store"
)

// Querier runs a query with the server-side parameters attached to ctx
// (store.WithParams). *store.Store is one.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (store.Rows, error)
}

// Result is a query's answer: column names and rows of plain values, each
// nil (NULL), string, int64, uint64, float64, bool, time.Time (UTC) or
// []any of those. Addresses are strings (IPv4 dotted).
type Result struct {
	Columns []string
	Rows    [][]any
}

// Run runs q with params (from Bind) and reads the whole answer; library
// queries carry a limit parameter where the answer can be large.
func Run(ctx context.Context, db Querier, q *Query, params store.Params) (*Result, error) {
	rows, err := db.Query(store.WithParams(ctx, params), q.SQL)
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", q.Name, err)
	}
	defer rows.Close()
	res := &Result{Columns: rows.Columns()}
	cells := make([]cell, len(res.Columns))
	dest := make([]any, len(cells))
	for i := range cells {
		dest[i] = &cells[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read %s: %w", q.Name, err)
		}
		row := make([]any, len(cells))
		for i := range cells {
			row[i] = cells[i].v
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", q.Name, err)
	}
	return res, nil
}

// Column returns the index of the named column, or -1.
func (r *Result) Column(name string) int {
	for i, c := range r.Columns {
		if c == name {
			return i
		}
	}
	return -1
}

// cell is a scan destination for any column type: the driver hands it the
// column's natural Go value (sql.Scanner), which it normalises.
type cell struct{ v any }

func (c *cell) Scan(src any) error {
	c.v = normalize(src)
	return nil
}

// normalize maps driver values to Result's plain types.
func normalize(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return x
	case []byte:
		return string(x)
	case bool:
		return x
	case time.Time:
		return x.UTC()
	case netip.Addr:
		return x.Unmap().String()
	case net.IP:
		if v4 := x.To4(); v4 != nil {
			return v4.String()
		}
		return x.String()
	case float32:
		return float64(x)
	case float64:
		return x
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case uint:
		return uint64(x)
	case uint8:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	case uint64:
		return x
	case fmt.Stringer:
		return x.String()
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return nil
		}
		return normalize(rv.Elem().Interface())
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = normalize(rv.Index(i).Interface())
		}
		return out
	}
	return fmt.Sprint(v)
}

// Text formats a value for a table or CSV: times as RFC 3339 in UTC with
// microseconds (fixed width, so columns line up), lists comma-separated,
// NULL as empty.
func Text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case time.Time:
		return x.Format("2006-01-02T15:04:05.000000Z07:00")
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = Text(e)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

// WriteTable writes r as aligned columns with a header line; NULL shows
// as "-", as Zeek writes unset fields.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(r.Columns, "\t"))
	for _, row := range r.Rows {
		for i, v := range row {
			if i > 0 {
				io.WriteString(tw, "\t")
			}
			s := Text(v)
			if v == nil {
				s = "-"
			}
			io.WriteString(tw, strings.NewReplacer("\t", " ", "\n", " ").Replace(s))
		}
		io.WriteString(tw, "\n")
	}
	return tw.Flush()
}

// WriteCSV writes r as CSV with a header line.
func (r *Result) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(r.Columns)
	rec := make([]string, len(r.Columns))
	for _, row := range r.Rows {
		for i, v := range row {
			rec[i] = Text(v)
		}
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes r as JSON lines: one object per row, keys in column
// order, NULL as null, lists as arrays, times as RFC 3339 strings.
func (r *Result) WriteJSON(w io.Writer) error {
	var b []byte
	for _, row := range r.Rows {
		b = append(b[:0], '{')
		for i, v := range row {
			if i > 0 {
				b = append(b, ',')
			}
			k, _ := json.Marshal(r.Columns[i])
			b = append(b, k...)
			b = append(b, ':')
			val, err := json.Marshal(jsonValue(v))
			if err != nil {
				return fmt.Errorf("encode %s: %w", r.Columns[i], err)
			}
			b = append(b, val...)
		}
		b = append(b, '}', '\n')
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// jsonValue maps NaN and infinities, which JSON cannot carry, to null.
func jsonValue(v any) any {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	}
	return v
}
