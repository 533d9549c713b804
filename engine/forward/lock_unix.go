//go:build unix

package forward

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// dirLock keeps a second sink (or process) from opening the same buffer
// directory. The lock file sits beside the directory, so that the
// directory holds only what docs/format/buffer.md lists.
type dirLock struct{ f *os.File }

func lockDir(dir string) (*dirLock, error) {
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(dir)), 0o755); err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	name := filepath.Clean(dir) + ".lock"
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("forward: lock buffer: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("forward: buffer %s is in use by another sink or process (%s): %w", dir, name, err)
	}
	return &dirLock{f: f}, nil
}

func (l *dirLock) unlock() {
	if l != nil && l.f != nil {
		_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		_ = l.f.Close()
		l.f = nil
	}
}
