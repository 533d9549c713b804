//go:build unix

package pipelines_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/checkpoint"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/pipelines"
)

// TestFromStartBesideARunningEngine starts a checkpointing pipeline with
// --from-start while another process (an engine already running on the
// same data directory) holds its checkpoints: the build refuses, naming
// the other process, and the checkpoints are still there. Before, the
// second start deleted them, ran, truncated the shared output file and
// failed only at its second checkpoint.
func TestFromStartBesideARunningEngine(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lockfs.yaml")
	src := `
name: lockfs
checkpoint: {interval: 1s}
sources:
  farm: {type: sim, turbines: 2, interval: 1s, rows: 10, seed: 1}
sinks:
  out: {type: file, input: farm, path: out.jsonl}
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	ckdir := filepath.Join(data, "lockfs", "checkpoints")
	enginetest.HoldInChild(t, "SLUICE_FROMSTART_LOCK_HOLDER", ckdir, func(d string) error {
		s, err := checkpoint.Open(d, checkpoint.Options{Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		return s.Save(&engine.Checkpoint{Epoch: 3, Time: time.Now(), Sources: map[string][]byte{}, States: map[string]*engine.State{}, Sinks: map[string][]byte{}})
	})
	defs, errs := pipelines.Load([]string{file}, os.LookupEnv)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ps, errs := pipelines.BuildAll(defs, pipelines.Options{DataDir: data, FromStart: true, Log: slog.New(slog.DiscardHandler)})
	if len(errs) == 0 {
		for _, p := range ps {
			p.Close()
		}
		t.Error("--from-start built a pipeline whose checkpoints another engine holds")
	} else if !strings.Contains(errs.Error(), "used by another engine") {
		t.Errorf("errors %v; want one saying another engine uses the directory", errs)
	}
	if _, err := os.Stat(filepath.Join(ckdir, checkpoint.FileName(3))); err != nil {
		t.Errorf("the other engine's checkpoint is gone: %v", err)
	}
}
