package store

import (
	"fmt"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// arrowTable accumulates chosen rows of Arrow records of one schema as Go
// slices, one per field, in the shapes clickhouse-go's columnar Append takes
// (timestamps as raw int64 at the column's precision, fixed-size binary as
// [16]byte for IPv6, nullable values as pointers). Rows are copied out, so
// the records can be released as soon as add returns.
type arrowTable struct {
	name  string
	names []string
	cols  []arrowCol
	rows  int
	keep  []int // scratch: the rows of the record being added
}

// arrowCol copies one field. It works a column at a time (one type
// assertion per record, primitive values appended as whole slices): row
// by row, the per-cell interface calls and assertions cost more than the
// copy (BenchmarkArrowTableAdd).
type arrowCol interface {
	addRows(a arrow.Array, rows []int) // rows ascending
	values() any
	clone(capacity int) arrowCol // empty, same type
}

func newArrowTable(name string, schema *arrow.Schema) (*arrowTable, error) {
	t := &arrowTable{name: name}
	for _, f := range schema.Fields() {
		c, err := newArrowCol(f)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", name, f.Name, err)
		}
		t.names = append(t.names, f.Name)
		t.cols = append(t.cols, c)
	}
	return t, nil
}

func newArrowCol(f arrow.Field) (arrowCol, error) {
	switch t := f.Type.(type) {
	case *arrow.TimestampType:
		// clickhouse-go reads []int64 as milliseconds whatever the column's
		// precision, so timestamps go as time.Time.
		unit := t.Unit
		return &plainCol[time.Time]{at: func(a arrow.Array) func(int) time.Time {
			ts := a.(*array.Timestamp)
			return func(i int) time.Time { return ts.Value(i).ToTime(unit) }
		}}, nil
	case *arrow.DictionaryType:
		if t.ValueType.ID() != arrow.STRING {
			return nil, fmt.Errorf("dictionary of %s is not supported", t.ValueType)
		}
		return &plainCol[string]{at: func(a arrow.Array) func(int) string {
			d := a.(*array.Dictionary)
			names := d.Dictionary().(*array.String)
			return func(i int) string { return names.Value(d.GetValueIndex(i)) }
		}}, nil
	case *arrow.FixedSizeBinaryType:
		if t.ByteWidth != 16 {
			return nil, fmt.Errorf("fixed_size_binary[%d] is not an address", t.ByteWidth)
		}
		return &plainCol[[16]byte]{at: func(a arrow.Array) func(int) [16]byte {
			b := a.(*array.FixedSizeBinary)
			return func(i int) [16]byte { return [16]byte(b.Value(i)) }
		}}, nil
	}
	switch f.Type.ID() {
	case arrow.BOOL:
		return nullable(f, func(a arrow.Array) func(int) bool { return a.(*array.Boolean).Value }, nil), nil
	case arrow.UINT8:
		return nullable(f, nil, func(a arrow.Array) []uint8 { return a.(*array.Uint8).Uint8Values() }), nil
	case arrow.UINT16:
		return nullable(f, nil, func(a arrow.Array) []uint16 { return a.(*array.Uint16).Uint16Values() }), nil
	case arrow.UINT32:
		return nullable(f, nil, func(a arrow.Array) []uint32 { return a.(*array.Uint32).Uint32Values() }), nil
	case arrow.UINT64:
		return nullable(f, nil, func(a arrow.Array) []uint64 { return a.(*array.Uint64).Uint64Values() }), nil
	case arrow.FLOAT64:
		return nullable(f, nil, func(a arrow.Array) []float64 { return a.(*array.Float64).Float64Values() }), nil
	}
	return nil, fmt.Errorf("arrow type %s is not supported", f.Type)
}

// access reads one array: at returns a getter bound to it, or, for
// primitive arrays, vals returns its values as a slice (one of the two is
// set).
type access[T any] struct {
	at   func(arrow.Array) func(int) T
	vals func(arrow.Array) []T
}

// appendRows appends a's values at rows to v.
func (x access[T]) appendRows(v []T, a arrow.Array, rows []int) []T {
	if x.vals != nil {
		vs := x.vals(a)
		if len(rows) == len(vs) { // every row: rows is 0..n-1
			return append(v, vs...)
		}
		for _, r := range rows {
			v = append(v, vs[r])
		}
		return v
	}
	get := x.at(a)
	for _, r := range rows {
		v = append(v, get(r))
	}
	return v
}

func nullable[T any](f arrow.Field, at func(arrow.Array) func(int) T, vals func(arrow.Array) []T) arrowCol {
	x := access[T]{at: at, vals: vals}
	if f.Nullable {
		return &nullCol[T]{access: x}
	}
	return &plainCol[T]{at: at, vals: vals}
}

type plainCol[T any] struct {
	at   func(arrow.Array) func(int) T
	vals func(arrow.Array) []T
	v    []T
}

func (c *plainCol[T]) addRows(a arrow.Array, rows []int) {
	c.v = access[T]{at: c.at, vals: c.vals}.appendRows(c.v, a, rows)
}
func (c *plainCol[T]) values() any { return c.v }
func (c *plainCol[T]) clone(n int) arrowCol {
	return &plainCol[T]{at: c.at, vals: c.vals, v: make([]T, 0, n)}
}

// nullCol keeps values and validity apart and builds the []*T that
// Nullable columns take only at flush time, pointing into its own slice.
type nullCol[T any] struct {
	access[T]
	v     []T
	valid []bool
}

func (c *nullCol[T]) addRows(a arrow.Array, rows []int) {
	n := len(c.v)
	c.v = c.appendRows(c.v, a, rows)
	if a.NullN() == 0 {
		for range rows {
			c.valid = append(c.valid, true)
		}
		return
	}
	var zero T
	for i, r := range rows {
		ok := a.IsValid(r)
		if !ok {
			c.v[n+i] = zero
		}
		c.valid = append(c.valid, ok)
	}
}

func (c *nullCol[T]) values() any {
	out := make([]*T, len(c.v))
	for i := range c.v {
		if c.valid[i] {
			out[i] = &c.v[i]
		}
	}
	return out
}

func (c *nullCol[T]) clone(n int) arrowCol {
	return &nullCol[T]{access: c.access, v: make([]T, 0, n), valid: make([]bool, 0, n)}
}

// add copies the rows of rec that keep accepts. rec must have the table's
// schema.
func (t *arrowTable) add(rec arrow.Record, keep func(row int) bool) error {
	if int(rec.NumCols()) != len(t.cols) {
		return fmt.Errorf("%s: record has %d columns, table %d", t.name, rec.NumCols(), len(t.cols))
	}
	t.keep = t.keep[:0]
	for r := 0; r < int(rec.NumRows()); r++ {
		if keep(r) {
			t.keep = append(t.keep, r)
		}
	}
	if len(t.keep) == 0 {
		return nil
	}
	for c, col := range t.cols {
		col.addRows(rec.Column(c), t.keep)
	}
	t.rows += len(t.keep)
	return nil
}

// fresh returns an empty table of the same shape, with room for as many
// rows as t holds (the next flush is likely about as big).
func (t *arrowTable) fresh() *arrowTable {
	n := &arrowTable{name: t.name, names: t.names, cols: make([]arrowCol, len(t.cols))}
	for i, c := range t.cols {
		n.cols[i] = c.clone(t.rows)
	}
	return n
}
