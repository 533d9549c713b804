package pipelines_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/pipelines"
)

// TestCheckpointsLeftByAnEarlierRunAreReported runs a checkpointing
// pipeline, stops it, and builds it again with its checkpoint section
// taken out: the checkpoints the first run left are stale once this run
// processes input, and a later run with checkpoints would recover them —
// cutting this run's output back and rolling its cloud buffers back to
// reuse sequences already delivered. The build says so and names the
// directory; a validation (dry run) says nothing.
func TestCheckpointsLeftByAnEarlierRunAreReported(t *testing.T) {
	dir := t.TempDir()
	runCheckpointed(t, dir, "checkpoint: {interval: 20ms}", 2000, 100*time.Millisecond, false)
	file := filepath.Join(dir, "cp.yaml")
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(src), "checkpoint: {interval: 20ms}", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dry := range []bool{true, false} {
		defs, errs := pipelines.Load([]string{file}, os.LookupEnv)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		log := &enginetest.LogBuffer{}
		ps, errs := pipelines.BuildAll(defs, pipelines.Options{DataDir: filepath.Join(dir, "data"), DryRun: dry, Log: slog.New(slog.NewTextHandler(log, nil))})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, p := range ps {
			p.Close()
		}
		got := log.String()
		warned := strings.Contains(got, "checkpoints of an earlier run") && strings.Contains(got, filepath.Join(dir, "data", "cp", "checkpoints"))
		if warned == dry {
			t.Errorf("dry run %v: warned %v; log:\n%s", dry, warned, got)
		}
	}
}
