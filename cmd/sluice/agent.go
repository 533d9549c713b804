package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/agent/localapi"
	"github.com/sluice-edge/sluice/engine/buffer/ops"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/pipelines"
)

// applyHook, when set, is called at each step of an apply (the crash
// tests stop the process there).
var applyHook func(step string)

// applyStaged applies the staged bundles when the recorded release could
// not start (startErr); it reports whether one of them now runs.
func applyStaged(a *agent.Agent, log *slog.Logger, startErr error) bool {
	reps, err := a.ApplyPending()
	for _, r := range reps {
		if r.Outcome == agent.Applied {
			log.Warn("the recorded release could not start; a staged release replaced it", "err", startErr, "bundle", r.Bundle, "version", r.Version)
			return true
		}
	}
	if err != nil {
		log.Error("applying the staged bundles", "err", err)
	}
	return false
}

// runAgent runs the engine as an edge agent (sluice run --config): the
// release last applied, or else the configuration's and the command
// line's pipelines; the local API; the bundles an offline import staged.
// It runs until SIGINT or SIGTERM.
func runAgent(parent context.Context, g *globals, log *slog.Logger, configFile string, files []string, flags runFlags) error {
	cfg, errs := agent.LoadConfig(configFile)
	if len(errs) > 0 {
		return &exitError{code: exitFailed, err: errs}
	}
	defer g.openLogFile(log, cfg.DataDir, cfg.Logs)()
	trust, err := bundle.LoadTrust(cfg.Trust)
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("%s: trust: %w", configFile, err)}
	}
	ctx, cancel := stopOnSignal(parent, log)
	defer cancel()

	// Every command to a device goes through the arbiter: the pipelines'
	// command sinks submit to it, and so does the control API.
	ctl, err := startControl(cfg, log)
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	defer ctl.stop()
	rt := pipelines.NewRuntime(pipelines.Options{Log: log, DataDir: cfg.DataDir, Edge: cfg.Edge, FromStart: flags.fromStart, Commands: ctl.commands()})
	// Health alerts about the running release go through its alert sinks.
	stopHealth, healthWatcher := watchEdgeHealth(ctx, rt.Shared(), rt.Pipelines, cfg, log)
	defer stopHealth()
	// A release's settings may set the log level; without one, the command
	// line's applies.
	base := g.level.Level()
	runner := pipelines.NewAgentRunner(rt, envOf(parent), func(rel *pipelines.Release) {
		// Set-points are checked against the running release's models.
		ctl.setModels(rel.Catalog)
		level := base
		if rel.Settings != nil && rel.Settings.LogLevel != "" {
			_ = level.UnmarshalText([]byte(rel.Settings.LogLevel))
		}
		if old := g.level.Level(); level != old {
			// Said at the louder of the two levels, so that it shows.
			g.level.Set(min(level, old))
			log.Info("log level set by the release", "level", level.String(), "bundle", rel.Name, "version", rel.Version)
			g.level.Set(level)
		}
	})
	// With a hub, every report the agent writes also goes to the hub
	// (through the uplink's durable buffer).
	hub, err := openHub(cfg, log)
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	a, err := agent.Open(agent.Options{Dir: cfg.AgentDir(), Edge: cfg.Edge, Labels: cfg.Labels, Trust: trust,
		MaxBundleBytes: cfg.MaxBundleBytes, KeepReleases: cfg.KeepReleases, Log: log, Hook: applyHook, OnReport: hub.onReport}, runner)
	if errors.Is(err, agent.ErrLocked) {
		hub.close()
		return &exitError{code: exitFailed, err: fmt.Errorf("another engine runs on %s: %w", cfg.DataDir, err)}
	}
	if err != nil {
		hub.close()
		return &exitError{code: exitFailed, err: err}
	}
	defer a.Close()
	if hub != nil {
		// Runs after the engine stopped (deferred calls run in reverse):
		// the reports of the last apply are stored by then.
		defer hub.close()
		if err := hub.openUplink(a); err != nil {
			return &exitError{code: exitFailed, err: err}
		}
	}
	started, err := a.Start(ctx)
	if err != nil {
		// The recorded release ran once but cannot start now (its
		// environment changed, say): a release staged by an offline import
		// may replace it. Otherwise there is nothing to run.
		if !applyStaged(a, log, err) {
			return &exitError{code: exitFailed, err: err}
		}
		started = true
	}
	files = append(append([]string(nil), cfg.Pipelines...), files...)
	switch {
	case started && len(files) > 0:
		cur := a.Current()
		log.Info("running the applied release; the configured pipeline files are not run", "bundle", cur.Name, "version", cur.Version)
	case !started && len(files) > 0:
		defs, errs := pipelines.Load(files, envOf(parent))
		if len(errs) > 0 {
			return &exitError{code: exitFailed, err: errs}
		}
		if _, err := runner.Run(ctx, &pipelines.Release{Defs: defs}); err != nil {
			return &exitError{code: exitFailed, err: err}
		}
	case !started:
		log.Info("no release applied and no pipelines configured: waiting for a bundle (sluice import)")
	}
	defer func() {
		if err := rt.Stop(); err != nil {
			log.Error("stopping", "err", err)
		}
		for _, b := range pipelines.Backlogs(rt.Pipelines()) {
			fmt.Fprintf(g.stderr, "%d rows (%s) left in the buffer of %s/%s (%s); they will be sent on the next run\n",
				b.Rows, ops.Bytes(b.Bytes), b.Pipeline, b.Sink, b.Dir)
		}
	}()

	if flags.metricsAddr != "" {
		mtoken, err := metricsToken(flags.metricsTok)
		stopMetrics := func() {}
		if err == nil {
			stopMetrics, err = serveMetrics(flags.metricsAddr, mtoken, pipelines.NewRuntimeCollector(rt), log)
		}
		if err != nil {
			return &exitError{code: exitFailed, err: err}
		}
		defer stopMetrics()
	}
	token, err := agent.EnsureToken(cfg.TokenFile)
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	routes := ctl.routes()
	page, err := statusRoute(cfg, token, a, rt, healthWatcher, ctl, log)
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	routes = append(routes, page)
	srv, err := localapi.Listen(cfg.Listen, token, a, cfg.MaxBundleBytes, log, routes...)
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	defer srv.Close()
	// The record names the address bound (a configured port 0 picks one),
	// for import and status.
	rec := cfg.Record()
	rec.Listen = srv.Addr()
	if err := agent.WriteEdgeRecord(cfg.AgentDir(), rec); err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	if _, err := a.ApplyPending(); err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	if hub != nil {
		hub.start(ctx, a, rt, ctl.arbiter)
	}
	log.Info("running as edge agent", "edge", cfg.Edge, "api", srv.Addr(), "data_dir", cfg.DataDir)
	<-ctx.Done()
	return nil
}
