// Package enginetest holds helpers for testing components: building records
// from Go values, collecting what an operator emits as plain rows, and the
// conformance suite (optest) that every operator passes.
package enginetest

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
)

// Row is one row as Go values in schema order: float64, int64, string, bool,
// time.Time (timestamp columns) or nil (null).
type Row []any

// Record builds a record of schema s from rows. Timestamp values may be
// time.Time or int64 milliseconds. It panics on a value of the wrong type,
// which is a bug in the test.
func Record(mem memory.Allocator, s *engine.Schema, rows ...Row) arrow.RecordBatch {
	rb := engine.NewRecordBuilder(mem, s)
	defer rb.Release()
	for _, r := range rows {
		if len(r) != len(s.Fields) {
			panic(fmt.Sprintf("enginetest: row has %d values, schema %d", len(r), len(s.Fields)))
		}
		for i, v := range r {
			if v == nil {
				rb.Columns[i].AppendNull()
				continue
			}
			switch s.Fields[i].Type {
			case engine.Float64:
				rb.Float64(i).Append(toFloat(v))
			case engine.Int64:
				rb.Int64(i).Append(toInt(v))
			case engine.String:
				rb.String(i).Append(v.(string))
			case engine.Bool:
				rb.Bool(i).Append(v.(bool))
			case engine.Timestamp:
				switch t := v.(type) {
				case time.Time:
					rb.Timestamp(i).Append(arrow.Timestamp(t.UnixMilli()))
				default:
					rb.Timestamp(i).Append(arrow.Timestamp(toInt(v)))
				}
			}
		}
		rb.RowDone()
	}
	rec := rb.NewRecord()
	if rec == nil {
		// An empty record is still a valid record.
		return emptyRecord(mem, s)
	}
	return rec
}

func emptyRecord(mem memory.Allocator, s *engine.Schema) arrow.RecordBatch {
	cols := make([]arrow.Array, len(s.Fields))
	for i, f := range s.Fields {
		b := array.NewBuilder(mem, f.Type.Arrow())
		cols[i] = b.NewArray()
		b.Release()
	}
	rec := array.NewRecordBatch(s.Arrow(), cols, 0)
	for _, c := range cols {
		c.Release()
	}
	return rec
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	}
	panic(fmt.Sprintf("enginetest: %T is not a number", v))
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int:
		return int64(x)
	case float64:
		return int64(x)
	}
	panic(fmt.Sprintf("enginetest: %T is not an integer", v))
}

// Rows converts a record to rows. Timestamps become int64 milliseconds;
// float64 NaN stays NaN.
func Rows(rec arrow.RecordBatch) []Row {
	out := make([]Row, rec.NumRows())
	for r := range out {
		out[r] = make(Row, rec.NumCols())
	}
	for c := 0; c < int(rec.NumCols()); c++ {
		col := rec.Column(c)
		for r := range out {
			if col.IsNull(r) {
				continue
			}
			switch a := col.(type) {
			case *array.Float64:
				out[r][c] = a.Value(r)
			case *array.Int64:
				out[r][c] = a.Value(r)
			case *array.String:
				out[r][c] = a.Value(r)
			case *array.Boolean:
				out[r][c] = a.Value(r)
			case *array.Timestamp:
				out[r][c] = int64(a.Value(r))
			default:
				out[r][c] = col.ValueStr(r)
			}
		}
	}
	return out
}

// Collector is a PortEmit target that converts every emitted record to rows
// (per port) and releases it. It is safe for concurrent use.
type Collector struct {
	mu      sync.Mutex
	ports   map[int][]Row
	schemas map[int]*arrow.Schema
}

// NewCollector returns an empty collector.
func NewCollector() *Collector {
	return &Collector{ports: map[int][]Row{}, schemas: map[int]*arrow.Schema{}}
}

// Emit implements engine.PortEmit.
func (c *Collector) Emit(port int, b engine.Batch) error {
	defer b.Release()
	rows := Rows(b.Rec)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ports[port] = append(c.ports[port], rows...)
	c.schemas[port] = b.Rec.Schema()
	return nil
}

// Port returns the rows emitted on a port so far.
func (c *Collector) Port(port int) []Row {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Row(nil), c.ports[port]...)
}

// Reset forgets everything collected.
func (c *Collector) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ports = map[int][]Row{}
}

// FloatEqual reports whether a and b are equal within tol, treating two NaNs
// as equal.
func FloatEqual(a, b, tol float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= tol
}

// Within runs f and returns its error, failing the test when f has not
// returned after d: for calls that must not block (opening a named pipe,
// reading a device). The goroutine of a call that blocks is left behind;
// the test fails anyway.
func Within(t testing.TB, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s blocks", what)
		return nil
	}
}
