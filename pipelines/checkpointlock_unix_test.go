//go:build unix

package pipelines_test

import (
	"bufio"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/checkpoint"
	"github.com/sluice-edge/sluice/pipelines"
)

// TestFromStartBesideARunningEngine starts a checkpointing pipeline with
// --from-start while another process (an engine already running on the
// same data directory) holds its checkpoints: the build refuses, naming
// the other process, and the checkpoints are still there. Before, the
// second start deleted them, ran, truncated the shared output file and
// failed only at its second checkpoint.
func TestFromStartBesideARunningEngine(t *testing.T) {
	if d := os.Getenv("SLUICE_FROMSTART_LOCK_HOLDER"); d != "" {
		s, err := checkpoint.Open(d, checkpoint.Options{Log: slog.New(slog.DiscardHandler)})
		if err == nil {
			err = s.Save(&engine.Checkpoint{Epoch: 3, Time: time.Now(), Sources: map[string][]byte{}, States: map[string]*engine.State{}, Sinks: map[string][]byte{}})
		}
		if err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	}
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestFromStartBesideARunningEngine$")
	cmd.Env = append(os.Environ(), "SLUICE_FROMSTART_LOCK_HOLDER="+ckdir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("the other engine: %q, %v", line, err)
	}
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
