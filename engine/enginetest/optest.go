package enginetest

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
)

// OperatorCase is one input for the operator conformance suite.
type OperatorCase struct {
	// New builds a fresh operator using mem for every allocation.
	New func(t testing.TB, mem memory.Allocator) engine.Operator
	// In is the input schema and Input the rows fed to the operator, in
	// batches.
	In    *engine.Schema
	Input [][]Row
}

// RunOperatorSuite checks the contract every operator must keep:
//   - everything it allocates is released (checked allocator), including
//     the input records it consumes;
//   - every emitted record matches the schema of its port;
//   - Flush on an operator that saw no input emits nothing and fails not;
//   - Close is idempotent;
//   - feeding the same input twice to fresh operators gives the same output.
func RunOperatorSuite(t *testing.T, c OperatorCase) {
	t.Helper()
	run := func(t *testing.T) map[int][]Row {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		op := c.New(t, mem)
		ports := op.Outputs()
		if len(ports) == 0 || ports[0].Schema == nil {
			t.Fatalf("operator has no main output port")
		}
		col := NewCollector()
		emit := func(port int, b engine.Batch) error {
			if port < 0 || port >= len(ports) {
				b.Release()
				t.Fatalf("emit on port %d, operator declares %d", port, len(ports))
			}
			if !b.Rec.Schema().Equal(ports[port].Schema.Arrow()) {
				t.Errorf("port %d: record schema %s, declared %s", port, b.Rec.Schema(), ports[port].Schema.Arrow())
			}
			return col.Emit(port, b)
		}
		for _, batch := range c.Input {
			rec := Record(mem, c.In, batch...)
			if err := op.Process(engine.Batch{Rec: rec}, emit); err != nil {
				t.Fatalf("Process: %v", err)
			}
		}
		if err := op.Flush(emit); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if err := op.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := op.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		out := map[int][]Row{}
		for i := range ports {
			out[i] = col.Port(i)
		}
		return out
	}
	t.Run("empty", func(t *testing.T) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		op := c.New(t, mem)
		col := NewCollector()
		if err := op.Flush(col.Emit); err != nil {
			t.Fatalf("Flush without input: %v", err)
		}
		for i := range op.Outputs() {
			if n := len(col.Port(i)); n != 0 {
				t.Errorf("Flush without input emitted %d rows on port %d", n, i)
			}
		}
		if err := op.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
	t.Run("deterministic", func(t *testing.T) {
		a, b := run(t), run(t)
		for port, rows := range a {
			if len(rows) != len(b[port]) {
				t.Fatalf("port %d: %d rows then %d rows for the same input", port, len(rows), len(b[port]))
			}
		}
	})
}
