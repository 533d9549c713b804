//go:build unix

package checkpoint_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/checkpoint"
)

// TestSecondEngineOnTheSameDirectoryRefused opens a checkpoint directory
// in another process (a second engine started on the same data
// directory): Open refuses with ErrLocked and names that process, while
// stores of this process may open it again (a pipeline rebuilt by a
// release switch). Once the other process has ended, Open succeeds.
// Without the lock both engines ran, each saving its own epochs and
// writing the same output file at its own offsets.
func TestSecondEngineOnTheSameDirectoryRefused(t *testing.T) {
	if d := os.Getenv("SLUICE_CHECKPOINT_LOCK_HOLDER"); d != "" {
		if _, err := checkpoint.Open(d, checkpoint.Options{Log: quiet}); err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
		os.Exit(0)
	}
	dir := filepath.Join(t.TempDir(), "pipe", "checkpoints")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondEngineOnTheSameDirectoryRefused$")
	cmd.Env = append(os.Environ(), "SLUICE_CHECKPOINT_LOCK_HOLDER="+dir)
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
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		_ = cmd.Process.Kill()
		t.Fatalf("the other process: %q, %v", line, err)
	}
	_, err = checkpoint.Open(dir, checkpoint.Options{Log: quiet})
	if !errors.Is(err, checkpoint.ErrLocked) || !strings.Contains(err.Error(), "process ") {
		t.Errorf("Open beside another engine: %v; want ErrLocked naming its process", err)
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s, err := checkpoint.Open(dir, checkpoint.Options{Log: quiet})
		if err != nil {
			t.Fatalf("Open after the other engine ended: %v", err)
		}
		save(t, s, 1)
	}
}
