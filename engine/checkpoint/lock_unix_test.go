//go:build unix

package checkpoint_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/checkpoint"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// TestSecondEngineOnTheSameDirectoryRefused opens a checkpoint directory
// in another process (a second engine started on the same data
// directory): Open refuses with ErrLocked and names that process, while
// stores of this process may open it again (a pipeline rebuilt by a
// release switch). Once the other process has ended, Open succeeds.
// Without the lock both engines ran, each saving its own epochs and
// writing the same output file at its own offsets.
func TestSecondEngineOnTheSameDirectoryRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pipe", "checkpoints")
	other := enginetest.HoldInChild(t, "SLUICE_CHECKPOINT_LOCK_HOLDER", dir, func(d string) error {
		_, err := checkpoint.Open(d, checkpoint.Options{Log: quiet})
		return err
	})
	_, err := checkpoint.Open(dir, checkpoint.Options{Log: quiet})
	if !errors.Is(err, checkpoint.ErrLocked) || !strings.Contains(err.Error(), "process ") {
		t.Errorf("Open beside another engine: %v; want ErrLocked naming its process", err)
	}
	if err := other.Release(); err != nil {
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
