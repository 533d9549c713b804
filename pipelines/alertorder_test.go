package pipelines_test

import (
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/pipelines"
)

// TestAlertOrderAfterWindow: an alert step reading a window step's
// windows (already in event-time order per asset) evaluates them in
// arrival order by default, so the order fields are refused there unless
// order: event_time is set; reading anything else, it orders rows by event
// time and takes them.
func TestAlertOrderAfterWindow(t *testing.T) {
	const head = `name: o
sources:
  farm: {type: sim, turbines: 2, interval: 1s, rate: 10, faults: 0}
steps:
  stats: {type: window, input: farm, size: 1m, aggregates: {power: [avg]}}
`
	const rules = "rules: [{name: low, expr: power_avg < 10}]"
	for _, c := range []struct {
		name, step, want string
	}{
		{"after a window", "  alerts: {type: alert, input: stats, lateness: 5m, " + rules + "}\n",
			"lateness orders rows by event time, but the step evaluates them in arrival order: the input is a window step's windows"},
		{"after a window, ordered again", "  alerts: {type: alert, input: stats, order: event_time, lateness: 5m, " + rules + "}\n", ""},
		{"after a window's late rows", "  alerts: {type: alert, input: stats.late, lateness: 5m, rules: [{name: low, expr: power < 10}]}\n", ""},
		{"after a source", "  alerts: {type: alert, input: farm, lateness: 5m, rules: [{name: low, expr: power < 10}]}\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := head + c.step + "sinks:\n  out: {type: testcount, input: alerts}\n"
			defs, errs := pipelines.Parse("o.yaml", []byte(src), func(string) (string, bool) { return "", false })
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			p, errs := pipelines.Build(defs[0], pipelines.Options{DataDir: t.TempDir()})
			if p != nil {
				defer p.Close()
			}
			switch {
			case c.want == "" && len(errs) > 0:
				t.Errorf("errors: %v", errs)
			case c.want != "" && !strings.Contains(errs.Error(), c.want):
				t.Errorf("errors %v, want one saying %q", errs, c.want)
			}
		})
	}
}
