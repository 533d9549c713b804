//go:build linux

package enginetest

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

// Tmpfs mounts a tmpfs of size bytes on a new temporary directory for the
// test and returns the directory; it is unmounted when the test ends.
// Tests of a full disk use it. It skips the test where mounting is not
// permitted (not root), and fails it under CI=true, where it must run.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs for a full-disk test: %v", err)
		}
		t.Skipf("full-disk test needs to mount a tmpfs (run as root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file in dir until the file system holding it is full,
// leaving about leave bytes free, and returns its path (remove it to free
// the space).
func Fill(t testing.TB, dir string, leave int64) string {
	t.Helper()
	free, err := disk.FreeBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := dir + "/filler"
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := free - leave; n > 0 {
		chunk := make([]byte, 64<<10)
		for n > 0 {
			k, err := f.Write(chunk[:min(int64(len(chunk)), n)])
			n -= int64(k)
			if err != nil {
				break
			}
		}
	}
	return name
}
