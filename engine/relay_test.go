package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
)

// seqSink records the v values it is given, in order.
type seqSink struct {
	mu     sync.Mutex
	vals   []float64
	closed int
}

func (s *seqSink) Write(_ context.Context, b engine.Batch) error {
	defer b.Release()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vals = append(s.vals, b.Rec.Column(1).(*array.Float64).Float64Values()...)
	return nil
}

func (s *seqSink) Close(context.Context) error { s.mu.Lock(); s.closed++; s.mu.Unlock(); return nil }

func (s *seqSink) len() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.vals) }

func waitRows(t *testing.T, s *seqSink, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("sink has %d rows, want %d", s.len(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRelayHandover moves a running source, an operator and a sink from
// one graph to the next: every row the source produced arrives once, in
// order, the operator is neither flushed nor closed by the first graph and
// the sink is not closed by it.
func TestRelayHandover(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	relay := engine.NewRelay(&countSource{mem: mem, n: -1, batch: 7})
	op := &splitOp{mem: mem}
	sink := &seqSink{}

	build := func() (*engine.Graph, *engine.Node, *engine.Node) {
		g := engine.NewGraph("g", nil)
		src := g.AddSource("src", relay.Tap(), nil)
		o := g.AddOperator("split", op, nil)
		s := g.AddSink("out", sink, nil)
		if err := g.Connect(src, 0, o); err != nil {
			t.Fatal(err)
		}
		if err := g.Connect(o, 0, s); err != nil {
			t.Fatal(err)
		}
		return g, o, s
	}
	run := func(g *engine.Graph) (context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx) }()
		return cancel, done
	}

	g1, o1, s1 := build()
	cancel1, done1 := run(g1)
	waitRows(t, sink, 500)
	relay.Handover()
	g1.Handover(o1)
	g1.Handover(s1)
	cancel1()
	if err := <-done1; err != nil {
		t.Fatal(err)
	}
	if op.flushed.Load() || op.closed != 0 || sink.closed != 0 {
		t.Fatalf("the first graph flushed (%v) or closed (op %d, sink %d) what it handed over", op.flushed.Load(), op.closed, sink.closed)
	}
	handed := sink.len()

	g2, _, _ := build()
	cancel2, done2 := run(g2)
	waitRows(t, sink, handed+500)
	cancel2()
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
	if !op.flushed.Load() || op.closed != 1 || sink.closed != 1 {
		t.Fatalf("the second graph's stop: flushed %v, op closed %d, sink closed %d", op.flushed.Load(), op.closed, sink.closed)
	}
	if err := relay.Stop(); err != nil {
		t.Fatal(err)
	}
	// Even values 0, 2, 4, ... each once and in order, then the flush row.
	vals := sink.vals
	if vals[len(vals)-1] != -1 {
		t.Fatalf("last row %v, want the flush row -1", vals[len(vals)-1])
	}
	for i, v := range vals[:len(vals)-1] {
		if v != float64(2*i) {
			t.Fatalf("row %d is %v, want %d (lost or repeated across the handover)", i, v, 2*i)
		}
	}
}

// TestRelayStopWhileDetached stops a relay whose source waits for a graph
// that never comes: its waiting emit gives up and the source returns.
func TestRelayStopWhileDetached(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	relay := engine.NewRelay(&countSource{mem: mem, n: -1, batch: 3})
	sink := &seqSink{}
	g := engine.NewGraph("g", nil)
	src := g.AddSource("src", relay.Tap(), nil)
	s := g.AddSink("out", sink, nil)
	if err := g.Connect(src, 0, s); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	waitRows(t, sink, 30)
	relay.Handover()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := relay.Stop(); err != nil {
		t.Fatal(err)
	}
	// A tap of a stopped relay ends at once.
	if err := relay.Tap().Run(context.Background(), func(rec arrow.RecordBatch, _ *engine.Ack) error { rec.Release(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// TestRelayHandoverBeforeAttach hands a source over through a graph that
// is stopped before its tap ever attached (two switches in quick
// succession): the source keeps running for the third graph instead of
// being stopped by the second.
func TestRelayHandoverBeforeAttach(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	relay := engine.NewRelay(&countSource{mem: mem, n: -1, batch: 5})
	sink := &seqSink{}
	graph := func() (*engine.Graph, *engine.Node) {
		g := engine.NewGraph("g", nil)
		src := g.AddSource("src", relay.Tap(), nil)
		s := g.AddSink("out", sink, nil)
		if err := g.Connect(src, 0, s); err != nil {
			t.Fatal(err)
		}
		return g, s
	}
	g1, s1 := graph()
	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- g1.Run(ctx1) }()
	waitRows(t, sink, 50)
	relay.Handover()
	g1.Handover(s1)
	cancel1()
	if err := <-done1; err != nil {
		t.Fatal(err)
	}
	// The second graph is stopped before it runs.
	g2, s2 := graph()
	relay.Handover()
	g2.Handover(s2)
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := g2.Run(ctx2); err != nil {
		t.Fatal(err)
	}
	n := sink.len()
	g3, _ := graph()
	ctx3, cancel3 := context.WithCancel(context.Background())
	done3 := make(chan error, 1)
	go func() { done3 <- g3.Run(ctx3) }()
	waitRows(t, sink, n+50)
	cancel3()
	if err := <-done3; err != nil {
		t.Fatal(err)
	}
	for i, v := range sink.vals {
		if v != float64(i) {
			t.Fatalf("row %d is %v: lost or repeated across the handovers", i, v)
		}
	}
}
