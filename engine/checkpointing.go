package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// CheckpointOptions turns checkpoints on for a graph (see
// Graph.Checkpoints).
type CheckpointOptions struct {
	// Store keeps the checkpoints.
	Store CheckpointStore
	// Interval is the time between two checkpoints; zero means
	// DefaultCheckpointInterval.
	Interval time.Duration
	// Continue is set for a graph that continues the state of components
	// handed over by a graph that stopped for a release switch: it takes a
	// checkpoint of that state as it starts instead of recovering the
	// newest one from Store.
	Continue bool
	// OnCheckpoint, when set, is called after every checkpoint is saved and
	// committed (tests and metrics), with the time the sources were held.
	OnCheckpoint func(c *Checkpoint, paused time.Duration)
	// OnFailure, when set, is called with the error of every checkpoint
	// attempt that could not be taken or saved (health alerts). The graph
	// goes on and tries again (see RetryMax and HoldAfter); only the last
	// checkpoint of a stopping graph fails the run.
	OnFailure func(err error)
	// RetryMax bounds the wait before the next attempt after failed ones:
	// the wait doubles from Interval at every failure in a row up to
	// RetryMax. Zero means 16 × Interval, at most a minute (and at least
	// Interval).
	RetryMax time.Duration
	// HoldAfter is the number of failed attempts in a row after which the
	// sources are held (nothing new is read, acknowledged or advanced)
	// until a checkpoint succeeds, so that neither the input a crash
	// would replay nor the output held for the next checkpoint grows
	// without bound. Zero means DefaultCheckpointHoldAfter; negative,
	// never.
	HoldAfter int
}

// DefaultCheckpointHoldAfter is the default CheckpointOptions.HoldAfter.
const DefaultCheckpointHoldAfter = 5

// finishedKind is the state kind a checkpoint records for an operator
// that had flushed at the end of its input.
const finishedKind = "engine.finished"

// DefaultCheckpointInterval is the default CheckpointOptions.Interval.
const DefaultCheckpointInterval = 5 * time.Second

// Checkpoints makes the graph take checkpoints (see Checkpoint): it
// recovers from the newest one in opts.Store as Run starts, takes one every
// opts.Interval, and a last one when Run stops on a cancelled context. A
// graph stopped that way does not flush its operators: what they hold is
// in the last checkpoint and the next run continues it. Every source must
// implement Replayable. Call it before Run.
func (g *Graph) Checkpoints(opts CheckpointOptions) error {
	if opts.Store == nil {
		return errors.New("checkpoints: no store")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultCheckpointInterval
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = min(16*opts.Interval, time.Minute)
	}
	opts.RetryMax = max(opts.RetryMax, opts.Interval)
	if opts.HoldAfter == 0 {
		opts.HoldAfter = DefaultCheckpointHoldAfter
	}
	for _, n := range g.nodes {
		if n.kind == sourceNode && replayableOf(n.src) == nil {
			return fmt.Errorf("checkpoints: source %s cannot produce its input again (it is neither replayable nor logged)", n.Name)
		}
	}
	c := &checkpointing{opts: opts, final: make(chan struct{})}
	c.flight.cond = sync.NewCond(&c.flight.mu)
	g.ckpt = c
	return nil
}

// replayableOf returns the Replayable of a source, looking through a
// relay's tap, or nil.
func replayableOf(s Source) Replayable {
	if t, ok := s.(*tap); ok {
		s = t.r.src
	}
	r, _ := s.(Replayable)
	return r
}

// checkpointing is the checkpoint coordinator of a running graph.
//
// A checkpoint is a cut between two emits of every source: the gate
// (held shared by every emit, exclusively by the coordinator) stops the
// sources, the flight count says when every batch they emitted has been
// processed by every operator and written by every sink, and the lock of
// every operator and sink makes sure none is in the middle of a Flush.
// Then every operator's state, every source's position and every sink's
// mark describe the same cut.
type checkpointing struct {
	opts CheckpointOptions
	// next is the epoch of the next checkpoint: 0 for the first one, the
	// epoch of the last one recovered or saved plus one after.
	next uint64
	// tainted is set once a component failed to process or write a batch
	// (a write given up at a stop included): no later cut is consistent.
	tainted atomic.Bool

	gate   sync.RWMutex
	flight flight
	// holding is set while the coordinator holds the gate between
	// attempts, after HoldAfter failed ones (coordinator only).
	holding bool
	// failures counts the failed attempts since the last checkpoint
	// (coordinator only).
	failures int

	// sinksDrained counts the sinks that have not yet reached the end of
	// their input; final is closed once the last checkpoint is taken (or
	// given up), after which those sinks close.
	sinksDrained sync.WaitGroup
	final        chan struct{}
}

// flight counts batches emitted and not yet fully processed by their
// consumer; cond is signalled when the count drops to zero.
type flight struct {
	mu   sync.Mutex
	cond *sync.Cond
	n    int64
}

func (f *flight) add(k int) {
	f.mu.Lock()
	f.n += int64(k)
	f.mu.Unlock()
}

func (f *flight) done() {
	f.mu.Lock()
	f.n--
	if f.n == 0 {
		f.cond.Broadcast()
	}
	f.mu.Unlock()
}

func (f *flight) zero() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n == 0
}

func (f *flight) waitZero() {
	f.mu.Lock()
	for f.n > 0 {
		f.cond.Wait()
	}
	f.mu.Unlock()
}

// recover restores the newest checkpoint, or takes the first one when there
// is none (or when the graph continues handed-over state). It runs before
// any component starts.
func (g *Graph) recoverCheckpoint(ctx context.Context) error {
	c := g.ckpt
	for _, n := range g.nodes {
		if n.kind == sourceNode {
			n.rep = replayableOf(n.src)
			if t, ok := n.src.(*tap); ok {
				// A running source handed over: it starts after the last
				// record the previous graph took, not after the one it may
				// be waiting to emit.
				n.pos = t.r.position(n.rep)
			} else {
				n.pos = n.rep.Position()
			}
		}
	}
	cp, err := c.opts.Store.Load()
	switch {
	case errors.Is(err, ErrNoValidCheckpoint):
		// Nothing valid to recover: start afresh, and say what that costs.
		g.log.Error("checkpoint: no valid checkpoint to recover from; starting with empty state and every source from its start (output of earlier runs may be written or delivered again)", "err", err)
		cp = nil
	case err != nil:
		// The checkpoints could not be read (I/O, permissions, size):
		// they may be fine, and starting empty would repeat output.
		return fmt.Errorf("checkpoint: cannot read the checkpoints to recover from: %w", err)
	}
	switch {
	case cp != nil && !c.opts.Continue:
		return g.restore(ctx, cp)
	case cp != nil:
		// The state handed over is newer than any checkpoint: the first
		// checkpoint of this graph follows the newest one.
		c.next = cp.Epoch + 1
	}
	// The first checkpoint: the state as the run starts.
	cp, err = g.cut(ctx, !c.opts.Continue)
	if err != nil {
		return err
	}
	return g.commit(cp)
}

// restore applies a checkpoint to the graph's components.
func (g *Graph) restore(ctx context.Context, cp *Checkpoint) error {
	c := g.ckpt
	c.next = cp.Epoch + 1
	ctx = context.WithoutCancel(ctx)
	// The sources first: the steps' state is a cut only if every source
	// that fed it continues at its position.
	continues, claimed, fresh := true, 0, 0
	for _, n := range g.nodes {
		if n.kind != sourceNode {
			continue
		}
		pos, ok := cp.Sources[n.Name]
		if !ok {
			fresh++
			g.log.Warn("checkpoint: the source is new; it starts where it would without a checkpoint", "source", n.Name)
			continue
		}
		claimed++
		if err := n.rep.ResumeAt(pos); err != nil {
			continues = false
			g.log.Error("checkpoint: the source refused its position; it starts where it would without a checkpoint", "source", n.Name, "err", err)
			continue
		}
		n.pos = pos
	}
	if fresh > 0 && claimed < len(cp.Sources) {
		// A source renamed (or replaced): its input comes again.
		continues = false
	}
	if !continues {
		g.log.Error("checkpoint: a source does not continue where the checkpoint left it, so its input comes again: every step starts empty instead of counting it twice (outputs before the checkpoint may be delivered again)")
	}
	for _, n := range g.nodes {
		switch n.kind {
		case sourceNode:
		case operatorNode:
			if !continues {
				continue
			}
			st, ok := cp.States[n.Name]
			if !ok {
				if _, stateful := n.op.(Stateful); stateful && len(cp.States) > 0 {
					g.log.Warn("checkpoint: the checkpoint holds no state for the step (new or renamed?); it starts empty", "step", n.Name)
				}
				continue
			}
			if st.Kind == finishedKind {
				n.flushed = true
				continue
			}
			s, ok := n.op.(Stateful)
			if !ok {
				g.log.Warn("checkpoint: the step keeps no state now; its checkpointed state is ignored", "step", n.Name)
				continue
			}
			if err := s.Restore(st); err != nil {
				g.log.Warn("checkpoint: the step refused its checkpointed state (its configuration changed?); it starts empty", "step", n.Name, "err", err)
			}
		case sinkNode:
			cm, ok := n.sink.(Committer)
			if !ok {
				continue
			}
			mark, ok := cp.Sinks[n.Name]
			if !ok {
				// A sink new in this configuration: what it holds is committed.
				g.log.Warn("checkpoint: the checkpoint holds no mark for the sink (new or renamed?); what it holds is kept as it is", "sink", n.Name)
				var err error
				if mark, err = cm.Prepare(ctx); err != nil {
					return fmt.Errorf("checkpoint: sink %s: %w", n.Name, err)
				}
			} else if err := cm.Rollback(mark); err != nil {
				return fmt.Errorf("checkpoint: sink %s: roll back to the checkpoint: %w", n.Name, err)
			}
			if err := cm.Commit(mark); err != nil {
				return fmt.Errorf("checkpoint: sink %s: %w", n.Name, err)
			}
		}
	}
	g.reportOrphans(cp)
	g.log.Info("checkpoint: recovered", "epoch", cp.Epoch, "taken", cp.Time.Format(time.RFC3339Nano))
	return nil
}

// reportOrphans logs the entries of a recovered checkpoint that no
// component of the graph took: a component removed or renamed since the
// checkpoint was taken. A rename is a removal and an addition, so the
// renamed component started without them.
func (g *Graph) reportOrphans(cp *Checkpoint) {
	has := map[nodeKind]map[string]bool{}
	for _, n := range g.nodes {
		if has[n.kind] == nil {
			has[n.kind] = map[string]bool{}
		}
		has[n.kind][n.Name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(cp.Sources)) {
		if !has[sourceNode][name] {
			g.log.Warn("checkpoint: the checkpoint holds the position of a source that is not in the pipeline (removed or renamed?); it is dropped", "source", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cp.States)) {
		if !has[operatorNode][name] {
			g.log.Warn("checkpoint: the checkpoint holds the state of a step that is not in the pipeline (removed or renamed?); it is dropped", "step", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cp.Sinks)) {
		if !has[sinkNode][name] {
			g.log.Warn("checkpoint: the checkpoint holds the mark of a sink that is not in the pipeline (removed or renamed?); what it wrote after the checkpoint is not rolled back and a renamed sink may write it again", "sink", name)
		}
	}
}

// cut reads one consistent cut of the graph: it must be called with the
// sources held and nothing in flight (or before the graph runs). fresh
// leaves the operators' states out (they are as built).
func (g *Graph) cut(ctx context.Context, fresh bool) (*Checkpoint, error) {
	c := g.ckpt
	ctx = context.WithoutCancel(ctx)
	cp := &Checkpoint{
		Epoch:   c.next,
		Time:    time.Now(),
		Sources: map[string][]byte{},
		States:  map[string]*State{},
		Sinks:   map[string][]byte{},
	}
	for _, n := range g.nodes {
		switch n.kind {
		case sourceNode:
			cp.Sources[n.Name] = n.pos
		case operatorNode:
			if n.finished {
				// Flushed at the end of its input: a recovery must not
				// flush it again.
				cp.States[n.Name] = &State{Kind: finishedKind}
				continue
			}
			s, ok := n.op.(Stateful)
			if !ok || fresh {
				continue
			}
			st, err := s.Snapshot()
			if err != nil {
				return nil, fmt.Errorf("checkpoint: step %s: %w", n.Name, err)
			}
			cp.States[n.Name] = st
		case sinkNode:
			cm, ok := n.sink.(Committer)
			if !ok {
				continue
			}
			mark, err := cm.Prepare(ctx)
			if err != nil {
				return nil, fmt.Errorf("checkpoint: sink %s: %w", n.Name, err)
			}
			cp.Sinks[n.Name] = mark
		}
	}
	return cp, nil
}

// commit makes the positions of the sources that log their input durable
// (Syncer), saves cp and then lets the sinks deliver what it covers and
// the sources forget the input before it.
func (g *Graph) commit(cp *Checkpoint) error {
	c := g.ckpt
	for _, n := range g.nodes {
		if sy, ok := n.rep.(Syncer); ok && n.kind == sourceNode {
			if err := sy.Sync(); err != nil {
				return fmt.Errorf("checkpoint: source %s: make its position durable for epoch %d: %w", n.Name, cp.Epoch, err)
			}
		}
	}
	if err := c.opts.Store.Save(cp); err != nil {
		return fmt.Errorf("checkpoint: save epoch %d: %w", cp.Epoch, err)
	}
	c.next = cp.Epoch + 1
	for _, n := range g.nodes {
		switch n.kind {
		case sinkNode:
			if cm, ok := n.sink.(Committer); ok {
				if mark, ok := cp.Sinks[n.Name]; ok {
					if err := cm.Commit(mark); err != nil {
						return fmt.Errorf("checkpoint: sink %s: commit epoch %d: %w", n.Name, cp.Epoch, err)
					}
				}
			}
		case sourceNode:
			n.rep.Committed(cp.Sources[n.Name])
		}
	}
	return nil
}

// hold stops the graph at a cut: sources held at the gate, nothing in
// flight, every operator and sink idle and locked. It returns the function
// that lets it go on.
func (g *Graph) hold() (release func()) {
	c := g.ckpt
	gated := c.holding
	if !gated {
		c.gate.Lock()
	}
	for {
		c.flight.waitZero()
		locked := make([]*Node, 0, len(g.nodes))
		ok := true
		for _, n := range g.nodes {
			if n.kind == sourceNode {
				continue
			}
			if !n.mu.TryLock() {
				ok = false
				break
			}
			locked = append(locked, n)
		}
		if ok && c.flight.zero() {
			return func() {
				for _, n := range locked {
					n.mu.Unlock()
				}
				if !gated {
					c.gate.Unlock()
				}
			}
		}
		for _, n := range locked {
			n.mu.Unlock()
		}
		// An operator is flushing at the end of its input: let it go on.
		time.Sleep(time.Millisecond)
	}
}

// errNoCut is returned by take when the graph holds no cut to checkpoint.
var errNoCut = errors.New("checkpoint: no consistent cut (a component failed)")

// take takes one checkpoint of the running graph. It returns errNoCut,
// taking none, once a component failed.
func (g *Graph) take(ctx context.Context) error {
	start := time.Now()
	release := g.hold()
	if g.failed.Load() || g.ckpt.tainted.Load() {
		// A component failed or gave a write up: what the graph holds
		// now is no cut of anything (an operator may have flushed, a
		// batch been lost).
		release()
		return errNoCut
	}
	cp, err := g.cut(ctx, false)
	release()
	paused := time.Since(start)
	if err != nil {
		return err
	}
	if err := g.commit(cp); err != nil {
		return err
	}
	if f := g.ckpt.opts.OnCheckpoint; f != nil {
		f(cp, paused)
	}
	return nil
}

// coordinate takes a checkpoint every interval until every source has
// returned, then the last one (unless the graph failed or stops for a
// release switch), and releases the sinks waiting for it. A failed
// checkpoint does not stop the graph: nothing it would have committed is
// committed (the sinks keep holding their output, the sources keep the
// input after the last checkpoint), and the next attempt follows after a
// wait that doubles with every failure in a row; after HoldAfter of them
// the sources are held until an attempt succeeds. stopping is closed
// when the sources are told to stop.
func (g *Graph) coordinate(ctx context.Context, stopping <-chan struct{}, sourcesDone <-chan struct{}) {
	c := g.ckpt
	defer close(c.final)
	t := time.NewTimer(c.opts.Interval)
	defer t.Stop()
	defer c.letGo()
	stopped := false
	for {
		select {
		case <-t.C:
			if !g.failed.Load() {
				g.attempt(ctx, stopped)
			}
			t.Reset(c.wait())
			continue
		case <-stopping:
			// Held sources must see the stop.
			c.letGo()
			stopping, stopped = nil, true
			continue
		case <-sourcesDone:
		}
		break
	}
	c.letGo()
	// Every source has returned; wait for the sinks to reach the end of
	// their input (operators stopping on a cancelled context keep their
	// state for this checkpoint instead of flushing it).
	c.sinksDrained.Wait()
	if g.failed.Load() || g.switching.Load() || g.keepWriting.Load() {
		return
	}
	if err := g.take(ctx); err != nil && !errors.Is(err, errNoCut) {
		g.failCheckpoint(err)
	}
}

// attempt takes a checkpoint of the running graph. A failure is reported
// (OnFailure) and counted, and holds the sources once HoldAfter attempts in
// a row failed (unless the sources are stopping); a success lets them go
// on.
func (g *Graph) attempt(ctx context.Context, stopping bool) {
	c := g.ckpt
	err := g.take(ctx)
	if errors.Is(err, errNoCut) {
		// The graph fails and stops: its sources are let go then.
		return
	}
	if err == nil {
		if c.failures > 0 {
			g.log.Info("checkpoint: taken again", "failed_attempts", c.failures)
		}
		c.failures = 0
		c.letGo()
		return
	}
	c.failures++
	if f := c.opts.OnFailure; f != nil {
		f(err)
	}
	hold := c.opts.HoldAfter > 0 && c.failures >= c.opts.HoldAfter
	g.log.Error("checkpoint failed; the pipeline goes on without committing and tries again",
		"err", err, "failed_attempts", c.failures, "retry_in", c.wait(), "sources_held", hold)
	if hold && !c.holding && !stopping {
		g.log.Warn("checkpoint: the sources are held until a checkpoint succeeds", "failed_attempts", c.failures)
		c.gate.Lock()
		c.holding = true
	}
}

// letGo lets the sources held after failed attempts go on (coordinator
// only).
func (c *checkpointing) letGo() {
	if c.holding {
		c.holding = false
		c.gate.Unlock()
	}
}

// wait is the time until the next attempt: the interval, doubled for every
// failed attempt in a row, up to RetryMax.
func (c *checkpointing) wait() time.Duration {
	d := c.opts.Interval
	for i := 0; i < c.failures && d < c.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, c.opts.RetryMax)
}

func (g *Graph) failCheckpoint(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
		g.log.Error("checkpoint failed; stopping sources and draining", "err", err)
	}
	g.mu.Unlock()
	if f := g.ckpt.opts.OnFailure; f != nil {
		f(err)
	}
	g.failed.Store(true)
	g.cancel()
}
