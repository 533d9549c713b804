package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// retireOp is a splitOp that emits one row of value 1000 when retired and
// remembers the successor it was given.
type retireOp struct {
	splitOp
	retired int
	next    engine.Operator
	fail    error
}

func (o *retireOp) Retire(next engine.Operator, emit engine.PortEmit) (int, error) {
	o.retired++
	o.next = next
	if o.fail != nil {
		return 0, o.fail
	}
	return 1, emit(0, engine.Batch{Rec: enginetest.Record(o.mem, testSchema, enginetest.Row{int64(1000), 1000.0})})
}

// TestGraphRetire: an operator marked with Retire runs its Retire with the
// successor given once its input has drained, and what it emits reaches
// the sinks; then it is flushed and closed, or left open when handed
// over. An operator not marked is never retired; one whose Retire fails
// fails the graph and is closed, not handed over.
func TestGraphRetire(t *testing.T) {
	for _, c := range []struct {
		name             string
		mark, handover   bool
		fail             error
		wantCalls        int // of Retire
		wantRetired      int // Node.Retired
		wantRows         int // 50 even values + the retire row + the flush row
		wantClosed       int
		wantFlushed      bool
		wantErr          string
		wantHandedOver   bool
		wantNextGivenNil bool
	}{
		{name: "not marked", wantRows: 51, wantClosed: 1, wantFlushed: true},
		{name: "retired and closed", mark: true, wantCalls: 1, wantRetired: 1, wantRows: 52, wantClosed: 1, wantFlushed: true, wantNextGivenNil: true},
		{name: "retired and handed over", mark: true, handover: true, wantCalls: 1, wantRetired: 1, wantRows: 51, wantHandedOver: true},
		{name: "retire fails", mark: true, handover: true, fail: errors.New("boom"), wantCalls: 1, wantRows: 50, wantClosed: 1, wantErr: "retire: boom"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			g := engine.NewGraph("t", nil)
			src := g.AddSource("a", &countSource{mem: mem, n: 100, batch: 10}, nil)
			op := &retireOp{splitOp: splitOp{mem: mem}, fail: c.fail}
			n := g.AddOperator("op", op, nil)
			sink := &sumSink{}
			s := g.AddSink("s", sink, nil)
			_ = g.Connect(src, 0, n)
			_ = g.Connect(n, 0, s)
			next := &splitOp{mem: mem}
			if c.mark {
				var succ engine.Operator
				if c.handover {
					succ = next
				}
				g.Retire(n, succ)
			}
			if c.handover {
				g.Handover(n)
			}
			err := g.Run(context.Background())
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatal(err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want %q", err, c.wantErr)
			}
			if op.retired != c.wantCalls || n.Retired() != c.wantRetired {
				t.Errorf("retired %d times, Retired() %d, want %d and %d", op.retired, n.Retired(), c.wantCalls, c.wantRetired)
			}
			if c.handover && c.fail == nil && op.next != engine.Operator(next) {
				t.Errorf("Retire was given %v, want the successor", op.next)
			}
			if c.wantNextGivenNil && op.next != nil {
				t.Errorf("Retire was given %v, want nil", op.next)
			}
			if sink.rows != c.wantRows || op.closed != c.wantClosed || op.flushed.Load() != c.wantFlushed || n.HandedOver() != c.wantHandedOver {
				t.Errorf("sink rows %d, closed %d, flushed %v, handed over %v; want %d, %d, %v, %v",
					sink.rows, op.closed, op.flushed.Load(), n.HandedOver(), c.wantRows, c.wantClosed, c.wantFlushed, c.wantHandedOver)
			}
			if op.closed == 0 {
				_ = op.Close()
			}
		})
	}
}
