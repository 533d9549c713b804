package pipelines_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sluice-edge/sluice/pipelines"
)

// alertIDsOn runs a farm of simulated turbines through an alert step on
// edge ("" for the default, the host name) and returns the ids of the
// alerts, in order.
func alertIDsOn(t *testing.T, edge string) []string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "alerts.jsonl")
	y := `
name: farm
sources:
  turbines: {type: sim, turbines: 3, interval: 1s, rows: 20, faults: 0, resume: false}
steps:
  alerts:
    type: alert
    input: turbines
    rules:
      - {name: running, expr: power >= 0}
sinks:
  out: {type: file, input: alerts, path: ` + out + `}
`
	defs, errs := pipelines.Parse(filepath.Join(dir, "p.yaml"), []byte(y), envOf(nil))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ps, errs := pipelines.BuildAll(defs, pipelines.Options{DataDir: filepath.Join(dir, "data"), Edge: edge})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := pipelines.RunAll(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range switchAlerts(t, out) {
		ids = append(ids, a.ID)
	}
	if len(ids) != 3 {
		t.Fatalf("edge %q: %d alerts, want one per turbine", edge, len(ids))
	}
	slices.Sort(ids)
	return ids
}

// TestAlertIDsOfEdge: the alert ids of a pipeline depend on the edge that
// runs it, so two edges running the same pipeline on turbines of the same
// names raise alerts of different ids; an engine without an edge name
// uses its host name, as in its message ids.
func TestAlertIDsOfEdge(t *testing.T) {
	a, b := alertIDsOn(t, "site-a"), alertIDsOn(t, "site-b")
	for _, id := range a {
		if slices.Contains(b, id) {
			t.Errorf("id %s raised on site-a and on site-b", id)
		}
	}
	if again := alertIDsOn(t, "site-a"); !slices.Equal(again, a) {
		t.Errorf("site-a: ids %q, then %q", a, again)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Skipf("no host name (%v)", err)
	}
	if def, named := alertIDsOn(t, ""), alertIDsOn(t, host); !slices.Equal(def, named) {
		t.Errorf("default edge: ids %q, edge %s: %q", def, host, named)
	}
}
