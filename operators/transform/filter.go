package transform

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/rowexpr"
	"github.com/sluice-edge/sluice/engine/spec"
)

// FilterSpec declares the "filter" step.
var FilterSpec = spec.Spec{
	Name:    "filter",
	Summary: "Keeps the rows for which an expression is true.",
	Description: `Evaluates ` + "`expr`" + ` on every row and keeps the rows where it is true; the output has the input's
schema. Rows where it is false are dropped and counted (filtered_rows). Rows where it cannot be evaluated — a null
in a column the expression reads, an attribute of the wrong type, an integer division by zero — go to the
` + "`errors`" + ` port with the reason in an extra ` + "`error`" + ` column, and are counted (error_rows).

The expression language is expr (https://expr-lang.org): columns are variables (` + "`temp > 80 && status == \"run\"`" + `),
a column whose name is not an identifier is ` + "`$env[\"temp.avg\"]`" + `. See docs/transform.md.`,
	Fields: []spec.Field{
		{Name: "expr", Type: spec.String,
			Description: "Condition over the row's columns; it must yield a bool. Rows where it is true are kept.",
			Example:     `temp > 80 && status == "run"`},
	},
	Example: `hot:
  type: filter
  input: turbines
  expr: gearbox_temp > 80 && status == "run"`,
}

// Filter is the "filter" step.
type Filter struct {
	base
	expr      *rowexpr.Expr
	rb        *engine.RecordBuilder
	sel       []int32
	cFiltered *atomic.Int64
}

var _ engine.Operator = (*Filter)(nil)

// NewFilter builds a filter for input schema in from a configuration
// parsed with FilterSpec. Configuration errors carry their file:line:col.
func NewFilter(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (*Filter, error) {
	b, err := newBase("filter", in, bc)
	if err != nil {
		return nil, cfg.Errorf("", "%v", err)
	}
	e, err := b.env.Compile(cfg.String("expr"), rowexpr.Expect(engine.Bool))
	if err != nil {
		return nil, spec.Errors{rowexpr.LocateField(cfg, "expr", err)}
	}
	counters := bc.Counters
	if counters == nil {
		counters = engine.NewCounters()
	}
	f := &Filter{base: b, expr: e, cFiltered: counters.Counter("filtered_rows")}
	f.start(in)
	f.rb = engine.NewRecordBuilder(f.mem, in)
	return f, nil
}

// Outputs returns the main port (the kept rows) and the "errors" port.
func (f *Filter) Outputs() []engine.Port { return f.ports }

// Process evaluates the condition on every row of b. When every row is
// kept, the input record is forwarded as is.
func (f *Filter) Process(b engine.Batch, e engine.PortEmit) error {
	if f.closed {
		b.Release()
		return errors.New("filter: Process after Close")
	}
	rec := b.Rec
	if err := f.fr.Bind(rec); err != nil {
		b.Release()
		return fmt.Errorf("filter: %w", err)
	}
	n := int(rec.NumRows())
	f.sel = f.sel[:0]
	for i := range n {
		f.fr.Row(i)
		ok, err := f.fr.Bool(f.expr)
		switch {
		case err != nil:
			f.errs.Add(i, "", err)
		case ok:
			f.sel = append(f.sel, int32(i))
		}
	}
	nErr := f.errs.Len()
	errRec := f.errs.Record(rec)
	var out arrow.RecordBatch
	switch {
	case len(f.sel) == n && n > 0:
		out = rec
	case len(f.sel) > 0:
		rowexpr.AppendRows(f.rb, rec, f.sel)
		out = f.rb.NewRecord()
		rec.Release()
	default:
		rec.Release()
	}
	f.cErr.Add(int64(nErr))
	f.cFiltered.Add(int64(n - len(f.sel) - nErr))
	return emit(e, b.Source, out, errRec)
}

// Flush emits nothing: a filter holds no rows.
func (f *Filter) Flush(engine.PortEmit) error { return nil }

// Close releases the filter's memory. It is idempotent.
func (f *Filter) Close() error {
	if !f.closed {
		f.rb.Release()
	}
	f.close()
	return nil
}
