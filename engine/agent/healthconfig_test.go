package agent

import (
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/health"
)

func TestHealthConfig(t *testing.T) {
	custom := health.Defaults
	custom.LinkDownAfter, custom.BacklogFor, custom.BadRatio = 2*time.Minute, 10*time.Minute, 0.2
	custom.DrainETAFor, custom.RestartsMax, custom.RestartsWindow = 5*time.Minute, 5, 30*time.Minute
	testSection(t, "health", []sectionCase[HealthConfig]{
		{"defaults", "", HealthConfig{Thresholds: health.Defaults}, ""},
		{"set", "health: {link_down_after: 2m, backlog_for: 10m, bad_ratio: 0.2, drain_eta_for: 5m, restarts_max: 5, restarts_window: 30m}\n", HealthConfig{Thresholds: custom}, ""},
		{"no restarts", "health: {restarts_max: 0}\n", HealthConfig{}, "restarts_max"},
		{"off", "health: {enabled: false}\n", HealthConfig{Disabled: true, Thresholds: health.Defaults}, ""},
		{"ratio over 1", "health: {bad_ratio: 3}\n", HealthConfig{}, "bad_ratio"},
		{"critical below warn", "health: {quota_warn: 0.9, quota_critical: 0.5}\n", HealthConfig{}, "quota_critical"},
		{"interval too short", "health: {interval: 1ms}\n", HealthConfig{}, "interval"},
		{"unknown field", "health: {loud: true}\n", HealthConfig{}, "loud"},
	}, func(c *Config) HealthConfig { return c.Health })
}
