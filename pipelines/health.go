package pipelines

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
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
// dead-lettered rows.
func HealthSample(ps []*Pipeline, now time.Time) health.Sample {
	s := health.Sample{Time: now}
	for _, p := range ps {
		for _, b := range p.Components {
			name := b.Def.Name
			switch {
			case b.Def.Kind == spec.KindSource:
				in := health.Input{Pipeline: p.Def.Name, Component: name, Source: true, Rows: b.Counters.Counter("rows_out").Load()}
				snap := b.Counters.Snapshot()
				for _, c := range b.Counters.Names() {
					if strings.HasPrefix(c, "bad_") {
						in.Bad += snap[c]
					}
				}
				s.Inputs = append(s.Inputs, in)
			case hasCounter(b.Counters, "late_rows"):
				s.Inputs = append(s.Inputs, health.Input{Pipeline: p.Def.Name, Component: name,
					Rows: b.Counters.Counter("rows_in").Load(), Late: b.Counters.Counter("late_rows").Load()})
			}
			if fs, ok := b.sink.(*forward.Sink); ok {
				m := fs.Metrics()
				st := fs.Buffer().Status()
				s.Links = append(s.Links, health.Link{Pipeline: p.Def.Name, Component: name, BacklogRows: m.BacklogRows,
					LinkUp: m.LinkUp, QuotaBytes: st.QuotaBytes, QuotaUsed: st.QuotaUsed, DeadLetterRows: m.DeadLetterRows})
			}
		}
	}
	return s
}

func hasCounter(c *engine.Counters, name string) bool {
	for _, n := range c.Names() {
		if n == name {
			return true
		}
	}
	return false
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
	as := w.mon.Observe(HealthSample(w.list(), now))
	for _, a := range as {
		attrs := []any{"rule", a.Rule, "asset", a.Asset, "severity", a.Severity, "content", a.Content}
		if a.State == engine.AlertRaised {
			w.log.Warn("health alert raised", attrs...)
			w.active[a.ID] = a
		} else {
			w.log.Info("health alert cleared", attrs...)
			delete(w.active, a.ID)
		}
		if engine.RaiseAlert(w.shared, memory.DefaultAllocator, a) == 0 {
			w.log.Debug("no sink carries alerts: the health alert stays in the log only", "rule", a.Rule)
		}
	}
	return as
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

// Run checks every interval of the thresholds until ctx ends.
func (w *HealthWatcher) Run(ctx context.Context) {
	t := time.NewTicker(w.mon.Thresholds().Interval)
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
