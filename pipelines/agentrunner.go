package pipelines

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
)

// AgentRunner applies the releases an edge agent installs to a Runtime:
// it is the agent's agent.Runner (and agent.Stater). The first release it
// is given starts the runtime; every later one is switched to.
type AgentRunner struct {
	rt  *Runtime
	env LookupEnv
	// onRelease, when set, is called with every release that runs (to
	// apply its settings, such as the log level).
	onRelease func(*Release)

	mu      sync.Mutex
	started bool
}

// NewAgentRunner returns a runner for rt; release variables not set by a
// release's settings are looked up in env. onRelease, when not nil, is
// called with each release once it runs.
func NewAgentRunner(rt *Runtime, env LookupEnv, onRelease func(*Release)) *AgentRunner {
	return &AgentRunner{rt: rt, env: env, onRelease: onRelease}
}

// load reads the release unpacked in dir.
func (r *AgentRunner) load(dir string, m *bundle.Manifest) (*Release, error) {
	if m.Version > math.MaxInt64 {
		return nil, fmt.Errorf("version %d is out of range", m.Version)
	}
	rel, errs := LoadRelease(dir, r.env)
	if len(errs) > 0 {
		return nil, errs
	}
	rel.Name, rel.Version = m.Name, int64(m.Version)
	return rel, nil
}

// Check dry-runs the release in dir: it loads and builds every pipeline
// against the release's models and rule sets, opening nothing.
func (r *AgentRunner) Check(dir string, m *bundle.Manifest) error {
	rel, err := r.load(dir, m)
	if err != nil {
		return err
	}
	if errs := r.rt.Check(rel); len(errs) > 0 {
		return errs
	}
	return nil
}

// Switch starts the release in dir, or switches to it once one runs.
func (r *AgentRunner) Switch(ctx context.Context, dir string, m *bundle.Manifest) (string, error) {
	rel, err := r.load(dir, m)
	if err != nil {
		return "", err
	}
	return r.Run(ctx, rel)
}

// Run starts rel or switches to it, and says what it did.
func (r *AgentRunner) Run(ctx context.Context, rel *Release) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out string
	if !r.started {
		if err := r.rt.Start(ctx, rel); err != nil {
			return "", err
		}
		r.started = true
		out = fmt.Sprintf("started %d pipeline(s)", len(rel.Defs))
	} else {
		rep, err := r.rt.Switch(ctx, rel)
		if err != nil {
			return "", err
		}
		out = rep.String()
	}
	if r.onRelease != nil {
		r.onRelease(rel)
	}
	return out, nil
}

// Pipelines reports the runtime's pipelines for the agent's status.
func (r *AgentRunner) Pipelines() []agent.PipelineState {
	var out []agent.PipelineState
	for _, s := range r.rt.Status() {
		out = append(out, agent.PipelineState{Name: s.Name, State: s.State, Since: s.Since, Err: s.Err})
	}
	return out
}

var (
	_ agent.Runner = (*AgentRunner)(nil)
	_ agent.Stater = (*AgentRunner)(nil)
)
