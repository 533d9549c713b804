package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/enginetest"
)

// TestCheckpointFullDiskKill9 runs `sluice run` with its data directory on
// a small tmpfs, fills the tmpfs until the checkpoints fail and the
// pipeline holds its source, kills the engine (SIGKILL) then, frees the
// space and runs it again to the end: the file sink holds every reading
// exactly once (the restart recovered the last good checkpoint, rolled the
// file back to its mark and produced the rest again). Before, the first
// failed checkpoint stopped the run.
func TestCheckpointFullDiskKill9(t *testing.T) {
	mnt := enginetest.Tmpfs(t, 8<<20)
	data := filepath.Join(mnt, "data")
	dir := t.TempDir()
	file := filepath.Join(dir, "cpk.yaml")
	if err := os.WriteFile(file, []byte(`
name: cpk
batch: {size: 20, linger: 5ms}
checkpoint: {interval: 50ms}
sources:
  sim: {type: sim, turbines: 2, rows: 3000, rate: 1000, seed: 7}
sinks:
  out: {type: file, input: sim, path: rows.jsonl}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "engine.log")
	logged := func(s string) bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), s)
	}
	wait := func(what string, f func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !f() {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(logFile)
				t.Fatalf("timed out waiting for %s; log:\n%s", what, b)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	c := startChild(t, "engine", logFile, nil, "run", file, "--data-dir", data)
	wait("a checkpoint", func() bool {
		m, _ := filepath.Glob(filepath.Join(data, "cpk", "checkpoints", "*.ckpt"))
		return len(m) > 0
	})
	filler := enginetest.Fill(t, mnt, 0)
	wait("the source held after failed checkpoints", func() bool { return logged("the sources are held until a checkpoint succeeds") })
	select {
	case <-c.done:
		b, _ := os.ReadFile(logFile)
		t.Fatalf("the engine stopped while checkpoints fail; log:\n%s", b)
	default:
	}
	c.kill()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	c = startChild(t, "engine", logFile, nil, "run", file, "--data-dir", data)
	select {
	case <-c.done:
	case <-time.After(90 * time.Second):
		t.Fatal("the second run did not end")
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		b, _ := os.ReadFile(logFile)
		t.Fatalf("second run exited %d; log:\n%s", code, b)
	}
	if !logged("checkpoint: recovered") {
		t.Fatal("the second run recovered no checkpoint")
	}
	lines, distinct := enginetest.CountReadings(t, filepath.Join(dir, "rows.jsonl"))
	if lines != 6000 || distinct != 6000 {
		t.Fatalf("%d lines, %d distinct readings; want 6000 of each", lines, distinct)
	}
}
