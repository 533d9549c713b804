// Package transform provides the row-by-row expression steps: "filter"
// keeps the rows for which a condition holds, and "map" computes new
// columns (or replaces existing ones) from expressions.
//
// Expressions are compiled once against the input schema (package rowexpr)
// and evaluated per row without allocating. A row whose evaluation fails —
// a null in a column the expression reads, a value of the wrong type, an
// integer division by zero — does not stop the pipeline: it is counted
// (error_rows) and sent to the "errors" port with the reason, and the other
// rows go on.
package transform

import (
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/rowexpr"
	"github.com/sluice-edge/sluice/engine/spec"
)

// ErrorsPort is the index of the "errors" output port of both steps.
const ErrorsPort = 1

func init() {
	engine.RegisterOperator(FilterSpec, func(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Operator, error) {
		return NewFilter(cfg, in, bc)
	})
	engine.RegisterOperator(MapSpec, func(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Operator, error) {
		return NewMap(cfg, in, bc)
	})
}

// base holds what both steps share: the evaluation frame, the errors
// collector, the ports and the counters.
type base struct {
	name   string
	mem    memory.Allocator
	in     *engine.Schema
	env    *rowexpr.Env
	fr     *rowexpr.Frame
	errs   *rowexpr.ErrorRows
	ports  []engine.Port
	cErr   *atomic.Int64
	closed bool
}

func newBase(name string, in *engine.Schema, bc engine.BuildContext) (base, error) {
	env, err := rowexpr.NewEnv(in)
	if err != nil {
		return base{}, err
	}
	mem := bc.Mem
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	counters := bc.Counters
	if counters == nil {
		counters = engine.NewCounters()
	}
	return base{
		name: name,
		mem:  mem,
		in:   in,
		env:  env,
		fr:   env.NewFrame(),
		cErr: counters.Counter("error_rows"),
	}, nil
}

// start allocates the errors collector; it is the last step of a
// constructor, so that a failed constructor leaves nothing to release.
func (b *base) start(out *engine.Schema) {
	b.errs = rowexpr.NewErrorRows(b.mem, b.in)
	b.ports = []engine.Port{{Schema: out}, {Name: rowexpr.ErrorPort, Schema: b.errs.Schema()}}
}

// emit hands the main record (if any) and the errors record (if any) on.
// It owns both records, also when it fails.
func emit(e engine.PortEmit, src int, main, errs arrow.RecordBatch) error {
	if main != nil {
		if err := e(0, engine.Batch{Rec: main, Source: src}); err != nil {
			if errs != nil {
				errs.Release()
			}
			return err
		}
	}
	if errs != nil {
		return e(ErrorsPort, engine.Batch{Rec: errs, Source: src})
	}
	return nil
}

func (b *base) close() {
	if b.closed {
		return
	}
	b.closed = true
	if b.errs != nil {
		b.errs.Release()
	}
}
