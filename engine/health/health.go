// Package health watches the engine's own figures and turns them into
// health alerts (engine.EngineAlert records of type "health") raised and
// cleared with hysteresis: a condition must hold for a while before its
// alert is raised, and must have stopped for a while before it is cleared,
// so that a figure hovering at a threshold does not flood the alert path.
//
// Monitor is a pure state machine: the caller samples the figures
// (Sample) at a steady interval and passes each sample, with its time, to
// Observe, which returns the alerts raised and cleared. Time comes only
// from the samples, so tests drive it with a manual clock.
//
// Rules (asset: the pipeline; the alert id names the component):
//
//   - input_stalled: a source that delivered rows delivers none for
//     StallAfter (the source itself is still running);
//   - bad_input_spike: a source rejects at least BadMin rows in an
//     interval, and at least BadRatio of what it read;
//   - late_row_spike: an operator counts at least LateMin late rows in an
//     interval, and at least LateRatio of its input;
//   - backlog_growing: a cloud sink's backlog grows (never shrinks) for
//     BacklogFor;
//   - link_down: a cloud sink's link is down for LinkDownAfter;
//   - buffer_quota: a cloud sink's buffer uses QuotaWarn (warning) or
//     QuotaCritical (critical) of its quota; cleared 5 points below;
//   - sink_dead_lettering: a cloud sink moved rows to its dead-letter
//     segment (the broker refused them for good) in an interval;
//   - backlog_drain_eta: a cloud sink with a TTL drains its backlog so
//     slowly (backlog rows / drain rate) that the oldest undelivered rows
//     would expire before they are sent, for DrainETAFor;
//   - checkpoint_failed: a pipeline's newest checkpoint failed (asset: the
//     pipeline, component "checkpoint"); cleared once one succeeds or the
//     pipeline is rebuilt;
//
// and about the engine itself (asset: the edge, component "engine"):
//
//   - engine_restarts: the engine started at least RestartsMax times
//     within RestartsWindow after a run that did not stop cleanly (a
//     crash, a kill, a power loss, an exit on error), counted durably in
//     the data directory (RecordStart);
//   - apply_failed: the newest bundle apply was refused or failed;
//     cleared by the next successful apply.
package health

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/sluice-edge/sluice/engine"
)

// Rules of health alerts.
const (
	RuleInputStalled   = "input_stalled"
	RuleBadInputSpike  = "bad_input_spike"
	RuleLateRowSpike   = "late_row_spike"
	RuleBacklogGrowing = "backlog_growing"
	RuleLinkDown       = "link_down"
	RuleBufferQuota    = "buffer_quota"
	RuleBufferCritical = "buffer_quota_critical"
	RuleDeadLettering  = "sink_dead_lettering"
	RuleDrainETA       = "backlog_drain_eta"
	RuleCheckpoint     = "checkpoint_failed"
	RuleRestarts       = "engine_restarts"
	RuleApplyFailed    = "apply_failed"
)

// Type is the type of every health alert.
const Type = "health"

// Thresholds configure a Monitor. Zero fields take the defaults
// (Defaults).
type Thresholds struct {
	// Interval is how often the figures are sampled.
	Interval time.Duration
	// StallAfter: input_stalled is raised after this long without rows.
	StallAfter time.Duration
	// BadMin, BadRatio: bad_input_spike thresholds per interval.
	BadMin   int64
	BadRatio float64
	// LateMin, LateRatio: late_row_spike thresholds per interval.
	LateMin   int64
	LateRatio float64
	// BacklogFor: backlog_growing is raised after the backlog grew this
	// long.
	BacklogFor time.Duration
	// LinkDownAfter: link_down is raised after the link was down this
	// long.
	LinkDownAfter time.Duration
	// QuotaWarn, QuotaCritical: buffer quota use (0 to 1) raising
	// buffer_quota and buffer_quota_critical.
	QuotaWarn, QuotaCritical float64
	// DrainETAFor: backlog_drain_eta is raised after the drain ETA has
	// been beyond the time left before the TTL for this long.
	DrainETAFor time.Duration
	// RestartsMax, RestartsWindow: engine_restarts is raised after this
	// many unclean restarts within the window.
	RestartsMax    int64
	RestartsWindow time.Duration
	// ClearAfter: an alert is cleared once its condition has not held
	// for this long (input_stalled and link_down: once rows flow again /
	// the link is up for this long).
	ClearAfter time.Duration
}

// Defaults are the thresholds of a Monitor unless configured otherwise.
var Defaults = Thresholds{
	Interval:       10 * time.Second,
	StallAfter:     time.Minute,
	BadMin:         10,
	BadRatio:       0.05,
	LateMin:        10,
	LateRatio:      0.05,
	BacklogFor:     5 * time.Minute,
	LinkDownAfter:  time.Minute,
	QuotaWarn:      0.80,
	QuotaCritical:  0.95,
	ClearAfter:     30 * time.Second,
	DrainETAFor:    2 * time.Minute,
	RestartsMax:    3,
	RestartsWindow: time.Hour,
}

// WithDefaults returns t with its zero fields set from Defaults.
func (t Thresholds) WithDefaults() Thresholds {
	d := Defaults
	set := func(dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst = v
		}
	}
	set(&d.Interval, t.Interval)
	set(&d.StallAfter, t.StallAfter)
	set(&d.BacklogFor, t.BacklogFor)
	set(&d.LinkDownAfter, t.LinkDownAfter)
	set(&d.ClearAfter, t.ClearAfter)
	set(&d.DrainETAFor, t.DrainETAFor)
	set(&d.RestartsWindow, t.RestartsWindow)
	if t.RestartsMax != 0 {
		d.RestartsMax = t.RestartsMax
	}
	if t.BadMin != 0 {
		d.BadMin = t.BadMin
	}
	if t.BadRatio != 0 {
		d.BadRatio = t.BadRatio
	}
	if t.LateMin != 0 {
		d.LateMin = t.LateMin
	}
	if t.LateRatio != 0 {
		d.LateRatio = t.LateRatio
	}
	if t.QuotaWarn != 0 {
		d.QuotaWarn = t.QuotaWarn
	}
	if t.QuotaCritical != 0 {
		d.QuotaCritical = t.QuotaCritical
	}
	return d
}

// Check checks the bounds of t (after WithDefaults).
func (t Thresholds) Check() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", t.Interval}, {"stall_after", t.StallAfter}, {"backlog_for", t.BacklogFor}, {"link_down_after", t.LinkDownAfter}, {"clear_after", t.ClearAfter},
		{"drain_eta_for", t.DrainETAFor}, {"restarts_window", t.RestartsWindow}} {
		if d.v < 0 || d.v > 7*24*time.Hour {
			return fmt.Errorf("health: %s %v is not from 0 to 7 days", d.name, d.v)
		}
	}
	if t.Interval < 100*time.Millisecond {
		return fmt.Errorf("health: interval %v is below 100ms", t.Interval)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"bad_ratio", t.BadRatio}, {"late_ratio", t.LateRatio}, {"quota_warn", t.QuotaWarn}, {"quota_critical", t.QuotaCritical}} {
		if !(r.v > 0 && r.v <= 1) {
			return fmt.Errorf("health: %s %v is not above 0 and at most 1", r.name, r.v)
		}
	}
	if t.QuotaCritical < t.QuotaWarn {
		return fmt.Errorf("health: quota_critical %v is below quota_warn %v", t.QuotaCritical, t.QuotaWarn)
	}
	if t.BadMin < 1 || t.LateMin < 1 {
		return fmt.Errorf("health: bad_min and late_min are at least 1")
	}
	if t.RestartsMax < 1 || t.RestartsMax > maxRestarts {
		return fmt.Errorf("health: restarts_max %d is not from 1 to %d", t.RestartsMax, maxRestarts)
	}
	if t.RestartsWindow <= 0 {
		return fmt.Errorf("health: restarts_window %v is not above 0", t.RestartsWindow)
	}
	return nil
}

// Input is a component reading rows: a source (Rows read, Bad rejected)
// or an operator counting late rows (Rows in, Late). Counts are totals
// since the component started; a total that goes down starts again (the
// component was rebuilt).
type Input struct {
	Pipeline, Component string
	Source              bool
	Rows, Bad, Late     int64
}

// Link is a cloud sink with a durable buffer.
type Link struct {
	Pipeline, Component string
	BacklogRows         int64
	LinkUp              bool
	// QuotaBytes is the buffer's quota (0: none) and QuotaUsed its use.
	QuotaBytes, QuotaUsed int64
	// DeadLetterRows counts the rows moved to the dead-letter segment
	// since the sink started.
	DeadLetterRows int64
	// TTL is the buffer's TTL (0: none); OldestEventTime the event time
	// of the oldest undelivered rows (zero: unknown, or a TTL by age);
	// DrainRate the backlog rows confirmed per second.
	TTL             time.Duration
	OldestEventTime time.Time
	DrainRate       float64
}

// Checkpoint is the checkpointing of a pipeline that takes checkpoints.
type Checkpoint struct {
	Pipeline string
	// LastSuccess and LastFailure are when a checkpoint was last saved
	// and last failed (zero: never); Err is the last failure.
	LastSuccess, LastFailure time.Time
	Err                      string
}

// Apply is the outcome of the newest bundle apply.
type Apply struct {
	// Failed is set when the newest apply was refused or failed; Since
	// is the first failure after the last successful apply and Text says
	// what failed.
	Failed bool
	Since  time.Time
	Text   string
}

// Engine is the figures of the engine itself.
type Engine struct {
	// Edge is the asset of its alerts.
	Edge string
	// Restarts are the times the engine started after a run that did not
	// stop cleanly, oldest first (RecordStart).
	Restarts []time.Time
	// Apply is the newest apply's outcome (nil: none known).
	Apply *Apply
}

// Sample is the figures at one time.
type Sample struct {
	Time        time.Time
	Inputs      []Input
	Links       []Link
	Checkpoints []Checkpoint
	// Engine is nil when the engine's own figures are not watched.
	Engine *Engine
}

// key names one condition.
type key struct{ rule, pipeline, component string }

// cond is the hysteresis state of one condition.
type cond struct {
	trueSince, falseSince time.Time // when it last became true / false
	holding               bool
	raised                bool
	occur                 time.Time // when the raised alert's condition began
	seen                  time.Time // last sample that named it
	restored              bool      // raised by an earlier run (Restore)
	severity              string    // of the raise
}

// prevInput and prevLink are the previous sample's figures.
type prevInput struct{ rows, bad, late int64 }

// Monitor turns samples into health alerts. It is not safe for concurrent
// use.
type Monitor struct {
	th     Thresholds
	conds  map[key]*cond
	inputs map[key]prevInput
	flowed map[key]bool // sources that delivered rows at some point
	links  map[key]prevLink
}

type prevLink struct{ backlog, dead int64 }

// New returns a Monitor with thresholds th (zero fields: Defaults).
func New(th Thresholds) (*Monitor, error) {
	th = th.WithDefaults()
	if err := th.Check(); err != nil {
		return nil, err
	}
	return &Monitor{th: th, conds: map[key]*cond{}, inputs: map[key]prevInput{}, flowed: map[key]bool{}, links: map[key]prevLink{}}, nil
}

// Thresholds returns the monitor's thresholds.
func (m *Monitor) Thresholds() Thresholds { return m.th }

// Observe takes the sample s and returns the alerts raised and cleared by
// it, in a stable order.
func (m *Monitor) Observe(s Sample) []engine.EngineAlert {
	var out []engine.EngineAlert
	now := s.Time
	for _, in := range s.Inputs {
		k := key{pipeline: in.Pipeline, component: in.Component}
		prev, seen := m.inputs[k]
		m.inputs[k] = prevInput{in.Rows, in.Bad, in.Late}
		if !seen || in.Rows < prev.rows || in.Bad < prev.bad || in.Late < prev.late {
			continue // the first sample (or a restart) gives no rates
		}
		rows, bad, late := in.Rows-prev.rows, in.Bad-prev.bad, in.Late-prev.late
		if in.Source {
			if rows > 0 {
				m.flowed[k] = true
			}
			out = m.step(out, key{RuleInputStalled, in.Pipeline, in.Component}, now, m.flowed[k] && rows == 0 && bad == 0,
				m.th.StallAfter, m.th.ClearAfter, "major", 0,
				fmt.Sprintf("source %s/%s delivers no rows", in.Pipeline, in.Component),
				fmt.Sprintf("source %s/%s delivers rows again", in.Pipeline, in.Component))
			out = m.step(out, key{RuleBadInputSpike, in.Pipeline, in.Component}, now,
				bad >= m.th.BadMin && float64(bad) >= m.th.BadRatio*float64(rows+bad),
				0, m.th.ClearAfter, "major", float64(bad),
				fmt.Sprintf("source %s/%s rejected %d of %d inputs in %s", in.Pipeline, in.Component, bad, rows+bad, m.th.Interval),
				fmt.Sprintf("source %s/%s rejects few inputs again", in.Pipeline, in.Component))
		}
		if late > 0 || m.conds[key{RuleLateRowSpike, in.Pipeline, in.Component}] != nil {
			out = m.step(out, key{RuleLateRowSpike, in.Pipeline, in.Component}, now,
				late >= m.th.LateMin && float64(late) >= m.th.LateRatio*float64(max(rows, late)),
				0, m.th.ClearAfter, "minor", float64(late),
				fmt.Sprintf("%s/%s dropped %d late rows of %d in %s", in.Pipeline, in.Component, late, rows, m.th.Interval),
				fmt.Sprintf("%s/%s gets few late rows again", in.Pipeline, in.Component))
		}
	}
	for _, l := range s.Links {
		k := key{pipeline: l.Pipeline, component: l.Component}
		pl, seen := m.links[k]
		m.links[k] = prevLink{l.BacklogRows, l.DeadLetterRows}
		if seen {
			prev := pl.backlog
			growing := l.BacklogRows > 0 && l.BacklogRows >= prev
			if c := m.conds[key{RuleBacklogGrowing, l.Pipeline, l.Component}]; growing && (c == nil || !c.holding) && l.BacklogRows == prev {
				growing = false // growth starts with a rise
			}
			if dead := l.DeadLetterRows - pl.dead; dead > 0 || m.conds[key{RuleDeadLettering, l.Pipeline, l.Component}] != nil {
				out = m.step(out, key{RuleDeadLettering, l.Pipeline, l.Component}, now, dead > 0,
					0, m.th.ClearAfter, "major", float64(max(dead, 0)),
					fmt.Sprintf("%s/%s moved %d rows the broker refused to its dead-letter segment", l.Pipeline, l.Component, dead),
					fmt.Sprintf("%s/%s dead-letters no more rows", l.Pipeline, l.Component))
			}
			out = m.step(out, key{RuleBacklogGrowing, l.Pipeline, l.Component}, now, growing,
				m.th.BacklogFor, m.th.ClearAfter, "major", float64(l.BacklogRows),
				fmt.Sprintf("the backlog of %s/%s keeps growing: %d rows", l.Pipeline, l.Component, l.BacklogRows),
				fmt.Sprintf("the backlog of %s/%s no longer grows: %d rows", l.Pipeline, l.Component, l.BacklogRows))
		}
		if l.TTL > 0 || m.conds[key{RuleDrainETA, l.Pipeline, l.Component}] != nil {
			eta, left, late := drainETA(l, now)
			out = m.step(out, key{RuleDrainETA, l.Pipeline, l.Component}, now, late,
				m.th.DrainETAFor, m.th.ClearAfter, "major", eta.Seconds(),
				fmt.Sprintf("the backlog of %s/%s drains in %s at %.1f rows/s; its oldest rows expire in %s (ttl %s)",
					l.Pipeline, l.Component, eta.Round(time.Second), l.DrainRate, left.Round(time.Second), l.TTL),
				fmt.Sprintf("the backlog of %s/%s drains before its ttl again", l.Pipeline, l.Component))
		}
		out = m.step(out, key{RuleLinkDown, l.Pipeline, l.Component}, now, !l.LinkUp,
			m.th.LinkDownAfter, m.th.ClearAfter, "major", float64(l.BacklogRows),
			fmt.Sprintf("the link of %s/%s is down (%d rows waiting)", l.Pipeline, l.Component, l.BacklogRows),
			fmt.Sprintf("the link of %s/%s is up again", l.Pipeline, l.Component))
		if l.QuotaBytes > 0 {
			use := float64(l.QuotaUsed) / float64(l.QuotaBytes)
			for _, q := range []struct {
				rule, severity string
				at             float64
			}{{RuleBufferQuota, "warning", m.th.QuotaWarn}, {RuleBufferCritical, "critical", m.th.QuotaCritical}} {
				k := key{q.rule, l.Pipeline, l.Component}
				holds := use >= q.at
				if c := m.conds[k]; c != nil && c.raised && use >= q.at-0.05 {
					holds = true // cleared only 5 points below
				}
				out = m.step(out, k, now, holds, 0, 0, q.severity, use*100,
					fmt.Sprintf("the buffer of %s/%s uses %.0f%% of its quota", l.Pipeline, l.Component, use*100),
					fmt.Sprintf("the buffer of %s/%s uses %.0f%% of its quota again", l.Pipeline, l.Component, use*100))
			}
		}
	}
	for _, cp := range s.Checkpoints {
		failed := !cp.LastFailure.IsZero() && cp.LastFailure.After(cp.LastSuccess)
		out = m.stepSince(out, key{RuleCheckpoint, cp.Pipeline, "checkpoint"}, now, cp.LastFailure, failed,
			0, m.th.ClearAfter, "critical", 0,
			fmt.Sprintf("a checkpoint of pipeline %s failed: %s", cp.Pipeline, cp.Err),
			fmt.Sprintf("pipeline %s takes checkpoints again", cp.Pipeline))
	}
	if e := s.Engine; e != nil {
		out = m.observeEngine(out, now, e)
	}
	// A raised alert whose component is gone (a new release removed it)
	// is cleared.
	for _, k := range m.sortedKeys() {
		c := m.conds[k]
		if c.seen.Equal(now) {
			continue
		}
		if c.raised {
			text := fmt.Sprintf("%s/%s is gone", k.pipeline, k.component)
			if c.restored {
				text = fmt.Sprintf("%s/%s: raised before the engine restarted; watched afresh", k.pipeline, k.component)
			}
			out = append(out, m.alert(k, c, now, false, 0, c.severity, text))
		}
		delete(m.conds, k)
	}
	return out
}

// sortedKeys returns the keys of the conditions, sorted.
func (m *Monitor) sortedKeys() []key {
	keys := make([]key, 0, len(m.conds))
	for k := range m.conds {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.rule != b.rule {
			return compare(a.rule, b.rule)
		}
		if a.pipeline != b.pipeline {
			return compare(a.pipeline, b.pipeline)
		}
		return compare(a.component, b.component)
	})
	return keys
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// step advances the condition k to holds at now and appends the alert a
// transition makes: raised once it has held for raiseAfter, cleared once
// it has not held for clearAfter.
func (m *Monitor) step(out []engine.EngineAlert, k key, now time.Time, holds bool, raiseAfter, clearAfter time.Duration,
	severity string, value float64, raiseText, clearText string) []engine.EngineAlert {
	return m.stepSince(out, k, now, time.Time{}, holds, raiseAfter, clearAfter, severity, value, raiseText, clearText)
}

// stepSince is step for a condition known to hold since a time before
// now (from durable figures: a failure's time); zero since is now.
func (m *Monitor) stepSince(out []engine.EngineAlert, k key, now, since time.Time, holds bool, raiseAfter, clearAfter time.Duration,
	severity string, value float64, raiseText, clearText string) []engine.EngineAlert {
	c := m.conds[k]
	if c == nil {
		if !holds {
			return out
		}
		c = &cond{}
		m.conds[k] = c
	}
	c.seen = now
	if holds && !c.holding {
		c.holding, c.trueSince = true, now
		if !since.IsZero() && since.Before(now) {
			c.trueSince = since
		}
	} else if !holds && c.holding {
		c.holding, c.falseSince = false, now
	}
	switch {
	case holds && !c.raised && !now.Before(c.trueSince.Add(raiseAfter)):
		c.raised, c.occur, c.severity, c.restored = true, c.trueSince, severity, false
		out = append(out, m.alert(k, c, now, true, value, severity, raiseText))
	case !holds && c.raised && !now.Before(c.falseSince.Add(clearAfter)):
		out = append(out, m.alert(k, c, now, false, value, severity, clearText))
		delete(m.conds, k)
	case !holds && !c.raised:
		delete(m.conds, k)
	}
	return out
}

// alert builds the raise or clear record of condition k.
func (m *Monitor) alert(k key, c *cond, now time.Time, raise bool, value float64, severity, text string) engine.EngineAlert {
	if severity == "" {
		severity = "major"
	}
	a := engine.EngineAlert{
		ID:    engine.EngineAlertID(k.rule, k.pipeline+"/"+k.component, strconv.FormatInt(c.occur.UnixMilli(), 10)),
		Asset: k.pipeline, Rule: k.rule, Severity: severity, Type: Type, Content: text, Value: value,
		State: engine.AlertRaised, Occur: c.occur,
	}
	if !raise {
		a.State, a.Recover = engine.AlertCleared, now
	}
	return a
}
