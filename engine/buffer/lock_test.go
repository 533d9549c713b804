//go:build unix

package buffer_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer"
)

// TestDirectoryLock: one writer per buffer directory, readers share it.
// Removing the pid file beside the directory used to remove the lock with
// it, letting a second writer in; the lock is now on the directory.
func TestDirectoryLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "buf")
	o := buffer.Options{Schema: testSchema, Log: quiet}
	ro := o
	ro.ReadOnly = true
	open := func(o buffer.Options) (*buffer.Buffer, error) { return buffer.Open(dir, o) }
	w, err := open(o)
	if err != nil {
		t.Fatal(err)
	}
	_, err = open(o)
	if !errors.Is(err, buffer.ErrLocked) || !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second writer: %v, want ErrLocked naming this process", err)
	}
	if _, err := open(ro); !errors.Is(err, buffer.ErrLocked) {
		t.Fatalf("reader beside a writer: %v, want ErrLocked", err)
	}
	if err := os.Remove(dir + ".lock"); err != nil {
		t.Fatal(err)
	}
	if _, err := open(o); !errors.Is(err, buffer.ErrLocked) {
		t.Fatalf("second writer after the pid file was removed: %v, want ErrLocked", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r1, err := open(ro)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := open(ro)
	if err != nil {
		t.Fatalf("two readers: %v", err)
	}
	defer r2.Close()
	if _, err := open(o); !errors.Is(err, buffer.ErrLocked) {
		t.Fatalf("writer beside readers: %v, want ErrLocked", err)
	}
}
