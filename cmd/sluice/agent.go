package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/agent/localapi"
	"github.com/sluice-edge/sluice/engine/buffer/ops"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/pipelines"
)

// applyHook, when set, is called at each step of an apply (the crash
// tests stop the process there).
var applyHook func(step string)

// runtimeRunner applies releases to a pipelines.Runtime: the agent's
// Runner.
type runtimeRunner struct {
	rt  *pipelines.Runtime
	env pipelines.LookupEnv

	mu      sync.Mutex
	started bool
}

// load reads the release unpacked in dir.
func (r *runtimeRunner) load(dir string, m *bundle.Manifest) (*pipelines.Release, error) {
	if m.Version > math.MaxInt64 {
		return nil, fmt.Errorf("version %d is out of range", m.Version)
	}
	rel, errs := pipelines.LoadRelease(dir, r.env)
	if len(errs) > 0 {
		return nil, errs
	}
	rel.Name, rel.Version = m.Name, int64(m.Version)
	return rel, nil
}

// Check dry-runs the release.
func (r *runtimeRunner) Check(dir string, m *bundle.Manifest) error {
	rel, err := r.load(dir, m)
	if err != nil {
		return err
	}
	if errs := r.rt.Check(rel); len(errs) > 0 {
		return errs
	}
	return nil
}

// Switch starts the release, or switches to it once one runs.
func (r *runtimeRunner) Switch(ctx context.Context, dir string, m *bundle.Manifest) (string, error) {
	rel, err := r.load(dir, m)
	if err != nil {
		return "", err
	}
	return r.run(ctx, rel)
}

// run starts rel or switches to it.
func (r *runtimeRunner) run(ctx context.Context, rel *pipelines.Release) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		if err := r.rt.Start(ctx, rel); err != nil {
			return "", err
		}
		r.started = true
		return fmt.Sprintf("started %d pipeline(s)", len(rel.Defs)), nil
	}
	rep, err := r.rt.Switch(ctx, rel)
	if err != nil {
		return "", err
	}
	return rep.String(), nil
}

// Pipelines reports the runtime's pipelines for the agent's status.
func (r *runtimeRunner) Pipelines() []agent.PipelineState {
	var out []agent.PipelineState
	for _, s := range r.rt.Status() {
		out = append(out, agent.PipelineState{Name: s.Name, State: s.State, Since: s.Since, Err: s.Err})
	}
	return out
}

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
	trust, err := bundle.LoadTrust(cfg.Trust)
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("%s: trust: %w", configFile, err)}
	}
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			log.Info("stopping: draining in-flight batches and open windows (signal again to exit now)", "signal", s.String())
			cancel()
		case <-ctx.Done():
			return
		}
		if _, ok := <-sigs; ok {
			log.Error("second signal: exiting without draining")
			os.Exit(130)
		}
	}()

	rt := pipelines.NewRuntime(pipelines.Options{Log: log, DataDir: cfg.DataDir, Edge: cfg.Edge, FromStart: flags.fromStart})
	runner := &runtimeRunner{rt: rt, env: os.LookupEnv}
	a, err := agent.Open(agent.Options{Dir: cfg.AgentDir(), Edge: cfg.Edge, Labels: cfg.Labels, Trust: trust,
		MaxBundleBytes: cfg.MaxBundleBytes, KeepReleases: cfg.KeepReleases, Log: log, Hook: applyHook}, runner)
	if errors.Is(err, agent.ErrLocked) {
		return &exitError{code: exitFailed, err: fmt.Errorf("another engine runs on %s: %w", cfg.DataDir, err)}
	}
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	defer a.Close()
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
		defs, errs := pipelines.Load(files, os.LookupEnv)
		if len(errs) > 0 {
			return &exitError{code: exitFailed, err: errs}
		}
		if _, err := runner.run(ctx, &pipelines.Release{Defs: defs}); err != nil {
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

	token, err := agent.EnsureToken(cfg.TokenFile)
	if err != nil {
		return &exitError{code: exitFailed, err: err}
	}
	srv, err := localapi.Listen(cfg.Listen, token, a, cfg.MaxBundleBytes, log)
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
	log.Info("running as edge agent", "edge", cfg.Edge, "api", srv.Addr(), "data_dir", cfg.DataDir)
	<-ctx.Done()
	return nil
}
