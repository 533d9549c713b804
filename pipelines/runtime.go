package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Runtime runs one release — a set of pipelines — and replaces it with
// another while data flows (Switch).
//
// Every source runs in an engine.Relay, apart from the graph it feeds, so
// that a switch can hand a source that did not change to the new graph
// without stopping it. A pipeline whose every component is unchanged keeps
// running untouched. In a changed pipeline, a component is unchanged when
// its type, configuration, inputs and input schema, the pipeline's batch
// and event-time policies, the release's models, rules and settings, and
// the files it was built from (engine.FileDependent: an infer step's model)
// are all equal; then a source keeps running (its connection, session and read
// position), a sink keeps its instance (its buffer keeps draining) and a
// stateful step hands its state (open windows, watermarks, alert states
// with their pending timers) to its successor through
// engine.Stateful. An alert step rebuilt from another configuration hands
// the states of its unchanged rules to its successor
// (engine.Reconciler) and clears, as its graph drains, the raised alerts
// its successor does not continue; one that goes away clears them all
// (engine.Retirer). Every other component starts fresh; the old one stops
// as on a graceful stop (a source flushes, a step flushes what it holds, a
// sink closes). SwitchReport says what happened to each.
//
// The methods of a Runtime are safe for concurrent use; switches are
// serialized.
type Runtime struct {
	opts Options

	mu      sync.Mutex // serializes Start, Switch and Stop
	rel     *Release
	ctx     context.Context
	stopped bool

	smu     sync.Mutex // guards running, states and done
	running map[string]*running
	order   []string
	done    chan struct{}
	closed  bool // done is closed
	// switching is set while a switch replaces pipelines: done stays open.
	switching bool
}

// running is one pipeline the Runtime runs.
type running struct {
	p      *Pipeline
	fp     string // of the whole pipeline
	cancel context.CancelFunc
	exited chan struct{} // closed when its graph has returned
	err    error

	state string // "running", "finished", "failed", "stopped"
	since time.Time
}

// PipelineStatus is the state of one pipeline of a Runtime.
type PipelineStatus struct {
	Name string `json:"name"`
	// State is "running", "finished" (its sources ended), "failed" or
	// "stopped".
	State string    `json:"state"`
	Since time.Time `json:"since"`
	Err   string    `json:"error,omitempty"`
}

// SwitchReport says what a switch did with each pipeline and component.
type SwitchReport struct {
	Pipelines []PipelineChange `json:"pipelines"`
	// Took is how long the switch held data back: from detaching the
	// first source to starting the last graph.
	Took time.Duration `json:"took"`
}

// Pipeline changes.
const (
	ChangeUnchanged = "unchanged" // kept running untouched
	ChangeChanged   = "changed"   // rebuilt; see its components
	ChangeAdded     = "added"
	ChangeRemoved   = "removed" // stopped gracefully
	// ChangeFinished: the pipeline had finished (its sources ended) and
	// its sources did not change; it is not run again.
	ChangeFinished = "finished, not restarted"
)

// Component outcomes in a changed pipeline.
const (
	OutcomeKeptRunning = "kept running"   // source handed over
	OutcomeKeptState   = "kept state"     // step state handed over
	OutcomeKeptSink    = "kept open"      // sink handed over with its buffer
	OutcomeFresh       = "started fresh"  // changed, or stateless
	OutcomeStateLost   = "started fresh:" // followed by why the state was refused
	// OutcomeRemoved: a step the new pipeline does not have (or of a
	// removed pipeline), reported when it cleared alerts as it went.
	OutcomeRemoved = "removed"
)

// PipelineChange is what a switch did with one pipeline.
type PipelineChange struct {
	Name       string            `json:"name"`
	Change     string            `json:"change"`
	Components []ComponentChange `json:"components,omitempty"`
}

// ComponentChange is what a switch did with one component.
type ComponentChange struct {
	Name    string `json:"name"`
	Outcome string `json:"outcome"`
}

// String renders the report on one line per changed pipeline.
func (r *SwitchReport) String() string {
	var b strings.Builder
	for i, p := range r.Pipelines {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %s", p.Name, p.Change)
		if len(p.Components) > 0 {
			b.WriteString(" (")
			for j, c := range p.Components {
				if j > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "%s: %s", c.Name, c.Outcome)
			}
			b.WriteString(")")
		}
	}
	return b.String()
}

// NewRuntime returns a Runtime that builds pipelines with opts (its Shared
// serves every release it runs; DryRun is ignored).
func NewRuntime(opts Options) *Runtime {
	if opts.Shared == nil {
		opts.Shared = engine.NewShared()
	}
	opts.DryRun = false
	return &Runtime{opts: opts, running: map[string]*running{}, done: make(chan struct{})}
}

// Release returns the release running (nil before Start).
func (r *Runtime) Release() *Release {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rel
}

// Check builds rel without running it or opening anything (see
// Options.DryRun) and returns every problem found.
func (r *Runtime) Check(rel *Release) spec.Errors {
	opts := r.opts
	opts.DryRun = true
	opts.Shared = engine.NewShared()
	ps, errs := BuildAll(rel.Defs, opts)
	for _, p := range ps {
		p.Close()
	}
	return errs
}

// Start builds rel and runs it until Stop, or until every pipeline has
// ended (Done). The pipelines keep ctx's values but not its cancellation:
// a release applied from a short-lived request runs on after it; only
// Stop stops them (gracefully). Build errors are returned as spec.Errors
// and nothing runs.
func (r *Runtime) Start(ctx context.Context, rel *Release) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rel != nil || r.stopped {
		return errors.New("runtime: Start called twice")
	}
	opts := r.opts
	opts.carry = &carry{}
	ctxHash := releaseContext(rel)
	ps, errs := BuildAll(rel.Defs, opts)
	if len(errs) > 0 {
		return errs
	}
	r.ctx, r.rel = context.WithoutCancel(ctx), rel
	r.smu.Lock()
	for _, p := range ps {
		r.launch(p, pipelineFP(p, ctxHash))
	}
	r.smu.Unlock()
	r.checkDone()
	return nil
}

// launch runs p; the caller holds smu.
func (r *Runtime) launch(p *Pipeline, fp string) {
	ctx, cancel := context.WithCancel(r.ctx)
	run := &running{p: p, fp: fp, cancel: cancel, exited: make(chan struct{}), state: "running", since: time.Now()}
	for _, b := range p.Components {
		if fs, ok := b.sink.(*forward.Sink); ok && fs.CarriesAlerts() && b.Node != nil {
			// The engine's own alerts (health, drops) go on through it
			// once the pipeline's sources ended, until the pipeline is
			// stopped or switched away.
			p.Graph.KeepOpen(b.Node)
		}
	}
	r.running[p.Def.Name] = run
	if !slices.Contains(r.order, p.Def.Name) {
		r.order = append(r.order, p.Def.Name)
	}
	go func() {
		err := p.Graph.Run(ctx)
		r.smu.Lock()
		run.err = err
		switch {
		case run.state == "stopped":
		case err != nil:
			run.state = "failed"
		default:
			run.state = "finished"
		}
		run.since = time.Now()
		r.smu.Unlock()
		close(run.exited)
		if err != nil {
			r.opts.logger().Error("pipeline failed", "pipeline", p.Def.Name, "err", err)
		}
		r.checkDone()
	}()
}

// checkDone closes done once no pipeline of the current release runs.
func (r *Runtime) checkDone() {
	r.smu.Lock()
	defer r.smu.Unlock()
	if r.closed || r.switching {
		return
	}
	for _, run := range r.running {
		if run.state == "running" {
			return
		}
	}
	r.closed = true
	close(r.done)
}

// Done is closed once every pipeline has ended (their sources ended, they
// failed, or Stop stopped them).
func (r *Runtime) Done() <-chan struct{} {
	r.smu.Lock()
	defer r.smu.Unlock()
	return r.done
}

// Pipelines returns the pipelines running now.
func (r *Runtime) Pipelines() []*Pipeline {
	r.smu.Lock()
	defer r.smu.Unlock()
	var out []*Pipeline
	for _, name := range r.order {
		if run, ok := r.running[name]; ok {
			out = append(out, run.p)
		}
	}
	return out
}

// Status returns the state of every pipeline of the running release.
func (r *Runtime) Status() []PipelineStatus {
	r.smu.Lock()
	defer r.smu.Unlock()
	var out []PipelineStatus
	for _, name := range r.order {
		run, ok := r.running[name]
		if !ok {
			continue
		}
		st := PipelineStatus{Name: name, State: run.state, Since: run.since}
		if run.err != nil {
			st.Err = run.err.Error()
		}
		out = append(out, st)
	}
	return out
}

// Err returns the errors of the pipelines that failed, joined.
func (r *Runtime) Err() error {
	r.smu.Lock()
	defer r.smu.Unlock()
	var errs []error
	for _, name := range r.order {
		if run, ok := r.running[name]; ok && run.err != nil {
			errs = append(errs, fmt.Errorf("pipeline %s: %w", name, run.err))
		}
	}
	return errors.Join(errs...)
}

// Stop stops every pipeline gracefully (sources stop and flush, steps
// flush, sinks close) and waits for them. It returns the errors of the
// pipelines that failed.
func (r *Runtime) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	r.smu.Lock()
	runs := make([]*running, 0, len(r.running))
	for _, run := range r.running {
		runs = append(runs, run)
	}
	r.smu.Unlock()
	for _, run := range runs {
		run.cancel()
	}
	for _, run := range runs {
		<-run.exited
		for _, b := range run.p.Components {
			if b.relay != nil {
				_ = b.relay.Stop()
			}
		}
	}
	// The sinks carrying alerts of pipelines that finished close last.
	for _, run := range runs {
		r.closeKept(run)
	}
	r.checkDone()
	return r.Err()
}

// SwitchError is returned by Switch when the new release was not applied;
// the old one keeps running. Errs holds the problems found by checking it
// (with their locations), Err what failed otherwise.
type SwitchError struct {
	Errs spec.Errors
	Err  error
}

// Error implements error.
func (e *SwitchError) Error() string {
	if len(e.Errs) > 0 {
		return e.Errs.Error()
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *SwitchError) Unwrap() error {
	if len(e.Errs) > 0 {
		return e.Errs
	}
	return e.Err
}

// plan is what a switch does with one pipeline of the new release.
type plan struct {
	def *Def
	old *running // nil when added
	// oldRunning is whether old was running when the switch began.
	oldRunning bool
	change     string
	fp         string
	carry      *carry
	// check is the pipeline built in dry-run mode: its components'
	// fingerprints.
	check *Pipeline
}

// Switch replaces the running release with rel. It checks rel first
// (building it without opening anything); on any problem it returns a
// *SwitchError and the running release is untouched. Then it stops what
// changed — handing unchanged sources, sinks and step states over — and
// starts the new graphs. Should building the new graphs still fail (a
// directory that cannot be opened), the old release is started again with
// what was handed over, and a *SwitchError says why.
func (r *Runtime) Switch(ctx context.Context, rel *Release) (*SwitchReport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rel == nil || r.stopped {
		return nil, &SwitchError{Err: errors.New("runtime: not running")}
	}
	ctxHash := releaseContext(rel)
	// Dry run: every pipeline of rel, opening nothing.
	checkOpts := r.opts
	checkOpts.DryRun = true
	checkOpts.Shared = engine.NewShared()
	checked, errs := BuildAll(rel.Defs, checkOpts)
	if len(errs) > 0 {
		return nil, &SwitchError{Errs: errs}
	}
	defer func() {
		for _, p := range checked {
			p.Close()
		}
	}()

	r.smu.Lock()
	var plans []*plan
	names := map[string]bool{}
	for _, p := range checked {
		name := p.Def.Name
		names[name] = true
		pl := &plan{def: p.Def, check: p, fp: pipelineFP(p, ctxHash), old: r.running[name]}
		pl.oldRunning = pl.old != nil && pl.old.state == "running"
		switch {
		case pl.old == nil:
			pl.change = ChangeAdded
		case pl.old.fp == pl.fp && pl.oldRunning:
			pl.change = ChangeUnchanged
		case pl.old.state == "finished" && sameSources(pl.old, p, ctxHash):
			// Its sources ended and are the same: running it again would
			// produce what it produced (or nothing) a second time.
			pl.change = ChangeFinished
		default:
			pl.change = ChangeChanged
		}
		plans = append(plans, pl)
	}
	var removed []*running
	var removedNames []string
	var removedRunning []bool
	for _, name := range r.order {
		if run, ok := r.running[name]; ok && !names[name] {
			removed = append(removed, run)
			removedNames = append(removedNames, name)
			removedRunning = append(removedRunning, run.state == "running")
		}
	}
	r.smu.Unlock()

	if err := orphans(plans, removed, removedRunning); err != nil {
		return nil, &SwitchError{Err: err}
	}

	report := &SwitchReport{}
	start := time.Now()
	r.smu.Lock()
	r.switching = true
	r.smu.Unlock()
	defer func() {
		r.smu.Lock()
		r.switching = false
		r.smu.Unlock()
		r.checkDone()
	}()
	// Hand over what did not change, then stop what changed or went.
	for _, pl := range plans {
		if pl.change != ChangeChanged {
			continue
		}
		pl.carry = handOver(pl.old, pl.oldRunning, pl.check, ctxHash)
	}
	for _, pl := range plans {
		if pl.change == ChangeChanged {
			r.stopRun(pl.old)
		}
	}
	removedCarry := make([]*carry, len(removed))
	for i, run := range removed {
		removedCarry[i] = newCarry()
		if removedRunning[i] {
			// Its alert steps clear what they raised as it stops.
			removedCarry[i] = retireAll(run)
		}
		r.stopRun(run)
	}
	for _, pl := range plans {
		if pl.change == ChangeChanged {
			pl.carry.collect(pl.old)
		}
	}
	for i, run := range removed {
		removedCarry[i].collect(run)
	}

	// Build the new graphs; on failure restart the old ones.
	built := map[string]*Pipeline{}
	var buildErr error
	for _, pl := range plans {
		if pl.change == ChangeUnchanged || pl.change == ChangeFinished {
			continue
		}
		if pl.carry == nil {
			pl.carry = &carry{}
		}
		pl.carry.switching = true
		opts := r.opts
		// Only the first start may read from the start.
		opts.FromStart = false
		opts.carry = pl.carry
		p, es := Build(pl.def, opts)
		if len(es) > 0 {
			buildErr = es
			break
		}
		built[pl.def.Name] = p
	}
	if buildErr != nil {
		for _, p := range built {
			p.Close()
		}
		err := r.restoreOld(plans, removed)
		return nil, &SwitchError{Err: errors.Join(fmt.Errorf("building the new release: %w", buildErr), err)}
	}

	// Hand the step states over before the new graphs run.
	for _, pl := range plans {
		change := PipelineChange{Name: pl.def.Name, Change: pl.change}
		if p := built[pl.def.Name]; p != nil {
			change.Components = pl.carry.restore(p)
		}
		report.Pipelines = append(report.Pipelines, change)
	}
	r.smu.Lock()
	for _, name := range removedNames {
		delete(r.running, name)
		r.order = slices.DeleteFunc(r.order, func(n string) bool { return n == name })
	}
	var order []string
	for _, pl := range plans {
		order = append(order, pl.def.Name)
		if p := built[pl.def.Name]; p != nil {
			r.launch(p, pl.fp)
		}
	}
	r.order = order
	r.smu.Unlock()
	for i, name := range removedNames {
		report.Pipelines = append(report.Pipelines, PipelineChange{Name: name, Change: ChangeRemoved, Components: removedCarry[i].removed(nil)})
	}
	report.Took = time.Since(start)
	r.rel = rel
	r.smu.Lock()
	if r.closed {
		// Everything had ended; the new release runs again.
		r.closed = false
		r.done = make(chan struct{})
	}
	r.smu.Unlock()
	r.checkDone()
	return report, nil
}

// orphans refuses a switch that would leave rows a cloud sink accepted
// undelivered for good: a sink that goes away, or whose successor of the
// same name has another type or input schema (and so cannot take its
// buffer over), while it holds a backlog its dead link cannot deliver as
// it closes.
func orphans(plans []*plan, removed []*running, removedRunning []bool) error {
	var errs []error
	check := func(old *running, running bool, next *Pipeline) {
		if !running {
			return
		}
		succ := map[string]*Built{}
		if next != nil {
			for _, b := range next.Components {
				succ[b.Def.Name] = b
			}
		}
		for _, b := range old.p.Components {
			fs, ok := b.sink.(*forward.Sink)
			if !ok {
				continue
			}
			if n := succ[b.Def.Name]; n != nil && n.Def.Type == b.Def.Type && n.in != nil && b.in != nil && n.in.Equal(b.in) {
				continue
			}
			if left := fs.Left(); left.Rows > 0 && !fs.Metrics().LinkUp {
				errs = append(errs, fmt.Errorf("sink %s/%s holds %d undelivered rows and its link is down: a release that removes it or changes its type or input schema would leave them undelivered; apply it once they are delivered, or export them first (sluice export %s)",
					old.p.Def.Name, b.Def.Name, left.Rows, left.Dir))
			}
		}
	}
	for _, pl := range plans {
		if pl.change == ChangeChanged {
			check(pl.old, pl.oldRunning, pl.check)
		}
	}
	for i, run := range removed {
		check(run, removedRunning[i], nil)
	}
	return errors.Join(errs...)
}

// sameSources reports whether the sources of the pipeline checked as next
// are those old ran: same names, fingerprints and release context.
func sameSources(old *running, next *Pipeline, ctxHash string) bool {
	fps := func(p *Pipeline) map[string]string {
		m := map[string]string{}
		for _, b := range p.Components {
			if b.Def.Kind == spec.KindSource {
				m[b.Def.Name] = b.fp
			}
		}
		return m
	}
	oldCtx := old.fp[strings.LastIndexByte(old.fp, '/')+1:]
	return oldCtx == ctxHash && maps.Equal(fps(old.p), fps(next))
}

// stopRun stops one running pipeline and waits for it.
func (r *Runtime) stopRun(run *running) {
	r.smu.Lock()
	if run.state == "running" {
		run.state = "stopped"
	}
	r.smu.Unlock()
	run.p.Graph.Switching()
	run.cancel()
	<-run.exited
	for _, b := range run.p.Components {
		if b.relay != nil && !b.handedOver {
			_ = b.relay.Stop()
		}
	}
	r.closeKept(run)
}

// closeKept closes the sinks a finished pipeline kept open (see
// engine.Graph.KeepOpen), once its graph has returned.
func (r *Runtime) closeKept(run *running) {
	if err := run.p.Graph.CloseKept(context.Background()); err != nil {
		r.opts.logger().Error("closing a sink of a finished pipeline", "pipeline", run.p.Def.Name, "err", err)
	}
}

// restoreOld starts the old pipelines of a switch that could not build the
// new ones, with what was handed over.
func (r *Runtime) restoreOld(plans []*plan, removed []*running) error {
	var errs []error
	r.smu.Lock()
	defer r.smu.Unlock()
	relaunch := func(old *running, c *carry) {
		if c == nil {
			c = &carry{}
		}
		c.switching = true
		opts := r.opts
		opts.FromStart = false
		opts.carry = c
		p, es := Build(old.p.Def, opts)
		if len(es) > 0 {
			errs = append(errs, fmt.Errorf("restarting pipeline %s of the running release: %w", old.p.Def.Name, es))
			c.release()
			return
		}
		c.restore(p)
		r.launch(p, old.fp)
	}
	for _, pl := range plans {
		if pl.change == ChangeChanged {
			relaunch(pl.old, pl.carry)
		}
	}
	for _, run := range removed {
		relaunch(run, &carry{})
	}
	return errors.Join(errs...)
}

// carry is what a changed pipeline hands from its running graph to the
// next: running sources, open sinks, step states and counters, by
// component name.
type carry struct {
	// switching: the pipeline is rebuilt by a switch, continuing the run
	// (a sink appends to what its predecessor wrote).
	switching bool
	relays    map[string]*engine.Relay
	sinks     map[string]engine.Sink
	counters  map[string]*engine.Counters
	states    map[string]*engine.State
	// refused says why a step's state could not be handed over.
	refused map[string]string
	// stateful names the steps whose state is to be snapshotted; changed
	// those among them whose successor has another configuration (see
	// engine.Reconciler).
	stateful map[string]bool
	changed  map[string]bool
	// retiring are the steps told to end what their successor does not
	// continue (see engine.Retirer); cleared counts what each ended.
	retiring map[string]*Built
	cleared  map[string]int
	old      map[string]*Built
}

func (c *carry) relay(name string) *engine.Relay {
	if c == nil {
		return nil
	}
	return c.relays[name]
}

func (c *carry) sink(name string) engine.Sink {
	if c == nil {
		return nil
	}
	return c.sinks[name]
}

func (c *carry) countersOf(name string) *engine.Counters {
	if c == nil {
		return nil
	}
	return c.counters[name]
}

// handOver marks, in the running pipeline old, the components that the new
// pipeline (built in dry-run mode as check) has unchanged, so that stopping
// old leaves them to the new one.
func handOver(old *running, oldRunning bool, check *Pipeline, ctxHash string) *carry {
	c := newCarry()
	if !oldRunning {
		// A pipeline that ended hands nothing over.
		return c
	}
	next := map[string]string{}
	nextIn := map[string]*engine.Schema{}
	nextType := map[string]string{}
	nextOp := map[string]engine.Operator{}
	for _, b := range check.Components {
		next[b.Def.Name] = b.fp + ctxHash
		nextIn[b.Def.Name] = b.in
		nextType[b.Def.Name] = b.Def.Type
		nextOp[b.Def.Name] = b.op
	}
	oldCtx := old.fp[strings.LastIndexByte(old.fp, '/')+1:]
	handsOver := false
	for _, b := range old.p.Components {
		fp, ok := next[b.Def.Name]
		if ok && b.sink != nil && fp != b.fp+oldCtx && b.Def.Type == nextType[b.Def.Name] &&
			b.in != nil && nextIn[b.Def.Name] != nil && b.in.Equal(nextIn[b.Def.Name]) {
			// Its successor of the same name, type and input schema takes
			// over its buffer and delivers what it holds. (One of another
			// type or schema cannot: the sink delivers what it can before
			// it closes, and a backlog of another schema left over
			// refuses the switch.)
			old.p.Graph.Replace(b.Node)
		}
		if !ok || fp != b.fp+oldCtx {
			if b.op != nil {
				var succ engine.Operator
				if ok && nextType[b.Def.Name] == b.Def.Type {
					succ = nextOp[b.Def.Name]
				}
				if c.retire(old, b, succ) {
					handsOver = true
				}
			}
			continue
		}
		switch {
		case b.relay != nil:
			if b.relay.Stopped() {
				// A graph that failed stopped it already.
				continue
			}
			handsOver = true
			b.relay.Handover()
			b.handedOver = true
			c.relays[b.Def.Name] = b.relay
			c.counters[b.Def.Name] = b.Counters
		case b.sink != nil:
			old.p.Graph.Handover(b.Node)
			b.handedOver = true
			c.sinks[b.Def.Name] = b.sink
			c.counters[b.Def.Name] = b.Counters
		case b.op != nil:
			if _, ok := b.op.(engine.Stateful); ok {
				old.p.Graph.Handover(b.Node)
				b.handedOver = true
				c.stateful[b.Def.Name] = true
				c.counters[b.Def.Name] = b.Counters
			}
		}
		c.old[b.Def.Name] = b
	}
	if handsOver {
		// What the old graph holds in flight would not be read again, nor
		// would the clear rows of retiring steps be written again.
		old.p.Graph.KeepWriting()
	}
	return c
}

func newCarry() *carry {
	return &carry{relays: map[string]*engine.Relay{}, sinks: map[string]engine.Sink{}, counters: map[string]*engine.Counters{},
		states: map[string]*engine.State{}, refused: map[string]string{}, stateful: map[string]bool{}, changed: map[string]bool{},
		retiring: map[string]*Built{}, cleared: map[string]int{}, old: map[string]*Built{}}
}

// retire prepares step b of the running pipeline old, which a switch
// rebuilds from another configuration (succ, the successor checked, an
// operator of its type) or takes away (succ nil), and reports whether it
// did anything. A step that ends what its successor will not continue
// (engine.Retirer: an alert step clears its raised alerts) is told to do
// so as its graph drains; when succ can continue its state
// (engine.Reconciler), the step is handed over: its state goes to the
// successor, which keeps what it continues.
func (c *carry) retire(old *running, b *Built, succ engine.Operator) bool {
	if _, ok := b.op.(engine.Retirer); !ok {
		return false
	}
	name := b.Def.Name
	rc, ok := succ.(engine.Reconciler)
	_, stateful := b.op.(engine.Stateful)
	if ok && stateful && rc.Continues(b.op) {
		old.p.Graph.Handover(b.Node)
		b.handedOver = true
		c.stateful[name] = true
		c.changed[name] = true
		c.counters[name] = b.Counters
		c.old[name] = b
	} else {
		succ = nil
	}
	old.p.Graph.Retire(b.Node, succ)
	c.retiring[name] = b
	return true
}

// retireAll prepares the steps of a pipeline that a switch removes: each
// ends what it announced (see carry.retire). It returns the carry that
// collects what they ended.
func retireAll(run *running) *carry {
	c := newCarry()
	for _, b := range run.p.Components {
		if b.op != nil && c.retire(run, b, nil) {
			run.p.Graph.KeepWriting()
		}
	}
	return c
}

// collect takes the states of the handed-over steps once the old graph
// has stopped, and closes them. A graph that failed hands over no step
// state and no sink: they may be broken.
func (c *carry) collect(old *running) {
	failed := old.err != nil
	for name, b := range c.retiring {
		c.cleared[name] = b.Node.Retired()
	}
	for name, b := range c.old {
		switch {
		case c.stateful[name]:
			if !failed && b.Node.HandedOver() {
				st, err := b.op.(engine.Stateful).Snapshot()
				if err != nil {
					c.refused[name] = err.Error()
				} else {
					c.states[name] = st
				}
			} else {
				c.refused[name] = "the pipeline had failed"
				delete(c.counters, name)
			}
			_ = b.op.Close()
		case c.sinks[name] != nil && (failed || !b.Node.HandedOver()):
			_ = c.sinks[name].Close(context.Background())
			delete(c.sinks, name)
			delete(c.counters, name)
		}
	}
}

// restore hands the states over to the new pipeline's steps and says what
// happened to every component.
func (c *carry) restore(p *Pipeline) []ComponentChange {
	var out []ComponentChange
	for _, b := range p.Components {
		name := b.Def.Name
		outcome := OutcomeFresh
		switch {
		case c.relays[name] != nil:
			outcome = OutcomeKeptRunning
		case c.sinks[name] != nil:
			outcome = OutcomeKeptSink
		case c.stateful[name]:
			st, ok := c.states[name]
			sf, isStateful := b.op.(engine.Stateful)
			rc, reconciles := b.op.(engine.Reconciler)
			switch {
			case !ok:
				outcome = OutcomeStateLost + " " + c.refused[name]
			case !isStateful:
				outcome = OutcomeStateLost + " the new step keeps no state"
			case c.changed[name] && !reconciles:
				outcome = OutcomeStateLost + " the new step cannot take the state of another configuration"
			case c.changed[name]:
				if kept, err := rc.RestoreChanged(st); err != nil {
					outcome = OutcomeStateLost + " " + err.Error()
				} else {
					outcome = OutcomeKeptState + " for " + kept
				}
			default:
				if err := sf.Restore(st); err != nil {
					outcome = OutcomeStateLost + " " + err.Error()
				} else {
					outcome = OutcomeKeptState
				}
			}
		}
		out = append(out, ComponentChange{Name: name, Outcome: outcome + c.clearedNote(name)})
	}
	return append(out, c.removed(p)...)
}

// clearedNote says how many alerts a retiring step cleared, "" for none.
func (c *carry) clearedNote(name string) string {
	switch n := c.cleared[name]; n {
	case 0:
		return ""
	case 1:
		return ", 1 alert cleared"
	default:
		return fmt.Sprintf(", %d alerts cleared", n)
	}
}

// removed reports the retiring steps that are not in p (nil: all of
// them) and cleared alerts as they went.
func (c *carry) removed(p *Pipeline) []ComponentChange {
	var out []ComponentChange
	for _, name := range slices.Sorted(maps.Keys(c.retiring)) {
		if c.cleared[name] == 0 || p != nil && slices.ContainsFunc(p.Components, func(b *Built) bool { return b.Def.Name == name }) {
			continue
		}
		out = append(out, ComponentChange{Name: name, Outcome: OutcomeRemoved + c.clearedNote(name)})
	}
	return out
}

// release stops and closes what c carries when nothing will take it.
func (c *carry) release() {
	if c == nil {
		return
	}
	for _, rl := range c.relays {
		_ = rl.Stop()
	}
	for _, s := range c.sinks {
		_ = s.Close(context.Background())
	}
}

// fingerprint identifies what building component c of d depends on,
// besides the release's context: its type, its configuration (canonical,
// after interpolation), its inputs and input schema, the pipeline's batch
// and event-time policies, and the files the built component (built: its
// source, operator or sink) was made from when it says so
// (engine.FileDependent: an infer step's model file, so that a release
// that changes only the model rebuilds the step).
func fingerprint(d *Def, c *ComponentDef, in *engine.Schema, built any) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%+v\x00%+v\x00", d.Name, c.Kind, c.Type, d.Batch, d.EventTime)
	if fd, ok := built.(engine.FileDependent); ok {
		fmt.Fprintf(h, "files %s\x00", fd.FilesDigest())
	}
	for _, i := range c.Inputs {
		fmt.Fprintf(h, "in %s\x00", i.Stream)
	}
	if in != nil {
		fmt.Fprintf(h, "schema %s\x00", in)
	}
	if c.Node != nil {
		var v any
		if err := c.Node.Decode(&v); err == nil {
			if data, err := yaml.Marshal(v); err == nil {
				h.Write(data)
			}
		} else {
			// Undecodable: never equal to anything.
			fmt.Fprintf(h, "%p", c)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// pipelineFP identifies a whole built pipeline: its components'
// fingerprints and the release context, which it ends with after a "/".
func pipelineFP(p *Pipeline, ctxHash string) string {
	fps := make([]string, 0, len(p.Components))
	for _, b := range p.Components {
		fps = append(fps, b.Def.Name+"="+b.fp)
	}
	slices.Sort(fps)
	h := sha256.Sum256([]byte(strings.Join(fps, "\n")))
	return hex.EncodeToString(h[:16]) + "/" + ctxHash
}

// releaseContext hashes the files of rel that any component may read —
// models, rule sets, settings, and any other file a configuration names
// (an assets file next to the pipelines) — that is every file but the
// pipelines themselves (fingerprinted one component at a time), ml/ (read
// by the steps that name a model file, whose fingerprints hold the file's
// digest: see engine.FileDependent) and the manifest the agent keeps
// beside them; "" for a release without a directory.
func releaseContext(rel *Release) string {
	if rel.Dir == "" {
		return ""
	}
	h := sha256.New()
	_ = filepath.WalkDir(rel.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		name, _ := filepath.Rel(rel.Dir, path)
		name = filepath.ToSlash(name)
		dir, _, _ := strings.Cut(name, "/")
		if name == "MANIFEST.json" || dir == releaseML || dir == releasePipelines && strings.Count(name, "/") == 1 && bundle.IsYAML(name) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(h, "unreadable %s\x00", name)
			return nil
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(data))
		h.Write(data)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (o Options) logger() *slog.Logger {
	if o.Log == nil {
		return slog.Default()
	}
	return o.Log
}
