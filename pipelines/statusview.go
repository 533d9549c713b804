package pipelines

import (
	"strings"

	"github.com/sluice-edge/sluice/engine/agent/statuspage"
	"github.com/sluice-edge/sluice/engine/forward"
	"github.com/sluice-edge/sluice/engine/spec"
)

// StatusView describes the pipelines for the edge's status page: every
// step with its row, late and error counts, and every cloud sink with its
// link, backlog, drain rate and quota. states gives each pipeline's state
// by name (missing: "running").
func StatusView(ps []*Pipeline, states []PipelineStatus) ([]statuspage.Pipeline, []statuspage.Sink) {
	byName := make(map[string]PipelineStatus, len(states))
	for _, s := range states {
		byName[s.Name] = s
	}
	pipes := make([]statuspage.Pipeline, 0, len(ps))
	var sinks []statuspage.Sink
	for _, p := range ps {
		sp := statuspage.Pipeline{Name: p.Def.Name, State: "running"}
		if st, ok := byName[p.Def.Name]; ok {
			sp.State, sp.Since, sp.Err = st.State, st.Since, st.Err
		}
		for _, b := range p.Components {
			sp.Steps = append(sp.Steps, stepView(b))
			fs, ok := b.sink.(*forward.Sink)
			if !ok {
				continue
			}
			m := fs.Metrics()
			bs := fs.Buffer().Status()
			s := statuspage.Sink{Pipeline: p.Def.Name, Sink: b.Def.Name, Type: b.Def.Type, LinkUp: m.LinkUp,
				BacklogRows: bs.BacklogRows, BacklogBytes: bs.BacklogBytes, OldestEventTime: bs.OldestEventTime,
				DrainRate: m.DrainRate, DeadLetterRows: m.DeadLetterRows, QuotaBytes: bs.QuotaBytes, QuotaUsed: bs.QuotaUsed}
			for _, n := range m.PublishErrors {
				s.PublishErrors += n
			}
			sinks = append(sinks, s)
		}
		pipes = append(pipes, sp)
	}
	return pipes, sinks
}

// stepView is one component's counters: rows produced by a source, taken
// in by any other step; late rows; bad and failed rows.
func stepView(b *Built) statuspage.Step {
	s := statuspage.Step{Name: b.Def.Name, Kind: string(b.Def.Kind), Type: b.Def.Type}
	for _, in := range b.Def.Inputs {
		s.Inputs = append(s.Inputs, in.Stream)
	}
	if b.Counters == nil {
		return s
	}
	snap := b.Counters.Snapshot()
	if b.Def.Kind == spec.KindSource {
		s.Rows = snap["rows_out"]
	} else {
		s.Rows = snap["rows_in"]
	}
	for name, n := range snap {
		switch {
		case strings.Contains(name, "late"):
			s.Late += n
		case strings.HasPrefix(name, "bad_") || strings.Contains(name, "error") || strings.Contains(name, "failed") ||
			strings.Contains(name, "dead_letter"):
			s.Errors += n
		}
	}
	return s
}
