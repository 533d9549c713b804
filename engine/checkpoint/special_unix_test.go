//go:build unix

package checkpoint_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/checkpoint"
)

// TestSpecialFileInPlaceOfCheckpoint puts something other than a regular
// file under the name of the newest checkpoint: a named pipe (opening it
// for reading would wait for a writer forever, and a start would hang
// past SIGTERM), a symbolic link to a device, a directory. Load reports it
// as damaged, moves it to quarantine and recovers the checkpoint before.
func TestSpecialFileInPlaceOfCheckpoint(t *testing.T) {
	cases := []struct {
		name  string
		place func(file string) error
	}{
		{"fifo", func(file string) error { return syscall.Mkfifo(file, 0o644) }},
		{"device", func(file string) error { return os.Symlink("/dev/zero", file) }},
		{"directory", func(file string) error { return os.Mkdir(file, 0o755) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "pipe", "checkpoints")
			s, err := checkpoint.Open(d, checkpoint.Options{Log: quiet})
			if err != nil {
				t.Fatal(err)
			}
			save(t, s, 1, 2)
			newest := filepath.Join(d, checkpoint.FileName(2))
			if err := os.Remove(newest); err != nil {
				t.Fatal(err)
			}
			if err := tc.place(newest); err != nil {
				t.Fatal(err)
			}
			type result struct {
				c   *engine.Checkpoint
				err error
			}
			done := make(chan result, 1)
			go func() {
				c, err := s.Load()
				done <- result{c, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(time.Minute):
				t.Fatal("Load is blocked on the file in place of the newest checkpoint")
			}
			if r.err != nil {
				t.Fatalf("Load: %v", r.err)
			}
			if diff := same(ck(1), r.c); diff != "" {
				t.Fatal(diff)
			}
			if s.Corrupt() != 1 {
				t.Errorf("Corrupt() = %d, want 1", s.Corrupt())
			}
			if _, err := os.Lstat(filepath.Join(d, checkpoint.QuarantineDir, checkpoint.FileName(2))); err != nil {
				t.Errorf("not in quarantine: %v", err)
			}
		})
	}
}
