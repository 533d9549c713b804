package rowexpr

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
)

// ErrorPort is the name of the output port that carries rows whose
// evaluation failed.
const ErrorPort = "errors"

// ErrorSchema returns the schema of the errors port for input schema in:
// the input columns plus a string column "error" with the reason (named
// "error_reason" when the input already has an "error" column).
func ErrorSchema(in *engine.Schema) *engine.Schema {
	name := "error"
	for i := 0; in.Index(name) >= 0; i++ {
		name = "error_reason"
		if i > 0 {
			name = fmt.Sprintf("error_reason_%d", i)
		}
	}
	fields := append(append([]engine.Field(nil), in.Fields...), engine.Field{Name: name, Type: engine.String})
	return engine.MustSchema(fields, in.Time, in.Key)
}

// ErrorRows collects the rows of one input record whose evaluation failed
// and builds the record for the errors port. Adding a row allocates only
// for its reason; a record with no bad rows costs nothing.
type ErrorRows struct {
	schema *engine.Schema
	rb     *engine.RecordBuilder
	rows   []int32
	prefix []string
	errs   []error
}

// NewErrorRows returns an empty collector for input schema in. Release it
// when done.
func NewErrorRows(mem memory.Allocator, in *engine.Schema) *ErrorRows {
	s := ErrorSchema(in)
	return &ErrorRows{schema: s, rb: engine.NewRecordBuilder(mem, s)}
}

// Schema returns the schema of the errors port.
func (r *ErrorRows) Schema() *engine.Schema { return r.schema }

// Add records that row failed with err; the reason is prefix followed by
// the error text. A row added twice keeps its first reason.
func (r *ErrorRows) Add(row int, prefix string, err error) {
	if n := len(r.rows); n > 0 && r.rows[n-1] == int32(row) {
		return
	}
	r.rows = append(r.rows, int32(row))
	r.prefix = append(r.prefix, prefix)
	r.errs = append(r.errs, err)
}

// Len returns the number of rows added since the last Record.
func (r *ErrorRows) Len() int { return len(r.rows) }

// Rows returns the failed row indexes, in the order they were added.
func (r *ErrorRows) Rows() []int32 { return r.rows }

// Record builds the errors record from rec, the input record the row
// indexes refer to, and resets the collector. It returns nil when no row
// failed. The caller owns the record.
func (r *ErrorRows) Record(rec arrow.RecordBatch) arrow.RecordBatch {
	if len(r.rows) == 0 {
		return nil
	}
	AppendRows(r.rb, rec, r.rows)
	reason := r.rb.String(len(r.schema.Fields) - 1)
	for i, err := range r.errs {
		reason.Append(r.prefix[i] + err.Error())
		r.errs[i] = nil
	}
	r.rows, r.prefix, r.errs = r.rows[:0], r.prefix[:0], r.errs[:0]
	return r.rb.NewRecord()
}

// Reset forgets the rows added since the last Record.
func (r *ErrorRows) Reset() {
	clear(r.errs)
	r.rows, r.prefix, r.errs = r.rows[:0], r.prefix[:0], r.errs[:0]
}

// Release releases the builder.
func (r *ErrorRows) Release() {
	if r.rb != nil {
		r.rb.Release()
		r.rb = nil
	}
}

// AppendRows appends the given rows of src to the first src.NumCols()
// columns of dst and counts them as complete rows; dst's remaining columns
// (if any) must be appended by the caller for the same rows. Columns are
// copied one at a time with typed loops.
func AppendRows(dst *engine.RecordBuilder, src arrow.RecordBatch, rows []int32) {
	for c := 0; c < int(src.NumCols()); c++ {
		AppendColumn(dst.Columns[c], src.Column(c), rows)
	}
	for range rows {
		dst.RowDone()
	}
}

// AppendColumn appends the given rows of src to b, which must build the
// same type.
func AppendColumn(b array.Builder, src arrow.Array, rows []int32) {
	nulls := src.NullN() > 0
	b.Reserve(len(rows))
	switch a := src.(type) {
	case *array.Float64:
		fb := b.(*array.Float64Builder)
		v := a.Float64Values()
		for _, r := range rows {
			if nulls && a.IsNull(int(r)) {
				fb.UnsafeAppendBoolToBitmap(false)
				continue
			}
			fb.UnsafeAppend(v[r])
		}
	case *array.Int64:
		ib := b.(*array.Int64Builder)
		v := a.Int64Values()
		for _, r := range rows {
			if nulls && a.IsNull(int(r)) {
				ib.UnsafeAppendBoolToBitmap(false)
				continue
			}
			ib.UnsafeAppend(v[r])
		}
	case *array.Timestamp:
		tb := b.(*array.TimestampBuilder)
		v := a.TimestampValues()
		for _, r := range rows {
			if nulls && a.IsNull(int(r)) {
				tb.UnsafeAppendBoolToBitmap(false)
				continue
			}
			tb.UnsafeAppend(v[r])
		}
	case *array.Boolean:
		bb := b.(*array.BooleanBuilder)
		for _, r := range rows {
			if nulls && a.IsNull(int(r)) {
				bb.UnsafeAppendBoolToBitmap(false)
				continue
			}
			bb.UnsafeAppend(a.Value(int(r)))
		}
	case *array.String:
		sb := b.(*array.StringBuilder)
		size := 0
		for _, r := range rows {
			size += a.ValueLen(int(r))
		}
		sb.ReserveData(size)
		for _, r := range rows {
			if nulls && a.IsNull(int(r)) {
				sb.AppendNull()
				continue
			}
			sb.Append(a.Value(int(r)))
		}
	default:
		for _, r := range rows {
			if err := b.AppendValueFromString(src.ValueStr(int(r))); err != nil {
				b.AppendNull()
			}
		}
	}
}
