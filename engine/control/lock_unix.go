//go:build unix

package control

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockLog takes the exclusive lock of an open log file, without waiting:
// one process appends to a log at a time.
func lockLog(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return ErrLocked
		default:
			return fmt.Errorf("control log: lock: %w", err)
		}
	}
}
