package pipelines_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/pipelines"
	"github.com/sluice-edge/sluice/pipelines/examples"
)

// TestHubDemoRelease loads both versions of the hub demo's release as an
// edge does: version 1 has the rule set "turbine" with one rule, version 2
// (version 1 with HubV2's files over it) adds a second; the pipeline's
// subjects and assets carry the edge's id.
func TestHubDemoRelease(t *testing.T) {
	dir := t.TempDir()
	env := envOf(map[string]string{"HUB_URL": "nats://127.0.0.1:4222", "HUB_TOKEN": "t0ken", "EDGE": "edge-a"})
	for v, want := range [][]string{1: {"gearbox_warm"}, 2: {"gearbox_warm", "high_output"}} {
		if v == 0 {
			continue
		}
		if err := examples.WriteHub(dir, v); err != nil {
			t.Fatal(err)
		}
		rel, errs := pipelines.LoadRelease(dir, env)
		if len(errs) > 0 {
			t.Fatalf("version %d: %v", v, errs)
		}
		set := rel.RuleSets["turbine"]
		if set == nil {
			t.Fatalf("version %d: no rule set turbine: %v", v, rel.RuleSets)
		}
		var names []string
		for _, r := range set.Rules {
			names = append(names, r.String("name"))
		}
		if !slices.Equal(names, want) {
			t.Errorf("version %d: rules %v, want %v", v, names, want)
		}
		if len(rel.Defs) != 1 {
			t.Fatalf("version %d: %d pipelines", v, len(rel.Defs))
		}
	}
	if err := examples.WriteHub(t.TempDir(), 3); err == nil {
		t.Error("WriteHub wrote a version 3 the demo does not have")
	}
	data, err := os.ReadFile(filepath.Join(dir, "pipelines", "turbines.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"subject: sluice.${EDGE}.data.turbines", "subject: sluice.${EDGE}.alerts", `"${EDGE}/" + asset`} {
		if !strings.Contains(string(data), s) {
			t.Errorf("the pipeline lacks %q", s)
		}
	}
}
