package statuspage

import (
	"fmt"
	"sort"
	"time"
)

// View is what the page shows: one snapshot of the edge, served as JSON
// at DataPath.
type View struct {
	Edge string `json:"edge"`
	// Time is when the snapshot was taken.
	Time     time.Time `json:"time"`
	Software string    `json:"software,omitempty"`
	// Bundle and Version name the running release (empty: the engine runs
	// the pipelines of its configuration).
	Bundle  string `json:"bundle,omitempty"`
	Version uint64 `json:"version,omitempty"`
	// Pipelines are the running pipelines and their steps.
	Pipelines []Pipeline `json:"pipelines"`
	// Sinks are the cloud sinks (buffered, forwarded).
	Sinks []Sink `json:"sinks"`
	// Alerts are the active alerts: those the source reports and, unless
	// HealthAlerts, the health conditions the page derives from the
	// snapshot (Conditions).
	Alerts []Alert `json:"alerts"`
	// HealthAlerts says that Alerts hold the engine's health alerts
	// (raised and cleared with hysteresis), so that the page derives none.
	HealthAlerts bool `json:"health_alerts"`
	// Applies is the apply history, newest first; Pending the bundles
	// staged for the next start.
	Applies []Apply  `json:"applies"`
	Pending []string `json:"pending,omitempty"`
	// Warnings are the newest warnings and errors of the log;
	// WarningsNote says why there are none to show (no log file, say).
	Warnings     []Warning `json:"warnings"`
	WarningsNote string    `json:"warnings_note,omitempty"`
	// Control says that the edge runs a command arbiter (a control
	// section); Commands are its most recent commands, newest first.
	Control  bool      `json:"control"`
	Commands []Command `json:"commands"`
}

// Command is one command of the arbiter and its status.
type Command struct {
	ID      string `json:"id"`
	Product string `json:"product,omitempty"`
	Asset   string `json:"asset"`
	Service string `json:"service"`
	// Inputs are the command's inputs as JSON text (empty: none).
	Inputs string `json:"inputs,omitempty"`
	Origin string `json:"origin,omitempty"`
	Class  string `json:"class,omitempty"`
	// Status is accepted, queued, sent, acked, failed, timeout,
	// rejected, expired or superseded; Reason says why a command did not
	// succeed (or carries the device's reply message).
	Status  string    `json:"status"`
	Reason  string    `json:"reason,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// Pipeline is one running pipeline.
type Pipeline struct {
	Name  string    `json:"name"`
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"`
	Err   string    `json:"err,omitempty"`
	Steps []Step    `json:"steps"`
}

// Step is one component of a pipeline and its counters.
type Step struct {
	Name string `json:"name"`
	// Kind is source, operator or sink; Type the component type.
	Kind   string   `json:"kind"`
	Type   string   `json:"type"`
	Inputs []string `json:"inputs,omitempty"`
	// Rows counts the rows the step produced (a source) or took in;
	// RowsPerSec is its rate over the last sampling interval (filled in by
	// the handler).
	Rows       int64   `json:"rows"`
	RowsPerSec float64 `json:"rows_per_sec"`
	// Late counts late rows, Errors bad or failed rows.
	Late   int64 `json:"late"`
	Errors int64 `json:"errors"`
}

// Sink is the link and backlog of one cloud sink.
type Sink struct {
	Pipeline string `json:"pipeline"`
	Sink     string `json:"sink"`
	Type     string `json:"type"`
	LinkUp   bool   `json:"link_up"`
	// BacklogRows and BacklogBytes are the undelivered rows and the bytes
	// holding them; OldestEventTime the event time of the oldest.
	BacklogRows     int64     `json:"backlog_rows"`
	BacklogBytes    int64     `json:"backlog_bytes"`
	OldestEventTime time.Time `json:"oldest_event_time,omitzero"`
	// DrainRate is backlog rows confirmed per second; ETASeconds the
	// backlog over it (-1: not draining).
	DrainRate  float64 `json:"drain_rows_per_second"`
	ETASeconds float64 `json:"eta_seconds"`
	// DeadLetterRows and PublishErrors count rows set aside and failed
	// publish calls.
	DeadLetterRows int64 `json:"dead_letter_rows"`
	PublishErrors  int64 `json:"publish_errors"`
	// QuotaBytes is the buffer's quota (0: unlimited), QuotaUsed its use.
	QuotaBytes int64 `json:"quota_bytes"`
	QuotaUsed  int64 `json:"quota_used"`
}

// Alert is an active alert.
type Alert struct {
	// Asset is what the alert is about (the edge, pipeline/sink, ...).
	Asset string `json:"asset"`
	// Type is "health" for the engine's own conditions.
	Type     string    `json:"type"`
	Name     string    `json:"name"`
	Severity string    `json:"severity"`
	Message  string    `json:"message"`
	Since    time.Time `json:"since,omitzero"`
}

// Apply is one bundle apply (or refusal).
type Apply struct {
	Time    time.Time `json:"time"`
	Bundle  string    `json:"bundle"`
	Version uint64    `json:"version"`
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
}

// Warning is one warning or error of the log.
type Warning struct {
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	// Text is the record as a line of text.
	Text string `json:"text"`
}

// quotaWarn is the share of a buffer's quota above which the page raises
// buffer_quota.
const quotaWarn = 0.8

// Conditions returns the health conditions visible in v: a cloud sink's
// link down, rows dead-lettered, a buffer above 80% of its quota, a
// pipeline that failed. Since is left zero (the handler tracks it). The
// page shows them when the engine raises no health alerts itself.
func Conditions(v *View) []Alert {
	var out []Alert
	for _, s := range v.Sinks {
		asset := s.Pipeline + "/" + s.Sink
		if !s.LinkUp {
			out = append(out, Alert{Asset: asset, Type: "health", Name: "link_down", Severity: "major",
				Message: fmt.Sprintf("the link of cloud sink %s is down; %d rows wait in its buffer", asset, s.BacklogRows)})
		}
		if s.DeadLetterRows > 0 {
			out = append(out, Alert{Asset: asset, Type: "health", Name: "sink_dead_lettering", Severity: "major",
				Message: fmt.Sprintf("%d rows of %s were refused by the broker and set aside", s.DeadLetterRows, asset)})
		}
		if s.QuotaBytes > 0 && float64(s.QuotaUsed) > quotaWarn*float64(s.QuotaBytes) {
			out = append(out, Alert{Asset: asset, Type: "health", Name: "buffer_quota", Severity: "major",
				Message: fmt.Sprintf("the buffer of %s uses %.0f%% of its quota", asset, 100*float64(s.QuotaUsed)/float64(s.QuotaBytes))})
		}
	}
	for _, p := range v.Pipelines {
		if p.State == "failed" {
			out = append(out, Alert{Asset: p.Name, Type: "health", Name: "pipeline_failed", Severity: "critical",
				Message: "pipeline " + p.Name + " failed: " + p.Err})
		}
	}
	return out
}

// sortAlerts orders alerts by severity, then asset and name.
func sortAlerts(as []Alert) {
	rank := map[string]int{"critical": 0, "major": 1, "minor": 2}
	sort.SliceStable(as, func(i, j int) bool {
		ri, ok := rank[as[i].Severity]
		if !ok {
			ri = 3
		}
		rj, ok := rank[as[j].Severity]
		if !ok {
			rj = 3
		}
		if ri != rj {
			return ri < rj
		}
		if as[i].Asset != as[j].Asset {
			return as[i].Asset < as[j].Asset
		}
		return as[i].Name < as[j].Name
	})
}
