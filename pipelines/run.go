package pipelines

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/spec"
)

// BuildAll builds every def. On any error nothing is returned and every
// component built so far is closed.
func BuildAll(defs []*Def, opts Options) ([]*Pipeline, spec.Errors) {
	if opts.Shared == nil {
		opts.Shared = engine.NewShared()
	}
	var out []*Pipeline
	errs := checkPaths(defs)
	for _, d := range defs {
		p, es := Build(d, opts)
		errs = append(errs, es...)
		if p != nil {
			out = append(out, p)
		}
	}
	if len(errs) > 0 {
		for _, p := range out {
			p.Close()
		}
		errs.Sort()
		return nil, errs
	}
	return out, nil
}

// Validate loads, interpolates and builds the pipelines in paths without
// running them, and returns the pipelines read and every problem found.
func Validate(paths []string, env LookupEnv, opts Options) ([]*Def, spec.Errors) {
	defs, errs := Load(paths, env)
	// Build what could be read, so that problems in wiring, expressions and
	// schemas are reported together with the structural ones. Components
	// whose configuration is invalid are skipped by Build.
	opts.DryRun = true
	ps, es := BuildAll(defs, opts)
	for _, p := range ps {
		p.Close()
	}
	errs = append(errs, es...)
	errs.Sort()
	return defs, errs
}

// RunAll runs pipelines concurrently until all have finished (their
// sources ended) or ctx is cancelled and they have drained. It returns the
// errors of the pipelines that failed, joined.
func RunAll(ctx context.Context, ps []*Pipeline) error {
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		wg.Go(func() {
			if err := p.Graph.Run(ctx); err != nil {
				errs[i] = fmt.Errorf("pipeline %s: %w", p.Def.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// SourceRows returns the number of rows all sources of the pipelines have
// produced so far.
func SourceRows(ps []*Pipeline) int64 {
	var n int64
	for _, p := range ps {
		for _, b := range p.Components {
			if b.Def.Kind == spec.KindSource {
				n += b.Counters.Counter("rows_out").Load()
			}
		}
	}
	return n
}

// Backlog is what a cloud sink left undelivered in its buffer.
type Backlog struct {
	Pipeline, Sink string
	forward.Left
}

// Backlogs lists the cloud sinks of the pipelines that hold undelivered
// rows (after a run: what the next start sends).
func Backlogs(ps []*Pipeline) []Backlog {
	var out []Backlog
	for _, p := range ps {
		for _, b := range p.Components {
			fs, ok := b.sink.(*forward.Sink)
			if !ok {
				continue
			}
			if l := fs.Left(); l.Rows > 0 {
				out = append(out, Backlog{Pipeline: p.Def.Name, Sink: b.Def.Name, Left: l})
			}
		}
	}
	return out
}
