package pipelines_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/pipelines"
	"github.com/sluice-edge/sluice/pipelines/examples"
)

// copyTree copies the tree under root of fsys into dir.
func copyTree(t *testing.T, fsys fs.FS, root, dir string) {
	t.Helper()
	err := fs.WalkDir(fsys, root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(p, root), "/")))
		if e.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestHubDemoRelease loads both versions of the hub demo's release as an
// edge does: version 1 has the rule set "turbine" with one rule, version 2
// (version 1 with HubV2's files over it) adds a second; the pipeline's
// subjects and assets carry the edge's id.
func TestHubDemoRelease(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, examples.Hub, examples.HubRelease, dir)
	env := envOf(map[string]string{"HUB_URL": "nats://127.0.0.1:4222", "HUB_TOKEN": "t0ken", "EDGE": "edge-a"})
	for v, want := range [][]string{1: {"gearbox_warm"}, 2: {"gearbox_warm", "high_output"}} {
		if v == 0 {
			continue
		}
		if v == 2 {
			copyTree(t, examples.Hub, examples.HubV2, dir)
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
