package pipelines

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/checkpoint"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/eventtime"
	"github.com/sluice-edge/sluice/engine/ingest"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Options tune how pipelines are built.
type Options struct {
	// Log is the parent logger; components log with pipeline and component
	// attributes.
	Log *slog.Logger
	// Mem allocates Arrow memory (default: the Go allocator).
	Mem memory.Allocator
	// DryRun builds the components only to check them: nothing is opened
	// or connected (see engine.BuildContext.DryRun). Validate sets it.
	DryRun bool
	// DataDir is where durable state lives (default "sluice-data").
	DataDir string
	// Edge identifies this engine in outgoing message IDs (default: the
	// host name).
	Edge string
	// Sources replaces the named sources with these instances instead of
	// building them from their configuration (which is still validated).
	// Embedders and the bench harness use it to feed a pipeline from
	// memory.
	Sources map[string]engine.Source
	// FromStart makes resumable sources read their input from its start,
	// forgetting their recorded positions (sluice run --from-start).
	FromStart bool
	// Shared is what the components of the pipelines built together share
	// (see engine.Shared); BuildAll makes one when it is nil.
	Shared *engine.Shared
	// Commands is the edge's command arbiter, given to the components
	// (engine.BuildContext.Commands); nil outside an edge with a control
	// section.
	Commands control.Submitter
	// FS is the file system of the pipelines' durable state (the buffers
	// of cloud-bound sinks, ingest logs, checkpoints; see
	// engine.BuildContext.FS); nil is the real disk. A test seam: crash
	// tests pass an engine/buffer/faultfs.FS.
	FS buffer.FS

	// carry is what a Runtime hands from running pipelines to the ones it
	// builds (nil outside a Runtime).
	carry *carry
}

// Pipeline is a built pipeline, ready to run.
type Pipeline struct {
	Def   *Def
	Graph *engine.Graph
	// Components lists every built component with its counters.
	Components []*Built

	ckptMu sync.Mutex
	ckpt   *CheckpointStats // nil when the pipeline takes no checkpoints
}

// CheckpointStats describes the checkpoints a pipeline took.
type CheckpointStats struct {
	// Count is the number of checkpoints saved by this run.
	Count int64
	// Epoch is the newest one's epoch and Last the time it was taken.
	Epoch uint64
	Last  time.Time
	// LastPause and MaxPause are how long checkpoints held the sources.
	LastPause, MaxPause time.Duration
	// Failures counts the checkpoints that failed, LastFailure is when
	// the last did and LastError why.
	Failures    int64
	LastFailure time.Time
	LastError   string
}

// CheckpointStats returns the pipeline's checkpoint figures, or false when
// it takes no checkpoints.
func (p *Pipeline) CheckpointStats() (CheckpointStats, bool) {
	p.ckptMu.Lock()
	defer p.ckptMu.Unlock()
	if p.ckpt == nil {
		return CheckpointStats{}, false
	}
	return *p.ckpt, true
}

func (p *Pipeline) checkpointed(c *engine.Checkpoint, paused time.Duration) {
	p.ckptMu.Lock()
	defer p.ckptMu.Unlock()
	st := p.ckpt
	st.Count++
	st.Epoch, st.Last, st.LastPause = c.Epoch, c.Time, paused
	st.MaxPause = max(st.MaxPause, paused)
}

func (p *Pipeline) checkpointFailed(err error) {
	p.ckptMu.Lock()
	defer p.ckptMu.Unlock()
	st := p.ckpt
	st.Failures++
	st.LastFailure, st.LastError = time.Now(), err.Error()
}

// Built is one constructed component.
type Built struct {
	Def      *ComponentDef
	Node     *engine.Node
	Counters *engine.Counters
	// Outputs are the output ports (sources have one, sinks none).
	Outputs []engine.Port

	op   engine.Operator
	sink engine.Sink
	// src is the source when it holds files open (an ingest log).
	src io.Closer
	// relay runs the source apart from the graph (in a Runtime).
	relay *engine.Relay
	// carried is set when the component was handed over from a running
	// pipeline: a failed build must not close it.
	carried bool
	// handedOver is set on a running component a switch hands to the
	// next graph.
	handedOver bool
	// fp identifies the component's configuration, inputs and input
	// schema, and the files it was built from (engine.FileDependent):
	// equal fingerprints build equal components.
	fp string
	// in is the component's input schema (nil for sources).
	in *engine.Schema
}

// Build constructs every component of d and wires the graph. It checks the
// stream references (unknown stream, unknown port, cycles) and the schemas
// flowing between components. All problems are returned with locations; no
// graph is returned when there is any.
func Build(d *Def, opts Options) (*Pipeline, spec.Errors) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Mem == nil {
		opts.Mem = memory.DefaultAllocator
	}
	if opts.DataDir == "" {
		opts.DataDir = "sluice-data"
	}
	if opts.Edge == "" {
		opts.Edge = defaultEdge()
	}
	if opts.Shared == nil {
		opts.Shared = engine.NewShared()
	}
	plog := opts.Log.With("pipeline", d.Name)
	p := &Pipeline{Def: d, Graph: engine.NewGraph(d.Name, plog)}
	var errs spec.Errors
	built := map[string]*Built{}
	failed := map[string]bool{}

	// A pipeline that checkpoints: its committing sinks hold output back,
	// its live sources log their input.
	checkpoints := d.Checkpoint != nil && !opts.DryRun
	if d.Checkpoint == nil && !opts.DryRun && hasCheckpoint(opts.FS, checkpointDir(opts.DataDir, d)) {
		plog.Warn("the pipeline takes no checkpoints now, but the checkpoints of an earlier run are in its data directory: a later run with checkpoints would recover them and cut back or roll back what this run writes; delete the directory or start that run with --from-start", "dir", checkpointDir(opts.DataDir, d))
	}
	if checkpoints && opts.FromStart {
		// Forget nothing an engine running on the same directory uses:
		// opening the store locks it for this process, or refuses.
		if _, err := checkpoint.Open(checkpointDir(opts.DataDir, d), checkpoint.Options{Log: plog, FS: opts.FS}); err != nil {
			return nil, spec.Errors{spec.Errorf(d.Pos, "%v", err)}
		}
		if err := forgetCheckpoints(opts.FS, opts.DataDir, d); err != nil {
			return nil, spec.Errors{spec.Errorf(d.Pos, "%v", err)}
		}
	}
	bc := func(c *ComponentDef) engine.BuildContext {
		return engine.BuildContext{
			Checkpoints: checkpoints, FS: opts.FS,
			Pipeline: d.Name, Name: c.Name, Dir: d.Dir, DataDir: opts.DataDir, Edge: opts.Edge, DryRun: opts.DryRun, FromStart: opts.FromStart, Batch: d.Batch, Mem: opts.Mem,
			Log: plog.With("component", c.Name), Counters: engine.NewCounters(), Shared: opts.Shared,
			Catalog: d.Release.catalog(), RuleSets: d.Release.ruleSets(), Release: d.Release.label(), ReleaseDir: d.Release.dir(),
			Commands: opts.Commands,
		}
	}
	// A pipeline rebuilt by a release switch continues the run, and so
	// does one that recovers from a checkpoint.
	resuming := opts.carry != nil && opts.carry.switching || checkpoints && hasCheckpoint(opts.FS, checkpointDir(opts.DataDir, d))
	for _, c := range d.Sources {
		if c.Config == nil || c.Comp == nil {
			failed[c.Name] = true
			continue
		}
		ctx := bc(c)
		relay := opts.carry.relay(c.Name)
		if relay != nil {
			// Only checked: the running source is handed over.
			ctx.DryRun = true
			ctx.Counters = opts.carry.countersOf(c.Name)
		}
		src, err := c.Comp.Source(c.Config, ctx)
		if inj, ok := opts.Sources[c.Name]; ok && err == nil {
			src = inj
		}
		if err == nil && checkpoints && relay == nil {
			src, err = logged(src, opts, d, ctx)
		}
		if err == nil && opts.carry != nil && !opts.DryRun {
			if relay == nil {
				relay = engine.NewRelay(src)
			}
			src = relay.Tap()
		}
		if err != nil {
			es := spec.Collect(c.Pos, err)
			errs = append(errs, invalidOr(c, es)...)
			if b := standIn(c, es, nil, ctx); b != nil {
				built[c.Name] = b
			} else {
				failed[c.Name] = true
			}
			continue
		}
		// Steps and sinks learn whether a source continues an interrupted
		// run.
		if r, ok := src.(engine.Resumer); ok && r.Resuming() {
			resuming = true
		}
		b := &Built{Def: c, Counters: ctx.Counters, Outputs: []engine.Port{{Schema: src.Schema()}}, relay: relay, fp: fingerprint(d, c, nil, src)}
		if cl, ok := src.(io.Closer); ok {
			b.src = cl
		}
		b.Node = p.Graph.AddSource(c.Name, src, ctx.Counters)
		if err := guardSource(p.Graph, b, src, d.EventTime, ctx); err != nil {
			errs = append(errs, spec.Errorf(c.Pos, "%v", err))
			failed[c.Name] = true
			continue
		}
		built[c.Name] = b
		p.Components = append(p.Components, b)
	}

	order, cyclic, es := topoSort(d)
	errs = append(errs, es...)
	for name := range cyclic {
		failed[name] = true
	}
	for _, c := range order {
		schema, ok, es := inputSchema(c, built, failed)
		errs = append(errs, es...)
		if !ok || c.Config == nil || c.Comp == nil {
			failed[c.Name] = true
			continue
		}
		ctx := bc(c)
		ctx.Resuming = resuming
		ctx.InputKeyOrdered = keyOrdered(c, built)
		if cs := opts.carry.countersOf(c.Name); cs != nil {
			ctx.Counters = cs
		}
		op, err := c.Comp.Operator(c.Config, schema, ctx)
		if err != nil {
			es := spec.Collect(c.Pos, err)
			errs = append(errs, invalidOr(c, es)...)
			if b := standIn(c, es, schema, ctx); b != nil {
				built[c.Name] = b
			} else {
				failed[c.Name] = true
			}
			continue
		}
		b := &Built{Def: c, Counters: ctx.Counters, Outputs: op.Outputs(), op: op, fp: fingerprint(d, c, schema, op)}
		b.Node = p.Graph.AddOperator(c.Name, op, ctx.Counters)
		built[c.Name] = b
		p.Components = append(p.Components, b)
	}
	for _, c := range d.Sinks {
		schema, ok, es := inputSchema(c, built, failed)
		errs = append(errs, es...)
		if !ok || c.Config == nil || c.Comp == nil {
			continue
		}
		ctx := bc(c)
		ctx.Resuming = resuming
		kept := opts.carry.sink(c.Name)
		if kept != nil {
			// Only checked: the running sink is handed over.
			ctx.DryRun = true
			ctx.Counters = opts.carry.countersOf(c.Name)
		}
		s, err := c.Comp.Sink(c.Config, schema, ctx)
		if err != nil {
			errs = append(errs, invalidOr(c, spec.Collect(c.Pos, err))...)
			continue
		}
		if kept != nil {
			_ = s.Close(context.Background())
			s = kept
		}
		b := &Built{Def: c, Counters: ctx.Counters, sink: s, carried: kept != nil, fp: fingerprint(d, c, schema, s), in: schema}
		b.Node = p.Graph.AddSink(c.Name, s, ctx.Counters)
		built[c.Name] = b
		p.Components = append(p.Components, b)
	}
	for _, c := range append(append(append([]*ComponentDef{}, d.Sources...), d.Steps...), d.Sinks...) {
		if c.Invalid && len(errs) == 0 {
			// Load reported this component's errors; never run it.
			errs = append(errs, spec.Errorf(c.Pos, "%s %q has configuration errors", c.Kind, c.Name))
		}
	}
	if len(errs) > 0 {
		p.Close()
		errs.Sort()
		return nil, errs
	}
	for _, b := range p.Components {
		for _, in := range b.Def.Inputs {
			from, port, _ := resolve(in.Stream, built)
			if err := p.Graph.Connect(from.Node, port, b.Node); err != nil {
				errs = append(errs, spec.Errorf(in.Pos, "%v", err))
			}
		}
	}
	if len(errs) == 0 && checkpoints {
		if err := checkpointGraph(p, d, opts); err != nil {
			errs = append(errs, spec.Errorf(d.Pos, "%v", err))
		}
	}
	if len(errs) > 0 {
		p.Close()
		return nil, errs
	}
	return p, nil
}

// logged returns src itself when it can produce its input again, or src
// behind an ingest log in the pipeline's data directory (see
// engine/ingest).
func logged(src engine.Source, opts Options, d *Def, bc engine.BuildContext) (engine.Source, error) {
	if _, ok := src.(engine.Replayable); ok {
		return src, nil
	}
	bo := buffer.Options{Fsync: d.Checkpoint.IngestFsync, FS: opts.FS}
	w, err := ingest.Wrap(src, ingest.Options{
		Dir: ingest.Dir(opts.DataDir, d.Name, bc.Name), Buffer: bo,
		Log: bc.Log, Mem: bc.Mem, Counters: bc.Counters,
	})
	if err != nil {
		return nil, fmt.Errorf("ingest log: %w", err)
	}
	return w, nil
}

// checkpointsDir is the directory of a pipeline's checkpoints under its
// own (no component may take that name).
const checkpointsDir = "checkpoints"

// checkpointDir is where a pipeline keeps its checkpoints.
func checkpointDir(dataDir string, d *Def) string {
	return filepath.Join(dataDir, d.Name, checkpointsDir)
}

// checkpointGraph makes the pipeline's graph take checkpoints.
func checkpointGraph(p *Pipeline, d *Def, opts Options) error {
	st, err := checkpoint.Open(checkpointDir(opts.DataDir, d), checkpoint.Options{Log: opts.Log.With("pipeline", d.Name), FS: opts.FS})
	if err != nil {
		return err
	}
	p.ckpt = &CheckpointStats{}
	return p.Graph.Checkpoints(engine.CheckpointOptions{
		Store: st, Interval: d.Checkpoint.Interval,
		Continue:     opts.carry != nil && opts.carry.switching,
		OnCheckpoint: p.checkpointed,
		OnFailure:    p.checkpointFailed,
	})
}

// hasCheckpoint reports whether dir on fsys (nil: the real disk) holds a
// checkpoint file.
func hasCheckpoint(fsys buffer.FS, dir string) bool {
	names, _ := durable(fsys).ReadDir(dir)
	return slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, checkpoint.Ext) })
}

// forgetCheckpoints removes the checkpoints and ingest logs of a pipeline
// that starts over (--from-start), on fsys (nil: the real disk).
func forgetCheckpoints(fsys buffer.FS, dataDir string, d *Def) error {
	dirs := []string{checkpointDir(dataDir, d)}
	for _, c := range d.Sources {
		dirs = append(dirs, ingest.Dir(dataDir, d.Name, c.Name))
	}
	for _, dir := range dirs {
		if err := removeAll(fsys, dir); err != nil {
			return fmt.Errorf("start over: %w", err)
		}
	}
	return nil
}

// guardSource places the event-time guard (see eventtime.Guard) behind a
// source the policy bounds, or whose values must stay in their points'
// ranges (engine.RangedSource): the source's readers and its `errors` port
// are then the guard's. Other sources need no guard: the decoders and the
// steps refuse times outside years 0001-9999 themselves.
func guardSource(g *engine.Graph, b *Built, src engine.Source, pol EventTimePolicy, ctx engine.BuildContext) error {
	live, history := false, ""
	if l, ok := src.(engine.LiveSource); ok {
		live, history = l.Live()
	}
	var ranges []engine.ValueRange
	if r, ok := src.(engine.RangedSource); ok {
		ranges = r.Ranges()
	}
	p := eventtime.Policy{MaxFuture: pol.MaxFuture, MaxPast: pol.MaxPast, HistoryColumn: history, Ranges: ranges}
	if !live && !pol.All || src.Schema().TimeIndex() < 0 {
		p.MaxFuture, p.MaxPast = 0, 0
	}
	if p.MaxFuture == 0 && p.MaxPast == 0 && len(ranges) == 0 {
		return nil
	}
	guard, err := eventtime.New(p, src.Schema(), ctx)
	if err != nil {
		return err
	}
	// The guard's own rows in and out are not the source's.
	node := g.AddOperator(b.Def.Name, guard, engine.NewCounters())
	if err := g.Connect(b.Node, 0, node); err != nil {
		_ = guard.Close()
		return err
	}
	b.Node, b.Outputs, b.op = node, guard.Outputs(), guard
	return nil
}

// Close releases the components of a pipeline that was built but will not
// run (for example after validation).
func (p *Pipeline) Close() {
	for _, b := range p.Components {
		if b.carried {
			continue
		}
		if b.op != nil {
			_ = b.op.Close()
		}
		if b.sink != nil {
			_ = b.sink.Close(context.Background())
		}
		if b.src != nil {
			_ = b.src.Close()
		}
	}
}

// resolve finds the component and port a stream name refers to.
func resolve(stream string, built map[string]*Built) (*Built, int, string) {
	name, port, hasPort := strings.Cut(stream, ".")
	b, ok := built[name]
	if !ok {
		return nil, 0, ""
	}
	if !hasPort {
		return b, 0, ""
	}
	var names []string
	for i, p := range b.Outputs {
		if i > 0 && p.Name == port {
			return b, i, ""
		}
		if i > 0 {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return nil, 0, fmt.Sprintf("%q has no side outputs", name)
	}
	return nil, 0, fmt.Sprintf("%q has no output %q (it has: %s)", name, port, strings.Join(names, ", "))
}

// inputSchema resolves a component's inputs and checks they share one
// schema. ok is false when an input is unknown or failed to build.
func inputSchema(c *ComponentDef, built map[string]*Built, failed map[string]bool) (*engine.Schema, bool, spec.Errors) {
	var errs spec.Errors
	var schema *engine.Schema
	var first InputRef
	ok := true
	for _, in := range c.Inputs {
		name, _, _ := strings.Cut(in.Stream, ".")
		if failed[name] {
			ok = false
			continue
		}
		b, port, why := resolve(in.Stream, built)
		if b == nil {
			if why == "" {
				why = fmt.Sprintf("unknown stream %q", in.Stream)
			}
			errs = append(errs, spec.Errorf(in.Pos, "%s", why))
			ok = false
			continue
		}
		s := b.Outputs[port].Schema
		if schema == nil {
			schema, first = s, in
			continue
		}
		if !schema.Equal(s) {
			errs = append(errs, spec.Errorf(in.Pos, "stream %q has schema [%s] but %q has [%s]; inputs of one component must share a schema", in.Stream, s, first.Stream, schema))
			ok = false
		}
	}
	if len(c.Inputs) == 0 {
		ok = false
	}
	return schema, ok && schema != nil, errs
}

// keyOrdered reports whether the input of c is in event-time order per
// key: one stream, an output port its step says is (engine.KeyOrdered).
func keyOrdered(c *ComponentDef, built map[string]*Built) bool {
	if len(c.Inputs) != 1 {
		return false
	}
	b, port, _ := resolve(c.Inputs[0].Stream, built)
	if b == nil {
		return false
	}
	k, ok := b.op.(engine.KeyOrdered)
	return ok && k.KeyOrderedPort(port)
}

// topoSort orders the steps so every step comes after the steps it reads,
// and reports cycles.
func topoSort(d *Def) ([]*ComponentDef, map[string]bool, spec.Errors) {
	steps := map[string]*ComponentDef{}
	for _, s := range d.Steps {
		steps[s.Name] = s
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var order []*ComponentDef
	var errs spec.Errors
	cyclic := map[string]bool{}
	var path []string
	var visit func(s *ComponentDef)
	visit = func(s *ComponentDef) {
		switch color[s.Name] {
		case black:
			return
		case grey:
			i := 0
			for path[i] != s.Name {
				i++
			}
			cycle := append(append([]string{}, path[i:]...), s.Name)
			for _, n := range cycle {
				cyclic[n] = true
			}
			errs = append(errs, spec.Errorf(s.NamePos, "cycle: %s", strings.Join(cycle, " -> ")))
			return
		}
		color[s.Name] = grey
		path = append(path, s.Name)
		for _, in := range s.Inputs {
			name, _, _ := strings.Cut(in.Stream, ".")
			if dep, ok := steps[name]; ok {
				visit(dep)
			}
		}
		path = path[:len(path)-1]
		color[s.Name] = black
		order = append(order, s)
	}
	for _, s := range d.Steps {
		visit(s)
	}
	return order, cyclic, errs
}

// invalidOr drops the constructor errors of a component whose configuration
// Load reported invalid that are located where Load reported one: they
// would repeat those errors. Its other errors are kept, so that one run
// reports every error of the component. The component is still
// constructed when possible so that the components reading it are checked
// against its schema.
func invalidOr(c *ComponentDef, errs spec.Errors) spec.Errors {
	if !c.Invalid {
		return errs
	}
	var out spec.Errors
	for _, e := range errs {
		if !slices.Contains(c.reported, e.Pos) {
			out = append(out, e)
		}
	}
	return out
}

// standIn builds a component that failed once more, in a dry run and with
// the fields in error back to their defaults, to learn the outputs it
// would have: the components reading it are then checked against them
// rather than skipped, so that one run reports their errors too. It
// returns nil when even that fails. The stand-in never runs: the build
// has errors.
func standIn(c *ComponentDef, errs spec.Errors, schema *engine.Schema, ctx engine.BuildContext) *Built {
	if c.Config == nil || c.Comp == nil {
		return nil
	}
	at := slices.Clone(c.reported)
	for _, e := range errs {
		at = append(at, e.Pos)
	}
	cfg := c.Config.WithDefaults(at)
	ctx.DryRun = true
	ctx.Counters = engine.NewCounters()
	ctx.Log = slog.New(slog.DiscardHandler)
	var outputs []engine.Port
	switch c.Kind {
	case spec.KindSource:
		src, err := c.Comp.Source(cfg, ctx)
		if err != nil {
			return nil
		}
		outputs = []engine.Port{{Schema: src.Schema()}}
		if cl, ok := src.(io.Closer); ok {
			_ = cl.Close()
		}
	case spec.KindStep:
		op, err := c.Comp.Operator(cfg, schema, ctx)
		if err != nil {
			return nil
		}
		outputs = op.Outputs()
		if cl, ok := op.(io.Closer); ok {
			_ = cl.Close()
		}
	default:
		return nil
	}
	return &Built{Def: c, Outputs: outputs}
}

// defaultEdge is the host name, or "edge" when it is unknown.
func defaultEdge() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "edge"
}
