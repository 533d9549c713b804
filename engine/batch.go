package engine

import (
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Batch is the unit that travels between components: one Arrow record batch
// and the identity of the source it came from.
//
// Ownership: the receiver of a Batch owns one reference to Rec. It must
// either hand the record on (emit it) or call Rec.Release exactly once.
type Batch struct {
	// Rec holds the rows; its schema is the Arrow form of the stream's Schema.
	Rec arrow.RecordBatch
	// Source is the index of the source that produced the rows (or the rows
	// they were derived from). Operators that track event time keep one
	// watermark per source.
	Source int
	// Ack is the acknowledgement share this batch holds, or nil. The graph
	// manages it: components never call it.
	Ack *Ack
}

// Release releases the batch's record.
func (b Batch) Release() {
	if b.Rec != nil {
		b.Rec.Release()
	}
}

// BatchPolicy says when a source flushes the rows it has built: when Size
// rows are pending, or when the oldest pending row has waited Linger.
type BatchPolicy struct {
	Size   int
	Linger time.Duration
}

// DefaultBatchPolicy is used when a pipeline sets no batch policy.
var DefaultBatchPolicy = BatchPolicy{Size: 1024, Linger: 5 * time.Millisecond}

// Normalize fills zero values with defaults.
func (p BatchPolicy) Normalize() BatchPolicy {
	if p.Size <= 0 {
		p.Size = DefaultBatchPolicy.Size
	}
	if p.Linger <= 0 {
		p.Linger = DefaultBatchPolicy.Linger
	}
	return p
}

// RecordBuilder builds records of one schema with typed appends. It wraps an
// Arrow RecordBuilder and keeps typed handles to every column so that hot
// loops append without type switches.
type RecordBuilder struct {
	Schema *Schema
	b      *array.RecordBuilder
	// Columns holds one builder per field, in schema order. Each is a
	// *array.Float64Builder, *array.Int64Builder, *array.StringBuilder,
	// *array.BooleanBuilder or *array.TimestampBuilder.
	Columns []array.Builder
	rows    int
}

// NewRecordBuilder returns a builder for s. Release it when done.
func NewRecordBuilder(mem memory.Allocator, s *Schema) *RecordBuilder {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	b := array.NewRecordBuilder(mem, s.Arrow())
	rb := &RecordBuilder{Schema: s, b: b, Columns: make([]array.Builder, len(s.Fields))}
	for i := range s.Fields {
		rb.Columns[i] = b.Field(i)
	}
	return rb
}

// Float64 returns the builder of column i, which must be a float64 column.
func (rb *RecordBuilder) Float64(i int) *array.Float64Builder {
	return rb.Columns[i].(*array.Float64Builder)
}

// Int64 returns the builder of column i, which must be an int64 column.
func (rb *RecordBuilder) Int64(i int) *array.Int64Builder {
	return rb.Columns[i].(*array.Int64Builder)
}

// String returns the builder of column i, which must be a string column.
func (rb *RecordBuilder) String(i int) *array.StringBuilder {
	return rb.Columns[i].(*array.StringBuilder)
}

// Bool returns the builder of column i, which must be a bool column.
func (rb *RecordBuilder) Bool(i int) *array.BooleanBuilder {
	return rb.Columns[i].(*array.BooleanBuilder)
}

// Timestamp returns the builder of column i, which must be a timestamp column.
func (rb *RecordBuilder) Timestamp(i int) *array.TimestampBuilder {
	return rb.Columns[i].(*array.TimestampBuilder)
}

// RowDone records that one complete row was appended to every column.
func (rb *RecordBuilder) RowDone() { rb.rows++ }

// Rows returns the number of complete rows pending.
func (rb *RecordBuilder) Rows() int { return rb.rows }

// Reserve reserves room for n more rows in every column.
func (rb *RecordBuilder) Reserve(n int) { rb.b.Reserve(n) }

// NewRecord returns the pending rows as a record (nil when none are pending)
// and resets the builder. The caller owns the record.
func (rb *RecordBuilder) NewRecord() arrow.RecordBatch {
	if rb.rows == 0 {
		return nil
	}
	rb.rows = 0
	return rb.b.NewRecordBatch()
}

// Release releases the builder's memory.
func (rb *RecordBuilder) Release() { rb.b.Release() }
