package main

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/logfile"
	"github.com/sluice-edge/sluice/pipelines"
)

// TestReservedNamesCoverTheEngineDirs: every directory the engine keeps
// directly under its data directory is a name no pipeline may take (a
// pipeline keeps its state in <data_dir>/<name>).
func TestReservedNamesCoverTheEngineDirs(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfg := &agent.Config{DataDir: data}
	dirs := []string{cfg.AgentDir(), cfg.ControlDir(), cfg.HealthDir(), logfile.Dir(data),
		filepath.Join(data, "hub")} // the hub uplink's (agent_hub.go)
	reserved := pipelines.ReservedNames()
	for _, d := range dirs {
		if filepath.Dir(d) != data {
			t.Errorf("%s is not directly under the data directory", d)
		}
		if !slices.Contains(reserved, filepath.Base(d)) {
			t.Errorf("the engine keeps %s, but pipelines may be named %q (reserved: %v)", d, filepath.Base(d), reserved)
		}
	}
}
