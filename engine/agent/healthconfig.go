package agent

import (
	"path/filepath"

	"github.com/sluice-edge/sluice/engine/health"
	"github.com/sluice-edge/sluice/engine/spec"
)

// HealthConfig is the health section: the thresholds of the health alerts
// the engine raises about itself.
type HealthConfig struct {
	// Disabled turns health alerts off.
	Disabled   bool
	Thresholds health.Thresholds
}

func healthField() spec.Field {
	d := health.Defaults
	return spec.Field{
		Name: "health", Type: spec.Object, Optional: true,
		Description: "Health alerts: the engine watches its own figures and raises alerts of type `health` (asset: the pipeline) through the same sinks and buffers as device alerts " +
			"(every buffered sink whose input is an alert stream), raised once a condition has held for a while and cleared once it has stopped for `clear_after`: " +
			"`input_stalled`, `bad_input_spike`, `late_row_spike`, `backlog_growing`, `backlog_drain_eta`, `link_down`, `buffer_quota`, `buffer_quota_critical`, `sink_dead_lettering` and `checkpoint_failed` (asset: the pipeline); `engine_restarts` and `apply_failed` (asset: the edge) (docs/operations.md).",
		Example: map[string]any{"link_down_after": "2m", "backlog_for": "10m"},
		Children: []spec.Field{
			{Name: "enabled", Type: spec.Bool, Default: true, Description: "Raise health alerts."},
			{Name: "interval", Type: spec.Duration, Default: spec.FormatDuration(d.Interval), Description: "How often the figures are sampled (at least 100ms)."},
			{Name: "stall_after", Type: spec.Duration, Default: spec.FormatDuration(d.StallAfter), Description: "`input_stalled`: a source that delivered rows has delivered none for this long."},
			{Name: "bad_min", Type: spec.Int, Default: d.BadMin, Description: "`bad_input_spike`: a source rejected at least this many inputs in one interval..."},
			{Name: "bad_ratio", Type: spec.Float, Default: d.BadRatio, Description: "...and at least this share (0 to 1) of what it read."},
			{Name: "late_min", Type: spec.Int, Default: d.LateMin, Description: "`late_row_spike`: a step dropped at least this many late rows in one interval..."},
			{Name: "late_ratio", Type: spec.Float, Default: d.LateRatio, Description: "...and at least this share (0 to 1) of its input."},
			{Name: "backlog_for", Type: spec.Duration, Default: spec.FormatDuration(d.BacklogFor), Description: "`backlog_growing`: a cloud sink's backlog has grown, never shrunk, for this long."},
			{Name: "link_down_after", Type: spec.Duration, Default: spec.FormatDuration(d.LinkDownAfter), Description: "`link_down`: a cloud sink's link has been down this long."},
			{Name: "quota_warn", Type: spec.Float, Default: d.QuotaWarn, Description: "`buffer_quota` (warning): a buffer uses this share of its quota; cleared 5 points below."},
			{Name: "quota_critical", Type: spec.Float, Default: d.QuotaCritical, Description: "`buffer_quota_critical` (critical): a buffer uses this share of its quota; cleared 5 points below."},
			{Name: "drain_eta_for", Type: spec.Duration, Default: spec.FormatDuration(d.DrainETAFor), Description: "`backlog_drain_eta`: for this long, a cloud sink with a `ttl` needs longer to drain its backlog at its drain rate than its oldest undelivered rows have left before the TTL drops them."},
			{Name: "restarts_max", Type: spec.Int, Default: d.RestartsMax, Description: "`engine_restarts`: the engine started this many times within `restarts_window` after runs that did not stop cleanly (crash, kill, power loss, exit on error), counted in the data directory."},
			{Name: "restarts_window", Type: spec.Duration, Default: spec.FormatDuration(d.RestartsWindow), Description: "The window of `restarts_max`; the alert clears once fewer restarts fall in it."},
			{Name: "clear_after", Type: spec.Duration, Default: spec.FormatDuration(d.ClearAfter), Description: "An alert clears once its condition has not held for this long."},
		},
	}
}

// parseHealth reads the health section (defaults when absent).
func parseHealth(cfg *spec.Config) (HealthConfig, spec.Errors) {
	hc := HealthConfig{Thresholds: health.Defaults}
	h := cfg.Object("health")
	if h == nil {
		return hc, nil
	}
	hc.Disabled = !h.Bool("enabled")
	hc.Thresholds = health.Thresholds{
		Interval: h.Duration("interval"), StallAfter: h.Duration("stall_after"),
		BadMin: h.Int("bad_min"), BadRatio: h.Float("bad_ratio"), LateMin: h.Int("late_min"), LateRatio: h.Float("late_ratio"),
		BacklogFor: h.Duration("backlog_for"), LinkDownAfter: h.Duration("link_down_after"),
		QuotaWarn: h.Float("quota_warn"), QuotaCritical: h.Float("quota_critical"), ClearAfter: h.Duration("clear_after"),
		DrainETAFor: h.Duration("drain_eta_for"), RestartsMax: h.Int("restarts_max"), RestartsWindow: h.Duration("restarts_window"),
	}
	if err := hc.Thresholds.Check(); err != nil {
		return hc, spec.Errors{cfg.Errorf("health", "%v", err)}
	}
	return hc, nil
}

// HealthDir is where the engine keeps what its health alerts need across
// restarts: the count of its starts and the alerts raised.
func (c *Config) HealthDir() string { return filepath.Join(c.DataDir, "health") }
