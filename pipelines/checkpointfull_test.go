package pipelines_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/health"
	"github.com/sluice-edge/sluice/pipelines"
)

// fullDiskPipeline reads 2 × 3000 simulated rows into a file sink (on
// another disk than the data directory) with a checkpoint every 50 ms.
const fullDiskPipeline = `
name: cpfull
batch: {size: 20, linger: 5ms}
checkpoint: {interval: 50ms}
sources:
  sim: {type: sim, turbines: 2, rows: 3000, rate: 1000, seed: 7}
sinks:
  out: {type: file, input: sim, path: rows.jsonl}
`

// TestCheckpointFullDiskKeepsRunning fills the tmpfs holding a running
// pipeline's data directory: its checkpoints fail, but the pipeline keeps
// running and raises checkpoint_failed; after DefaultCheckpointHoldAfter
// failures its source is held (reads nothing). Once space returns a
// checkpoint succeeds, the alert clears, the source goes on and the run
// ends normally with every reading in the file sink exactly once. It used
// to stop the pipeline at the first failed checkpoint.
func TestCheckpointFullDiskKeepsRunning(t *testing.T) {
	mnt := enginetest.Tmpfs(t, 8<<20)
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(fullDiskPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	ps := buildFile(t, file, pipelines.Options{DataDir: filepath.Join(mnt, "data"), Log: slog.New(slog.DiscardHandler)})
	done := make(chan error, 1)
	go func() { done <- pipelines.RunAll(context.Background(), ps) }()
	running := func() {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("the pipeline stopped (%v) while checkpoints fail", err)
		default:
		}
	}
	stats, _, check := checkpointWatcher(t, ps)
	isCkpt := func(a engine.EngineAlert) bool { return a.Rule == health.RuleCheckpoint }

	filler := enginetest.Fill(t, mnt, 0)
	hold := int64(engine.DefaultCheckpointHoldAfter)
	waitFor(t, 30*time.Second, "the source held", func() bool { return stats().Failures > hold })
	rows := pipelines.SourceRows(ps)
	waitFor(t, 30*time.Second, "one more failure", func() bool { return stats().Failures > hold+1 })
	if now := pipelines.SourceRows(ps); now != rows || rows >= 6000 {
		t.Fatalf("the source read %d rows, then %d, while held", rows, now)
	}
	running()
	as := check()
	if i := slices.IndexFunc(as, isCkpt); i < 0 || as[i].State != engine.AlertRaised {
		t.Fatalf("with the disk full: %v, want checkpoint_failed raised", rules(as))
	}
	t.Logf("held at %d rows after %d failures: %s", rows, stats().Failures, stats().LastError)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	waitFor(t, 30*time.Second, "a checkpoint after the failures", func() bool { st := stats(); return st.Last.After(st.LastFailure) })
	t.Logf("a checkpoint succeeded %v after the space returned", time.Since(freed).Round(time.Millisecond))
	var cleared bool
	for i := 0; i < 5 && !cleared; i++ {
		cleared = slices.ContainsFunc(check(), func(a engine.EngineAlert) bool { return isCkpt(a) && a.State == engine.AlertCleared })
	}
	if !cleared {
		t.Fatal("checkpoint_failed not cleared once checkpoints succeed")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the run did not end")
	}
	if lines, distinct := enginetest.CountReadings(t, filepath.Join(dir, "rows.jsonl")); lines != 6000 || distinct != 6000 {
		t.Fatalf("%d lines, %d distinct readings; want 6000 of each", lines, distinct)
	}
}
