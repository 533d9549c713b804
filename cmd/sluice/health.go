package main

import (
	"context"
	"log/slog"
	"sync"

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
	if hc.Disabled {
		return func() {}, nil
	}
	w, err := pipelines.NewHealthWatcher(sh, list, hc.Thresholds, log)
	if err != nil {
		log.Warn("no health alerts", "err", err)
		return func() {}, nil
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
