package engine_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testSchema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "v", Type: engine.Float64},
}, "time", "")

// countSource emits batches of rows with v = 0, 1, 2, ... until n rows
// (n < 0: until cancelled).
type countSource struct {
	mem   memory.Allocator
	n     int
	batch int
}

func (s *countSource) Schema() *engine.Schema { return testSchema }

func (s *countSource) Run(ctx context.Context, emit engine.Emit) error {
	v := 0
	for s.n < 0 || v < s.n {
		if ctx.Err() != nil {
			return nil
		}
		var rows []enginetest.Row
		for i := 0; i < s.batch && (s.n < 0 || v < s.n); i++ {
			rows = append(rows, enginetest.Row{int64(v), float64(v)})
			v++
		}
		if err := emit(enginetest.Record(s.mem, testSchema, rows...), nil); err != nil {
			return err
		}
	}
	return nil
}

// splitOp sends even values to port 0 and odd ones to port 1 ("odd"), and
// emits one extra row on Flush.
type splitOp struct {
	mem     memory.Allocator
	fail    error
	panics  bool
	flushed atomic.Bool
	closed  int
}

func (o *splitOp) Outputs() []engine.Port {
	return []engine.Port{{Schema: testSchema}, {Name: "odd", Schema: testSchema}}
}

func (o *splitOp) Process(b engine.Batch, emit engine.PortEmit) error {
	defer b.Release()
	if o.fail != nil {
		return o.fail
	}
	if o.panics {
		var m map[string]int
		m["boom"]++
	}
	var even, odd []enginetest.Row
	for _, r := range enginetest.Rows(b.Rec) {
		if int64(r[1].(float64))%2 == 0 {
			even = append(even, r)
		} else {
			odd = append(odd, r)
		}
	}
	if err := emit(0, engine.Batch{Rec: enginetest.Record(o.mem, testSchema, even...), Source: b.Source}); err != nil {
		return err
	}
	return emit(1, engine.Batch{Rec: enginetest.Record(o.mem, testSchema, odd...), Source: b.Source})
}

func (o *splitOp) Flush(emit engine.PortEmit) error {
	o.flushed.Store(true)
	return emit(0, engine.Batch{Rec: enginetest.Record(o.mem, testSchema, enginetest.Row{int64(-1), -1.0})})
}

func (o *splitOp) Close() error { o.closed++; return nil }

type sumSink struct {
	mu     sync.Mutex
	rows   int
	sum    float64
	closed int
	fail   error
}

func (s *sumSink) Write(_ context.Context, b engine.Batch) error {
	defer b.Release()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.rows += int(b.Rec.NumRows())
	for _, v := range b.Rec.Column(1).(*array.Float64).Float64Values() {
		s.sum += v
	}
	return nil
}

func (s *sumSink) Close(context.Context) error { s.closed++; return nil }

func TestGraphFanOutMergeAndPorts(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)

	g := engine.NewGraph("t", nil)
	a := g.AddSource("a", &countSource{mem: mem, n: 1000, batch: 7}, nil)
	b := g.AddSource("b", &countSource{mem: mem, n: 500, batch: 64}, nil)
	op := &splitOp{mem: mem}
	split := g.AddOperator("split", op, nil)
	evenA, evenB, odd, all := &sumSink{}, &sumSink{}, &sumSink{}, &sumSink{}
	sEvenA := g.AddSink("evenA", evenA, nil)
	sEvenB := g.AddSink("evenB", evenB, nil)
	sOdd := g.AddSink("odd", odd, nil)
	sAll := g.AddSink("all", all, nil)
	for _, c := range []struct {
		from *engine.Node
		port int
		to   *engine.Node
	}{{a, 0, split}, {b, 0, split}, {split, 0, sEvenA}, {split, 0, sEvenB}, {split, 1, sOdd}, {a, 0, sAll}, {b, 0, sAll}} {
		if err := g.Connect(c.from, c.port, c.to); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !op.flushed.Load() || op.closed != 1 {
		t.Fatalf("flushed=%v closed=%d, want flush and one close", op.flushed.Load(), op.closed)
	}
	// Even values 0..998 (500) + 0..498 (250) + the flushed row.
	if evenA.rows != 751 || evenB.rows != 751 {
		t.Fatalf("even sinks got %d and %d rows, want 751", evenA.rows, evenB.rows)
	}
	if odd.rows != 750 || all.rows != 1500 {
		t.Fatalf("odd got %d rows (want 750), all got %d (want 1500)", odd.rows, all.rows)
	}
	if want := float64(999*1000/2 + 499*500/2); all.sum != want {
		t.Fatalf("sum %v, want %v", all.sum, want)
	}
	for _, s := range []*sumSink{evenA, evenB, odd, all} {
		if s.closed != 1 {
			t.Fatalf("sink closed %d times", s.closed)
		}
	}
	if got := split.Counters.Counter("rows_in").Load(); got != 1500 {
		t.Fatalf("split rows_in %d, want 1500", got)
	}
}

func TestGraphCancelDrainsAndFlushes(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	g := engine.NewGraph("t", nil)
	ctx, cancel := context.WithCancel(context.Background())
	sink := &cancelSink{cancelAfter: 100, cancel: cancel}
	src := g.AddSource("a", &countSource{mem: mem, n: -1, batch: 10}, nil)
	op := &splitOp{mem: mem}
	split := g.AddOperator("split", op, nil)
	s := g.AddSink("s", sink, nil)
	_ = g.Connect(src, 0, split)
	_ = g.Connect(split, 0, s)
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !op.flushed.Load() {
		t.Fatal("operator was not flushed on cancel")
	}
	if !sink.sawFlushRow {
		t.Fatal("flush output did not reach the sink after cancel")
	}
}

type cancelSink struct {
	rows        int
	cancelAfter int
	cancel      context.CancelFunc
	sawFlushRow bool
}

func (s *cancelSink) Write(_ context.Context, b engine.Batch) error {
	defer b.Release()
	s.rows += int(b.Rec.NumRows())
	for _, v := range b.Rec.Column(1).(*array.Float64).Float64Values() {
		if v == -1 {
			s.sawFlushRow = true
		}
	}
	if s.rows >= s.cancelAfter {
		s.cancel()
	}
	return nil
}

func (s *cancelSink) Close(context.Context) error { return nil }

func TestGraphFailures(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		op      func(memory.Allocator) *splitOp
		sink    *sumSink
		wantErr string
	}{
		{"operator error", func(m memory.Allocator) *splitOp { return &splitOp{mem: m, fail: boom} }, &sumSink{}, "split: boom"},
		{"operator panic", func(m memory.Allocator) *splitOp { return &splitOp{mem: m, panics: true} }, &sumSink{}, "split: panic"},
		{"sink error", func(m memory.Allocator) *splitOp { return &splitOp{mem: m} }, &sumSink{fail: boom}, "s: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			g := engine.NewGraph("t", nil)
			src := g.AddSource("a", &countSource{mem: mem, n: -1, batch: 10}, nil)
			split := g.AddOperator("split", tt.op(mem), nil)
			s := g.AddSink("s", tt.sink, nil)
			_ = g.Connect(src, 0, split)
			_ = g.Connect(split, 0, s)
			err := g.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestGraphConnectChecks(t *testing.T) {
	g := engine.NewGraph("t", nil)
	src := g.AddSource("a", &countSource{n: 1, batch: 1}, nil)
	s := g.AddSink("s", &sumSink{}, nil)
	if err := g.Connect(src, 1, s); err == nil {
		t.Fatal("connecting an undeclared port succeeded")
	}
	if err := g.Connect(s, 0, src); err == nil {
		t.Fatal("connecting into a source succeeded")
	}
}

// ackSource emits n single-row batches, each with its own Ack counting into
// acked.
type ackSource struct {
	mem   memory.Allocator
	n     int
	acked *atomic.Int64
}

func (s *ackSource) Schema() *engine.Schema { return testSchema }

func (s *ackSource) Run(ctx context.Context, emit engine.Emit) error {
	for i := 0; i < s.n; i++ {
		ack := engine.NewAck(func() { s.acked.Add(1) })
		if err := emit(enginetest.Record(s.mem, testSchema, enginetest.Row{int64(i), float64(i)}), ack); err != nil {
			return err
		}
	}
	return nil
}

func TestGraphAcks(t *testing.T) {
	tests := []struct {
		name      string
		sinkFail  error
		wantAcked int64
	}{
		// Even rows reach two sinks, odd rows go to an unread port (dropped
		// deliberately): every input is acknowledged once.
		{"all durable or dropped", nil, 100},
		// A failing sink never releases its shares: nothing it received is
		// acknowledged.
		{"sink failure", errors.New("disk full"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			var acked atomic.Int64
			g := engine.NewGraph("t", nil)
			src := g.AddSource("a", &ackSource{mem: mem, n: 100, acked: &acked}, nil)
			split := g.AddOperator("split", &splitOp{mem: mem}, nil)
			s1 := g.AddSink("s1", &sumSink{fail: tt.sinkFail}, nil)
			s2 := g.AddSink("s2", &sumSink{fail: tt.sinkFail}, nil)
			_ = g.Connect(src, 0, split)
			_ = g.Connect(split, 0, s1)
			_ = g.Connect(split, 0, s2)
			err := g.Run(context.Background())
			if (err != nil) != (tt.sinkFail != nil) {
				t.Fatalf("Run: %v", err)
			}
			if got := acked.Load(); got != tt.wantAcked {
				t.Fatalf("%d inputs acknowledged, want %d", got, tt.wantAcked)
			}
		})
	}
}

func TestAckNilAndOverRelease(t *testing.T) {
	var a *engine.Ack
	a.Add(3)
	a.Done() // nil is a no-op
	n := 0
	b := engine.NewAck(func() { n++ })
	b.Add(2)
	b.Done()
	b.Done()
	if n != 0 || b.Pending() != 1 {
		t.Fatalf("callback ran early: n=%d pending=%d", n, b.Pending())
	}
	b.Done()
	if n != 1 {
		t.Fatalf("callback ran %d times, want 1", n)
	}
}

// nilOp emits a batch without a record for every input, then drops it.
type nilOp struct{}

func (nilOp) Outputs() []engine.Port { return []engine.Port{{Schema: testSchema}} }
func (nilOp) Process(b engine.Batch, emit engine.PortEmit) error {
	b.Release()
	return emit(0, engine.Batch{})
}
func (nilOp) Flush(engine.PortEmit) error { return nil }
func (nilOp) Close() error                { return nil }

// An operator emitting a batch with no record still lets its input be
// acknowledged.
func TestGraphAckNilRecord(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var acked atomic.Int64
	g := engine.NewGraph("t", nil)
	src := g.AddSource("a", &ackSource{mem: mem, n: 10, acked: &acked}, nil)
	op := g.AddOperator("nil", nilOp{}, nil)
	s := g.AddSink("s", &sumSink{}, nil)
	_ = g.Connect(src, 0, op)
	_ = g.Connect(op, 0, s)
	if err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := acked.Load(); got != 10 {
		t.Fatalf("%d of 10 inputs acknowledged", got)
	}
}

// blockSink waits in Write until its context is done (a full disk that
// never frees).
type blockSink struct{ entered chan struct{} }

func (s *blockSink) Write(ctx context.Context, b engine.Batch) error {
	defer b.Release()
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *blockSink) Close(ctx context.Context) error { return ctx.Err() }

// TestGraphStopGivesUpWaitingWrites: a sink waiting for space kept a
// stopping run from ever ending. Once stopping, a waiting write is given
// up after the write deadline: the run ends without an error, the input is
// left unacknowledged, and the sink is closed with a live context.
func TestGraphStopGivesUpWaitingWrites(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var acked atomic.Int64
	g := engine.NewGraph("t", nil)
	g.WriteDeadline = 20 * time.Millisecond
	src := g.AddSource("a", &ackSource{mem: mem, n: 1, acked: &acked}, nil)
	sink := &blockSink{entered: make(chan struct{}, 1)}
	_ = g.Connect(src, 0, g.AddSink("s", sink, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-sink.entered
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the run did not end")
	}
	if acked.Load() != 0 {
		t.Fatal("the given-up input was acknowledged")
	}
}
