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
}

type arrowCol interface {
	add(a arrow.Array, row int)
	values() any
	clone() arrowCol // empty, same type
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
		return &plainCol[time.Time]{get: func(a arrow.Array, i int) time.Time {
			return a.(*array.Timestamp).Value(i).ToTime(unit)
		}}, nil
	case *arrow.DictionaryType:
		if t.ValueType.ID() != arrow.STRING {
			return nil, fmt.Errorf("dictionary of %s is not supported", t.ValueType)
		}
		return &plainCol[string]{get: func(a arrow.Array, i int) string {
			d := a.(*array.Dictionary)
			return d.Dictionary().(*array.String).Value(d.GetValueIndex(i))
		}}, nil
	case *arrow.FixedSizeBinaryType:
		if t.ByteWidth != 16 {
			return nil, fmt.Errorf("fixed_size_binary[%d] is not an address", t.ByteWidth)
		}
		return &plainCol[[16]byte]{get: func(a arrow.Array, i int) [16]byte { return [16]byte(a.(*array.FixedSizeBinary).Value(i)) }}, nil
	}
	switch f.Type.ID() {
	case arrow.BOOL:
		return nullable(f, func(a arrow.Array, i int) bool { return a.(*array.Boolean).Value(i) }), nil
	case arrow.UINT8:
		return nullable(f, func(a arrow.Array, i int) uint8 { return a.(*array.Uint8).Value(i) }), nil
	case arrow.UINT16:
		return nullable(f, func(a arrow.Array, i int) uint16 { return a.(*array.Uint16).Value(i) }), nil
	case arrow.UINT32:
		return nullable(f, func(a arrow.Array, i int) uint32 { return a.(*array.Uint32).Value(i) }), nil
	case arrow.UINT64:
		return nullable(f, func(a arrow.Array, i int) uint64 { return a.(*array.Uint64).Value(i) }), nil
	case arrow.FLOAT64:
		return nullable(f, func(a arrow.Array, i int) float64 { return a.(*array.Float64).Value(i) }), nil
	}
	return nil, fmt.Errorf("arrow type %s is not supported", f.Type)
}

func nullable[T any](f arrow.Field, get func(arrow.Array, int) T) arrowCol {
	if f.Nullable {
		return &nullCol[T]{get: get}
	}
	return &plainCol[T]{get: get}
}

type plainCol[T any] struct {
	get func(arrow.Array, int) T
	v   []T
}

func (c *plainCol[T]) add(a arrow.Array, i int) { c.v = append(c.v, c.get(a, i)) }
func (c *plainCol[T]) values() any              { return c.v }
func (c *plainCol[T]) clone() arrowCol          { return &plainCol[T]{get: c.get} }

// nullCol keeps values and validity apart and builds the []*T that
// Nullable columns take only at flush time, pointing into its own slice.
type nullCol[T any] struct {
	get   func(arrow.Array, int) T
	v     []T
	valid []bool
}

func (c *nullCol[T]) add(a arrow.Array, i int) {
	var zero T
	if a.IsNull(i) {
		c.v, c.valid = append(c.v, zero), append(c.valid, false)
		return
	}
	c.v, c.valid = append(c.v, c.get(a, i)), append(c.valid, true)
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

func (c *nullCol[T]) clone() arrowCol { return &nullCol[T]{get: c.get} }

// add copies the rows of rec that keep accepts. rec must have the table's
// schema.
func (t *arrowTable) add(rec arrow.Record, keep func(row int) bool) error {
	if int(rec.NumCols()) != len(t.cols) {
		return fmt.Errorf("%s: record has %d columns, table %d", t.name, rec.NumCols(), len(t.cols))
	}
	for r := 0; r < int(rec.NumRows()); r++ {
		if !keep(r) {
			continue
		}
		for c, col := range t.cols {
			col.add(rec.Column(c), r)
		}
		t.rows++
	}
	return nil
}

// fresh returns an empty table of the same shape.
func (t *arrowTable) fresh() *arrowTable {
	n := &arrowTable{name: t.name, names: t.names, cols: make([]arrowCol, len(t.cols))}
	for i, c := range t.cols {
		n.cols[i] = c.clone()
	}
	return n
}
