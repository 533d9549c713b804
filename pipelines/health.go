package pipelines

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/health"
	"github.com/sluice-edge/sluice/engine/spec"
)

// Shared returns what the pipelines the runtime builds share (the alert
// route of their sinks among them).
func (r *Runtime) Shared() *engine.Shared { return r.opts.Shared }

// HealthSample reads the figures of ps that health alerts watch: each
// source's rows read and rejected (its bad_* counters), each operator's
// late rows, each cloud sink's backlog, link state, buffer quota and
// dead-lettered rows, TTL, oldest event time and drain rate; each
// checkpointing pipeline's newest checkpoint success and failure.
func HealthSample(ps []*Pipeline, now time.Time) health.Sample {
	s := health.Sample{Time: now}
	for _, p := range ps {
		if st, ok := p.CheckpointStats(); ok {
			s.Checkpoints = append(s.Checkpoints, health.Checkpoint{Pipeline: p.Def.Name,
				LastSuccess: st.Last, LastFailure: st.LastFailure, Err: st.LastError})
		}
		for _, b := range p.Components {
			name := b.Def.Name
			switch {
			case b.Def.Kind == spec.KindSource:
				in := health.Input{Pipeline: p.Def.Name, Component: name, Source: true, Rows: b.Counters.Counter("rows_out").Load()}
				for c, v := range b.Counters.Snapshot() {
					if strings.HasPrefix(c, "bad_") {
						in.Bad += v
					}
				}
				s.Inputs = append(s.Inputs, in)
			case slices.Contains(b.Counters.Names(), "late_rows"):
				s.Inputs = append(s.Inputs, health.Input{Pipeline: p.Def.Name, Component: name,
					Rows: b.Counters.Counter("rows_in").Load(), Late: b.Counters.Counter("late_rows").Load()})
			}
			if fs, ok := b.sink.(*forward.Sink); ok {
				m := fs.Metrics()
				st := fs.Buffer().Status()
				l := health.Link{Pipeline: p.Def.Name, Component: name, BacklogRows: m.BacklogRows,
					LinkUp: m.LinkUp, QuotaBytes: st.QuotaBytes, QuotaUsed: st.QuotaUsed, DeadLetterRows: m.DeadLetterRows,
					DrainRate: m.DrainRate}
				var by buffer.TTLBasis
				if l.TTL, by = fs.TTL(); by == buffer.ByEventTime {
					l.OldestEventTime = st.OldestEventTime
				}
				s.Links = append(s.Links, l)
			}
		}
	}
	return s
}

// HealthWatcher raises the health alerts of running pipelines through
// the alert route of their sinks (the buffered sinks that carry alerts),
// as the engine's other alerts about itself, and logs each.
type HealthWatcher struct {
	mon    *health.Monitor
	shared *engine.Shared
	list   func() []*Pipeline
	log    *slog.Logger
	mu     sync.Mutex
	// active are the alerts raised and not cleared, by id.
	active map[string]engine.EngineAlert
	// engine, when set, gives the figures of the engine itself.
	engine func(now time.Time) *health.Engine
	// keep, when set, is the file the raised alerts are kept in across
	// restarts.
	keep string
	// unsent are alerts no sink took (none open yet, or all closed),
	// offered again at the next check, oldest first.
	unsent []engine.EngineAlert
	// keepUnsent, when set, is the file unsent is kept in across
	// restarts (next to keep).
	keepUnsent string
}

// maxUnsent bounds the alerts a watcher keeps for a sink to take.
const maxUnsent = 1000

// WatchEngine makes the watcher sample the engine's own figures (restarts,
// applies) with f as well. Call it before Run or Check.
func (w *HealthWatcher) WatchEngine(f func(now time.Time) *health.Engine) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.engine = f
}

// Keep makes the watcher keep its raised alerts in the file name across
// restarts of the engine: the alerts an earlier run raised there are
// restored (kept while their condition holds, cleared when it does not),
// and the file is rewritten whenever the raised alerts change. The alerts
// no sink took yet are kept likewise in health.UnsentFile in the same
// directory: those an earlier run left there are offered again, oldest
// first, before any this run raises. Call it before Run or Check.
func (w *HealthWatcher) Keep(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.keep = name
	w.mon.Restore(health.ReadRaised(name))
	w.keepUnsent = filepath.Join(filepath.Dir(name), health.UnsentFile)
	w.unsent = append(health.ReadUnsent(w.keepUnsent, maxUnsent), w.unsent...)
	if len(w.unsent) > maxUnsent {
		w.unsent = w.unsent[len(w.unsent)-maxUnsent:]
	}
}

// NewHealthWatcher returns a watcher of the pipelines list returns, which
// share sh, with thresholds th (zero fields: health.Defaults).
func NewHealthWatcher(sh *engine.Shared, list func() []*Pipeline, th health.Thresholds, log *slog.Logger) (*HealthWatcher, error) {
	mon, err := health.New(th)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &HealthWatcher{mon: mon, shared: sh, list: list, log: log, active: map[string]engine.EngineAlert{}}, nil
}

// Check samples the pipelines at now and raises the alerts the sample
// makes; it returns them.
func (w *HealthWatcher) Check(now time.Time) []engine.EngineAlert {
	w.mu.Lock()
	defer w.mu.Unlock()
	smp := HealthSample(w.list(), now)
	if w.engine != nil {
		smp.Engine = w.engine(now)
	}
	as := w.mon.Observe(smp)
	if len(as) > 0 && w.keep != "" {
		if err := health.WriteRaised(w.keep, w.mon.Raised()); err != nil {
			w.log.Warn("cannot keep the raised health alerts for the next run", "err", err)
		}
	}
	changed := w.offer()
	for _, a := range as {
		attrs := []any{"rule", a.Rule, "asset", a.Asset, "severity", a.Severity, "content", a.Content}
		if a.State == engine.AlertRaised {
			w.log.Warn("health alert raised", attrs...)
			w.active[a.ID] = a
		} else {
			w.log.Info("health alert cleared", attrs...)
			delete(w.active, a.ID)
		}
		if len(w.unsent) > 0 || engine.RaiseAlert(w.shared, memory.DefaultAllocator, a) == 0 {
			w.log.Debug("no sink carries alerts now: the health alert waits for one", "rule", a.Rule)
			if len(w.unsent) >= maxUnsent {
				w.unsent = w.unsent[1:]
			}
			w.unsent = append(w.unsent, a)
			changed = true
		}
	}
	if changed && w.keepUnsent != "" {
		if err := health.WriteUnsent(w.keepUnsent, w.unsent); err != nil {
			w.log.Warn("cannot keep the health alerts no sink took for the next run", "err", err)
		}
	}
	return as
}

// offer hands the alerts no sink took yet to the sinks, in order, until
// one is not taken; it reports whether any was taken.
func (w *HealthWatcher) offer() bool {
	taken := false
	for len(w.unsent) > 0 {
		if engine.RaiseAlert(w.shared, memory.DefaultAllocator, w.unsent[0]) == 0 {
			return taken
		}
		w.unsent, taken = w.unsent[1:], true
	}
	return taken
}

// Active returns the alerts raised and not cleared yet, by id.
func (w *HealthWatcher) Active() []engine.EngineAlert {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]engine.EngineAlert, 0, len(w.active))
	for _, a := range w.active {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b engine.EngineAlert) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Run checks soon after it starts (a second, or the interval if shorter:
// an engine in a crash loop says so before it crashes again), then every
// interval of the thresholds, until ctx ends.
func (w *HealthWatcher) Run(ctx context.Context) {
	every := w.mon.Thresholds().Interval
	first := time.NewTimer(min(every, time.Second))
	select {
	case <-ctx.Done():
		first.Stop()
		return
	case now := <-first.C:
		w.Check(now)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.Check(now)
		}
	}
}
