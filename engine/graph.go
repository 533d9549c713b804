package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/reugn/go-streams"
	"github.com/reugn/go-streams/flow"
)

// inletDepth is the number of batches a component's inlet holds before its
// sender blocks. A small depth lets neighbouring stages overlap without
// letting memory grow with the input rate.
const inletDepth = 4

// Node is a component placed in a Graph.
type Node struct {
	Name string
	// Counters of the component; the graph adds "rows_in" and "rows_out".
	Counters *Counters

	kind   nodeKind
	src    Source
	srcIdx int
	op     Operator
	sink   Sink
	ports  []*outPort
	inputs []streams.Flow

	rowsIn, rowsOut *atomic.Int64
	// handover is set when the component moves to another graph as this
	// one stops (see Graph.Handover).
	handover atomic.Bool
	// replaced is set when a successor takes over the sink's durable state
	// (see Graph.Replace).
	replaced atomic.Bool
	// keepOpen is set on a sink that stays open when the graph's sources
	// end (see Graph.KeepOpen).
	keepOpen atomic.Bool
	// retire is set on an operator a release switch takes away or
	// replaces (see Graph.Retire); retired counts what its Retire ended.
	retire  atomic.Pointer[retirement]
	retired atomic.Int64

	// mu is held by an operator or sink while it processes, and by the
	// checkpoint coordinator while it reads a cut (see checkpointing);
	// finished is set, under mu, once an operator has flushed and closed.
	mu       sync.Mutex
	finished bool
	// flushed is set on an operator restored from a checkpoint taken
	// after it had flushed: it is not flushed again.
	flushed bool
	// rep and pos are a source's Replayable and its position after its
	// last emit, in a graph that takes checkpoints (guarded by the gate).
	rep Replayable
	pos []byte
	// portsOnce closes the output ports once.
	portsOnce sync.Once
}

// retirement is the successor given to Graph.Retire.
type retirement struct{ next Operator }

type nodeKind int

const (
	sourceNode nodeKind = iota
	operatorNode
	sinkNode
)

type outPort struct {
	name      string
	consumers []*Node
	outlet    *flow.PassThrough
	fan       []streams.Flow
}

// Graph is a directed acyclic graph of sources, operators and sinks. Build
// it with AddSource, AddOperator, AddSink and Connect, then call Run once.
type Graph struct {
	Name string
	// WriteDeadline bounds how long sinks may keep a write waiting (for a
	// full quota or disk, a slow broker) once the run is stopping: then
	// the waiting write is given up, its input is not acknowledged (the
	// sender keeps it, a resuming source reads it again) and the sink
	// closes. Zero means DefaultWriteDeadline.
	WriteDeadline time.Duration
	log           *slog.Logger
	nodes         []*Node

	sources int
	mu      sync.Mutex
	err     error
	cancel  context.CancelFunc
	failed  atomic.Bool
	started atomic.Bool
	// keepWriting: sinks never give a waiting write up (KeepWriting).
	keepWriting atomic.Bool
	// switching: the graph stops for a release switch (Switching).
	switching atomic.Bool
	// ckpt is the checkpoint coordinator, or nil (see Checkpoints).
	ckpt *checkpointing
	// kept are the sinks left open when the graph ended (KeepOpen),
	// guarded by mu.
	kept []*Node
}

// DefaultWriteDeadline is the default Graph.WriteDeadline.
const DefaultWriteDeadline = 15 * time.Second

// NewGraph returns an empty graph.
func NewGraph(name string, log *slog.Logger) *Graph {
	if log == nil {
		log = slog.Default()
	}
	return &Graph{Name: name, log: log}
}

func (g *Graph) add(n *Node, ports []Port) *Node {
	if n.Counters == nil {
		n.Counters = NewCounters()
	}
	if n.kind != sourceNode {
		n.rowsIn = n.Counters.Counter("rows_in")
	}
	if n.kind != sinkNode {
		n.rowsOut = n.Counters.Counter("rows_out")
	}
	for _, p := range ports {
		n.ports = append(n.ports, &outPort{name: p.Name})
	}
	g.nodes = append(g.nodes, n)
	return n
}

// AddSource places a source. Its batches carry the source's index (in order
// of addition) in Batch.Source.
func (g *Graph) AddSource(name string, s Source, c *Counters) *Node {
	n := &Node{Name: name, Counters: c, kind: sourceNode, src: s, srcIdx: g.sources}
	g.sources++
	return g.add(n, []Port{{Schema: s.Schema()}})
}

// AddOperator places an operator.
func (g *Graph) AddOperator(name string, op Operator, c *Counters) *Node {
	return g.add(&Node{Name: name, Counters: c, kind: operatorNode, op: op}, op.Outputs())
}

// AddSink places a sink.
func (g *Graph) AddSink(name string, s Sink, c *Counters) *Node {
	return g.add(&Node{Name: name, Counters: c, kind: sinkNode, sink: s}, nil)
}

// Nodes returns the graph's nodes in order of addition.
func (g *Graph) Nodes() []*Node { return g.nodes }

// Handover marks an operator or sink whose component moves to another
// graph when this one stops: when its input has drained, an operator so
// marked is neither flushed nor closed (its state is handed over, see
// Stateful) and a sink so marked is not closed (it goes on writing for the
// next graph, its buffer and connections open) and never gives a waiting
// write up. One that broke is closed instead (see HandedOver). Call it before stopping
// the graph; the caller then owns the component.
func (g *Graph) Handover(n *Node) {
	n.handover.Store(true)
}

// HandedOver reports whether the node's component was handed over when
// its graph stopped (see Handover): false when it was never marked, or
// when it broke and was closed instead. Valid once Run has returned.
func (n *Node) HandedOver() bool { return n.handover.Load() }

// KeepWriting makes the sinks of the graph wait for their writes as it
// stops, never giving them up after WriteDeadline: the rows in flight
// would not be read again, since the graph's sources are handed over to
// another graph (see Relay) rather than stopped. A stop then waits while
// a sink holds data back (a full buffer on a dead link). Call it before
// stopping the graph.
func (g *Graph) KeepWriting() { g.keepWriting.Store(true) }

// KeepOpen marks a sink that stays open when the graph ends because its
// sources ended (it was neither stopped nor did it fail): Run returns with
// the sink open — it is written no more, and what it holds goes on being
// delivered — and CloseKept closes it. A runtime that outlives its graphs
// keeps so the sinks that carry the engine's own alerts (see AlertRoute),
// so that an alert raised after a pipeline's sources ended still has a
// sink to go through. A graph that stops, fails or switches closes the
// sink as usual. Call it before Run.
func (g *Graph) KeepOpen(n *Node) {
	if n.kind == sinkNode {
		n.keepOpen.Store(true)
	}
}

// CloseKept closes the sinks the graph left open when it ended (see
// KeepOpen) and returns the first error; a graph stopped by a release
// switch (Switching) closes them as in a switch. Call it once Run has
// returned; a second call does nothing.
func (g *Graph) CloseKept(ctx context.Context) error {
	g.mu.Lock()
	kept := g.kept
	g.kept = nil
	g.mu.Unlock()
	var errs []error
	for _, n := range kept {
		if err := n.sink.Close(g.closeContext(ctx)); err != nil {
			errs = append(errs, fmt.Errorf("graph %s: close %s: %w", g.Name, n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// closeContext is the context sinks close with: not cancelled with ctx,
// and telling a switch (InSwitch).
func (g *Graph) closeContext(ctx context.Context) context.Context {
	c := context.WithoutCancel(ctx)
	if g.switching.Load() {
		c = context.WithValue(c, switchKey{}, true)
	}
	return c
}

// Switching marks a graph stopped by a release switch while the engine's
// other graphs go on: its sinks close with a context for which InSwitch
// reports true. Call it before stopping the graph.
func (g *Graph) Switching() { g.switching.Store(true) }

type switchKey struct{}

// InSwitch reports whether a sink's Close is part of a release switch:
// the engine's other sinks keep running, so a sink waiting for them to
// close would wait in vain.
func InSwitch(ctx context.Context) bool { return ctx.Value(switchKey{}) != nil }

// Replace marks a sink that a successor built from a new configuration
// replaces as this graph stops, taking over its durable state (the buffer
// of a cloud sink, in the same directory): it closes without waiting to
// deliver what it holds, which its successor delivers. Call it before
// stopping the graph.
func (g *Graph) Replace(n *Node) {
	n.replaced.Store(true)
}

// Retire marks an operator that implements Retirer and that a release
// switch takes away (next nil) or replaces by next, an operator built from
// another configuration that continues its state: once its input has
// drained, and unless it broke, its Retire runs with next and what it
// emits flows on to the graph's sinks; then it is flushed and closed, or
// handed over (see Handover). Other operators ignore the mark. Call it
// before stopping the graph.
func (g *Graph) Retire(n *Node, next Operator) {
	n.retire.Store(&retirement{next: next})
}

// Retired returns how many records the node's Retire emitted (see
// Graph.Retire). Valid once Run has returned.
func (n *Node) Retired() int { return int(n.retired.Load()) }

// Connect feeds output port `port` of from into to. A port may feed several
// components (fan-out) and a component may read several ports (merge).
func (g *Graph) Connect(from *Node, port int, to *Node) error {
	if port < 0 || port >= len(from.ports) {
		return fmt.Errorf("graph %s: %s has no output port %d", g.Name, from.Name, port)
	}
	if to.kind == sourceNode {
		return fmt.Errorf("graph %s: source %s cannot have inputs", g.Name, to.Name)
	}
	p := from.ports[port]
	p.consumers = append(p.consumers, to)
	return nil
}

// Run executes the graph until every source has ended or ctx is cancelled,
// then drains: batches in flight are processed, operators flush what they
// hold (open windows) and sinks close. It returns the first component error.
func (g *Graph) Run(ctx context.Context) error {
	if g.started.Swap(true) {
		return fmt.Errorf("graph %s: Run called twice", g.Name)
	}
	srcCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g.cancel = cancel

	if g.ckpt != nil {
		// Before anything runs (no goroutine is started yet).
		if err := g.recoverCheckpoint(ctx); err != nil {
			g.closeUnstarted(ctx)
			return fmt.Errorf("graph %s: %w", g.Name, err)
		}
	}

	// Wire outputs: one go-streams outlet per consumed port, fanned out to
	// its consumers; each consumer merges its inputs.
	for _, n := range g.nodes {
		for _, p := range n.ports {
			switch len(p.consumers) {
			case 0:
			case 1:
				p.outlet = flow.NewPassThrough()
				p.fan = []streams.Flow{p.outlet}
			default:
				p.outlet = flow.NewPassThrough()
				p.fan = flow.FanOut(p.outlet, len(p.consumers))
			}
			for i, c := range p.consumers {
				c.inputs = append(c.inputs, p.fan[i])
			}
		}
	}

	var wg, srcs sync.WaitGroup
	for _, n := range g.nodes {
		switch n.kind {
		case sourceNode:
			srcs.Add(1)
			wg.Go(func() {
				defer srcs.Done()
				g.runSource(srcCtx, n)
			})
		case operatorNode:
			in := connectInputs(n)
			wg.Go(func() { g.runOperator(ctx, in, n) })
		case sinkNode:
			in := connectInputs(n)
			if g.ckpt != nil {
				g.ckpt.sinksDrained.Add(1)
			}
			wg.Go(func() { g.runSink(ctx, in, n) })
		}
	}
	if g.ckpt != nil {
		sourcesDone := make(chan struct{})
		go func() {
			srcs.Wait()
			close(sourcesDone)
		}()
		wg.Go(func() { g.coordinate(ctx, srcCtx.Done(), sourcesDone) })
	}
	wg.Wait()
	g.closeSources()
	g.mu.Lock()
	failed := g.err != nil
	g.mu.Unlock()
	if failed {
		// A graph that failed keeps no sink open.
		if err := g.CloseKept(ctx); err != nil {
			g.log.Warn("closing a sink failed", "err", err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// closeSources closes the sources of the graph that hold files open (an
// ingest log, see io.Closer) once they have returned; a relay closes its
// own.
func (g *Graph) closeSources() {
	for _, n := range g.nodes {
		if n.kind != sourceNode {
			continue
		}
		if c, ok := n.src.(io.Closer); ok {
			if err := c.Close(); err != nil {
				g.log.Warn("closing a source failed", "component", n.Name, "err", err)
			}
		}
	}
}

// closeUnstarted closes the operators and sinks of a graph that could not
// start.
func (g *Graph) closeUnstarted(ctx context.Context) {
	g.closeSources()
	for _, n := range g.nodes {
		switch n.kind {
		case operatorNode:
			_ = n.op.Close()
		case sinkNode:
			_ = n.sink.Close(context.WithoutCancel(ctx))
		}
	}
}

// inlet is the input side of an operator or sink, as a go-streams Sink.
type inlet struct {
	ch   chan any
	done chan struct{}
}

func newInlet() *inlet {
	return &inlet{ch: make(chan any, inletDepth), done: make(chan struct{})}
}

// In implements streams.Inlet.
func (i *inlet) In() chan<- any { return i.ch }

// AwaitCompletion implements streams.Sink.
func (i *inlet) AwaitCompletion() { <-i.done }

var _ streams.Sink = (*inlet)(nil)

// connectInputs returns a new inlet fed by n's inputs (merged when there
// are several); it is closed at once when n has none.
func connectInputs(n *Node) *inlet {
	in := newInlet()
	switch len(n.inputs) {
	case 0:
		close(in.ch)
	case 1:
		go n.inputs[0].To(in)
	default:
		go flow.Merge(n.inputs...).To(in)
	}
	return in
}

func (g *Graph) fail(n *Node, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err == nil {
		g.err = fmt.Errorf("%s: %w", n.Name, err)
		g.log.Error("component failed; stopping sources and draining", "component", n.Name, "err", err)
	}
	g.failed.Store(true)
	g.cancel()
}

// ErrStopped is returned by Emit once the pipeline has failed and no longer
// accepts data.
var ErrStopped = errors.New("pipeline stopped")

// emit sends b on port i of n, retaining the record once per extra consumer.
func (g *Graph) emit(n *Node, port int, b Batch) error {
	if b.Rec == nil {
		// Nothing to hand on: release the share it was given.
		b.Ack.Done()
		return nil
	}
	p := n.ports[port]
	n.rowsOut.Add(b.Rec.NumRows())
	if len(p.consumers) == 0 {
		b.Release()
		b.Ack.Done()
		return nil
	}
	for range len(p.consumers) - 1 {
		b.Rec.Retain()
	}
	if g.ckpt != nil {
		g.ckpt.flight.add(len(p.consumers))
	}
	b.Ack.Add(len(p.consumers) - 1)
	p.outlet.In() <- b
	return nil
}

func (g *Graph) closePorts(n *Node) {
	n.portsOnce.Do(func() {
		for _, p := range n.ports {
			if p.outlet != nil {
				close(p.outlet.In())
			}
		}
	})
}

// taint marks the graph's state as no cut of anything once a component
// failed to process or write a batch (before the batch counts as landed,
// so that no checkpoint can read the state without it).
func (g *Graph) taint(err error) {
	if err != nil && g.ckpt != nil {
		g.ckpt.tainted.Store(true)
	}
}

// landed records that a batch emitted into the graph has been processed
// by one of its consumers.
func (g *Graph) landed() {
	if g.ckpt != nil {
		g.ckpt.flight.done()
	}
}

func (g *Graph) runSource(ctx context.Context, n *Node) {
	defer g.closePorts(n)
	emit := func(rec arrow.RecordBatch, ack *Ack) error {
		if rec != nil && g.failed.Load() {
			// Not acknowledged: the sender keeps it.
			rec.Release()
			return ErrStopped
		}
		if g.ckpt == nil {
			return g.emit(n, 0, Batch{Rec: rec, Source: n.srcIdx, Ack: ack})
		}
		// Held while a checkpoint reads its cut; the position after rec
		// becomes part of the next cut together with rec.
		g.ckpt.gate.RLock()
		defer g.ckpt.gate.RUnlock()
		if err := g.emit(n, 0, Batch{Rec: rec, Source: n.srcIdx, Ack: ack}); err != nil {
			return err
		}
		if rec != nil {
			n.pos = n.rep.Position()
		}
		return nil
	}
	err := guard(func() error { return n.src.Run(ctx, emit) })
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrStopped) {
		g.fail(n, err)
	}
}

func (g *Graph) runOperator(ctx context.Context, in *inlet, n *Node) {
	defer close(in.done)
	defer g.closePorts(n)
	// current is the share of the batch being processed; everything the
	// operator emits meanwhile takes a share of it, so the input counts as
	// handled only once its results are.
	var current *Ack
	emit := func(port int, b Batch) error {
		if port < 0 || port >= len(n.ports) {
			b.Release()
			return fmt.Errorf("emit on undeclared port %d", port)
		}
		if b.Ack == nil && current != nil {
			current.Add(1)
			b.Ack = current
		}
		return g.emit(n, port, b)
	}
	broken := false
	for el := range in.ch {
		b := el.(Batch)
		if broken {
			// Never acknowledged: the sender delivers it again.
			b.Release()
			g.landed()
			continue
		}
		n.rowsIn.Add(b.Rec.NumRows())
		current = b.Ack
		b.Ack = nil
		n.mu.Lock()
		err := guard(func() error { return n.op.Process(b, emit) })
		n.mu.Unlock()
		g.taint(err)
		g.landed()
		if err != nil {
			broken = true
			g.fail(n, err)
			continue
		}
		current.Done()
		current = nil
	}
	if rt := n.retire.Load(); rt != nil && !broken {
		if r, ok := n.op.(Retirer); ok {
			var ended int
			err := guard(func() error {
				var err error
				ended, err = r.Retire(rt.next, emit)
				return err
			})
			n.retired.Store(int64(ended))
			if err != nil {
				broken = true
				g.fail(n, fmt.Errorf("retire: %w", err))
			}
		}
	}
	if n.handover.Load() && !broken {
		// Its state moves on unflushed; the new owner closes it.
		return
	}
	// An operator that broke is not handed over: it closes here.
	n.handover.Store(false)
	if c := g.ckpt; c != nil && !broken && ctx.Err() != nil && !g.failed.Load() && !g.switching.Load() {
		// A graceful stop of a graph that takes checkpoints: what the
		// operator holds goes into the last checkpoint, unflushed, and
		// the next run continues it.
		g.closePorts(n)
		<-c.final
		n.mu.Lock()
		n.finished = true
		n.mu.Unlock()
		if err := n.op.Close(); err != nil {
			g.fail(n, fmt.Errorf("close: %w", err))
		}
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.finished = true
	if !broken && !n.flushed {
		if err := guard(func() error { return n.op.Flush(emit) }); err != nil {
			g.fail(n, fmt.Errorf("flush: %w", err))
		}
	}
	if err := n.op.Close(); err != nil {
		g.fail(n, fmt.Errorf("close: %w", err))
	}
}

func (g *Graph) runSink(ctx context.Context, in *inlet, n *Node) {
	defer close(in.done)
	// Sinks keep writing while the pipeline drains after a cancel; a write
	// that waits (backpressure) is given up WriteDeadline after it.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	deadline := g.WriteDeadline
	if deadline <= 0 {
		deadline = DefaultWriteDeadline
	}
	stop := context.AfterFunc(ctx, func() {
		if g.keepWriting.Load() || n.handover.Load() {
			// The rows in flight would not be read again: wait.
			return
		}
		t := time.NewTimer(deadline)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-wctx.Done():
		}
	})
	defer stop()
	broken := false
	for el := range in.ch {
		b := el.(Batch)
		if broken {
			b.Release()
			g.landed()
			continue
		}
		n.rowsIn.Add(b.Rec.NumRows())
		ack := b.Ack
		b.Ack = nil
		n.mu.Lock()
		err := guard(func() error { return n.sink.Write(wctx, b) })
		n.mu.Unlock()
		g.taint(err)
		g.landed()
		if err != nil {
			broken = true
			if wctx.Err() != nil && ctx.Err() != nil {
				// Stopping, and the write waited past the deadline: the
				// input stays unacknowledged, which is no failure.
				g.log.Warn("stopping: a write waited past the deadline; its input is left unacknowledged", "component", n.Name, "deadline", deadline.String(), "err", err)
				continue
			}
			g.fail(n, err)
			continue
		}
		ack.Done()
	}
	if c := g.ckpt; c != nil {
		// The last checkpoint covers what the sink wrote: wait for it
		// before closing (or handing the sink over).
		c.sinksDrained.Done()
		<-c.final
	}
	if n.handover.Load() && !broken {
		// It goes on writing for the next graph.
		return
	}
	// A sink that broke is not handed over: it closes here.
	n.handover.Store(false)
	if n.keepOpen.Load() && !broken && ctx.Err() == nil && !g.failed.Load() && !g.switching.Load() && !n.replaced.Load() {
		// The sources ended: it stays open for CloseKept.
		g.mu.Lock()
		g.kept = append(g.kept, n)
		g.mu.Unlock()
		return
	}
	closeCtx := g.closeContext(ctx)
	if n.replaced.Load() {
		// Its successor delivers what it holds: close at once.
		var cancel context.CancelFunc
		closeCtx, cancel = context.WithCancel(closeCtx)
		cancel()
	}
	if err := n.sink.Close(closeCtx); err != nil {
		g.fail(n, fmt.Errorf("close: %w", err))
	}
}

// guard runs f and turns a panic into an error carrying the stack, so one
// component's bug stops its pipeline cleanly instead of the process.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return f()
}
