package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/health"
	"github.com/sluice-edge/sluice/pipelines"
)

// defaultHealth is the health alerting of a run without an edge
// configuration.
func defaultHealth() agent.HealthConfig { return agent.HealthConfig{Thresholds: health.Defaults} }

// watchHealth raises the health alerts of the pipelines list returns
// (built with sh) until ctx ends or the returned function is called. The
// watcher is nil when health alerts are off.
func watchHealth(ctx context.Context, sh *engine.Shared, list func() []*pipelines.Pipeline, hc agent.HealthConfig, log *slog.Logger) (func(), *pipelines.HealthWatcher) {
	return startHealth(ctx, sh, list, hc, log, nil)
}

// watchEdgeHealth is watchHealth for an edge agent configured by cfg: it
// also watches the engine itself — its unclean restarts, counted in
// cfg.HealthDir(), and its applies, read from the agent's reports — and
// keeps the raised alerts there across restarts. The returned function
// records a clean stop when ctx has ended (a requested shutdown); a
// return on an error leaves the run counted as unclean.
func watchEdgeHealth(ctx context.Context, sh *engine.Shared, list func() []*pipelines.Pipeline, cfg *agent.Config, log *slog.Logger) (func(), *pipelines.HealthWatcher) {
	dir := cfg.HealthDir()
	e := &engineFigures{dir: dir, cfg: cfg, log: log}
	stop, w := startHealth(ctx, sh, list, cfg.Health, log, func(w *pipelines.HealthWatcher) {
		w.Keep(filepath.Join(dir, health.RaisedFile))
		w.WatchEngine(e.sample)
	})
	return func() {
		stop()
		if e.recorded && ctx.Err() != nil {
			if err := health.RecordStop(dir); err != nil {
				log.Warn("cannot record the clean stop: the next start counts as a restart", "err", err)
			}
		}
	}, w
}

func startHealth(ctx context.Context, sh *engine.Shared, list func() []*pipelines.Pipeline, hc agent.HealthConfig, log *slog.Logger, setup func(*pipelines.HealthWatcher)) (func(), *pipelines.HealthWatcher) {
	if hc.Disabled {
		return func() {}, nil
	}
	w, err := pipelines.NewHealthWatcher(sh, list, hc.Thresholds, log)
	if err != nil {
		log.Warn("no health alerts", "err", err)
		return func() {}, nil
	}
	if setup != nil {
		setup(w)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.Run(ctx)
	}()
	return func() { cancel(); wg.Wait() }, w
}

// engineFigures samples the engine's own figures for health alerts. Its
// first sample records the start (the engine holds its data directory by
// then); it is used by the watcher's goroutine only.
type engineFigures struct {
	dir      string
	cfg      *agent.Config
	log      *slog.Logger
	tried    bool
	recorded bool
	restarts []time.Time

	reportsMod  time.Time
	reportsSize int64
	apply       *health.Apply
}

func (e *engineFigures) sample(time.Time) *health.Engine {
	if !e.tried {
		e.tried = true
		rs, err := health.RecordStart(e.dir, time.Now(), e.cfg.Health.Thresholds.RestartsWindow)
		if err != nil {
			e.log.Warn("cannot count the engine's starts: no engine_restarts alerts", "err", err)
		} else {
			e.recorded, e.restarts = true, rs
			if len(rs) > 0 {
				e.log.Info("the engine restarted after a run that did not stop cleanly", "restarts", len(rs), "window", e.cfg.Health.Thresholds.RestartsWindow.String())
			}
		}
	}
	e.readApplies()
	return &health.Engine{Edge: e.cfg.Edge, Restarts: e.restarts, Apply: e.apply}
}

// readApplies reads the agent's apply reports again when they changed.
func (e *engineFigures) readApplies() {
	fi, err := os.Stat(filepath.Join(e.cfg.AgentDir(), "reports.jsonl"))
	if err != nil || (fi.ModTime().Equal(e.reportsMod) && fi.Size() == e.reportsSize) {
		return
	}
	rs, err := agent.ReadReports(e.cfg.AgentDir(), agent.DefaultMaxReportBytes)
	if err != nil {
		return
	}
	e.reportsMod, e.reportsSize = fi.ModTime(), fi.Size()
	e.apply = applyFigure(rs)
}

// applyFigure is the outcome of the newest apply of the reports rs
// (oldest first): failed since the first refusal after the last
// successful apply. Nil without reports.
func applyFigure(rs []agent.Report) *health.Apply {
	if len(rs) == 0 {
		return nil
	}
	last := rs[len(rs)-1]
	if last.Outcome == agent.Applied {
		return &health.Apply{Text: last.String()}
	}
	a := &health.Apply{Failed: true, Since: last.Time, Text: last.String()}
	for i := len(rs) - 1; i >= 0 && rs[i].Outcome != agent.Applied; i-- {
		a.Since = rs[i].Time
	}
	return a
}
