//go:build unix

package buffer

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// dirLock keeps a second buffer (in this process or another) from opening
// the same directory: Open takes it exclusively, a read-only Open shared.
// The lock file sits beside the directory (`<dir>.lock`), so that the
// directory holds only what docs/format/buffer.md lists; it holds the
// process id of the holder, for the error message.
type dirLock struct{ f *os.File }

func lockDir(dir string, shared bool) (*dirLock, error) {
	clean := filepath.Clean(dir)
	if err := os.MkdirAll(filepath.Dir(clean), 0o755); err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	name := clean + ".lock"
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil && shared {
		// A read-only reader on a read-only or full file system.
		f, err = os.OpenFile(name, os.O_RDONLY, 0)
		if os.IsNotExist(err) {
			return &dirLock{}, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("buffer: lock %s: %w", dir, err)
	}
	how := syscall.LOCK_EX
	if shared {
		how = syscall.LOCK_SH
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(name); rerr == nil {
			if pid := strings.TrimSpace(string(b)); pid != "" {
				holder = " (last opened by process " + pid + ")"
			}
		}
		_ = f.Close()
		return nil, fmt.Errorf("%w: %s is open in another sink or process%s; stop it first (lock %s)", ErrLocked, dir, holder, name)
	}
	if !shared {
		_ = f.Truncate(0)
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
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
