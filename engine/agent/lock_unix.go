//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrLocked: another process (a running engine, or another import) holds
// the state directory.
var ErrLocked = errors.New("the state directory is in use by another process")

// lockDir takes the exclusive lock of the state directory; wait says
// whether to wait for it. The returned file holds the lock until closed.
func lockDir(dir string, wait bool) (*os.File, error) {
	f, err := os.OpenFile(dir+"/"+lockFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock: %w", err)
	}
	return f, nil
}
