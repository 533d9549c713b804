//go:build unix

package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// dirLock keeps a second buffer (in this process or another) from opening
// the same directory: Open takes it exclusively, a read-only Open shared.
// The lock is a flock on the directory itself, so that no file can be
// removed to get around it; `<dir>.lock` beside the directory holds the
// process id of the last exclusive holder, for the error message (the
// directory holds only what docs/format/buffer.md lists).
type dirLock struct{ f *os.File }

func lockDir(dir string, shared bool) (*dirLock, error) {
	clean := filepath.Clean(dir)
	if !shared {
		if err := os.MkdirAll(clean, 0o755); err != nil {
			return nil, fmt.Errorf("buffer: %w", err)
		}
	}
	f, err := os.Open(clean)
	if err != nil {
		if shared && errors.Is(err, fs.ErrNotExist) {
			return &dirLock{}, nil // nothing to read; the reader says so
		}
		return nil, fmt.Errorf("buffer: lock %s: %w", dir, err)
	}
	how := syscall.LOCK_EX
	if shared {
		how = syscall.LOCK_SH
	}
	pidFile := clean + ".lock"
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("buffer: lock %s: %w", dir, err)
		}
		holder := ""
		if b, rerr := os.ReadFile(pidFile); rerr == nil {
			if pid := strings.TrimSpace(string(b)); pid != "" {
				holder = " (opened by process " + pid + ")"
			}
		}
		return nil, fmt.Errorf("%w: %s is open in another sink or process%s; stop it first", ErrLocked, dir, holder)
	}
	if !shared {
		// Best effort: the lock holds without it (a full disk).
		_ = os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
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
