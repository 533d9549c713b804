package health

import (
	"fmt"
	"time"

	"github.com/sluice-edge/sluice/engine"
)

// maxRestarts bounds RestartsMax and the restarts RecordStart keeps.
const maxRestarts = 1000

// drainETA returns the time the backlog of l takes to drain at its drain
// rate, the time left before its oldest undelivered rows expire, and
// whether the first is beyond the second. Without a drain rate (nothing
// drained lately, or the link is down: link_down speaks then) there is no
// estimate and no alert.
func drainETA(l Link, now time.Time) (eta, left time.Duration, late bool) {
	left = l.TTL
	if !l.OldestEventTime.IsZero() {
		left = max(l.TTL-now.Sub(l.OldestEventTime), 0)
	}
	if l.TTL <= 0 || !l.LinkUp || l.BacklogRows <= 0 || !(l.DrainRate > 0) {
		return 0, left, false
	}
	secs := float64(l.BacklogRows) / l.DrainRate
	if secs > float64(365*24*3600) {
		secs = float64(365 * 24 * 3600)
	}
	eta = time.Duration(secs * float64(time.Second))
	return eta, left, eta > left
}

// observeEngine steps the rules about the engine itself.
func (m *Monitor) observeEngine(out []engine.EngineAlert, now time.Time, e *Engine) []engine.EngineAlert {
	edge := e.Edge
	if edge == "" {
		edge = "engine"
	}
	var n int64
	var oldest time.Time
	for _, t := range e.Restarts {
		if t.After(now.Add(-m.th.RestartsWindow)) && !t.After(now) {
			if n == 0 {
				oldest = t
			}
			n++
		}
	}
	out = m.stepSince(out, key{RuleRestarts, edge, "engine"}, now, oldest, n >= m.th.RestartsMax,
		0, m.th.ClearAfter, "critical", float64(n),
		fmt.Sprintf("the engine restarted %d times in %s after runs that did not stop cleanly (crash loop?)", n, m.th.RestartsWindow),
		fmt.Sprintf("the engine restarted %d times in the last %s", n, m.th.RestartsWindow))
	if a := e.Apply; a != nil {
		out = m.stepSince(out, key{RuleApplyFailed, edge, "apply"}, now, a.Since, a.Failed,
			0, 0, "major", 0,
			a.Text+"; the engine runs the release it ran before",
			a.Text+" after a failed apply")
	}
	return out
}

// Raised is a raised alert's condition, kept across restarts of the
// engine (Monitor.Raised, Monitor.Restore).
type Raised struct {
	Rule      string    `json:"rule"`
	Pipeline  string    `json:"pipeline"`
	Component string    `json:"component"`
	Severity  string    `json:"severity,omitempty"`
	Occur     time.Time `json:"occur"`
}

// Raised returns the conditions whose alert is raised, sorted.
func (m *Monitor) Raised() []Raised {
	var out []Raised
	for _, k := range m.sortedKeys() {
		if c := m.conds[k]; c.raised {
			out = append(out, Raised{Rule: k.rule, Pipeline: k.pipeline, Component: k.component, Severity: c.severity, Occur: c.occur})
		}
	}
	return out
}

// Restore marks the conditions rs, whose alerts an earlier run of the
// engine raised, as raised: a later sample that finds one still holding
// keeps it (same alert id), one that finds it no longer holding clears
// it, and the first sample that does not look at it clears it. Call it
// before the first Observe.
func (m *Monitor) Restore(rs []Raised) {
	for _, r := range rs {
		k := key{r.Rule, r.Pipeline, r.Component}
		if r.Rule == "" || m.conds[k] != nil {
			continue
		}
		m.conds[k] = &cond{trueSince: r.Occur, holding: true, raised: true, occur: r.Occur, restored: true, severity: r.Severity}
	}
}
