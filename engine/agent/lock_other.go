//go:build !unix

package agent

import (
	"errors"
	"fmt"
	"os"
)

// ErrLocked: another process (a running engine, or another import) holds
// the state directory.
var ErrLocked = errors.New("the state directory is in use by another process")

// lockDir opens the lock file; this system has no advisory locks, so it
// does not exclude other processes.
func lockDir(dir string, _ bool) (*os.File, error) {
	f, err := os.OpenFile(dir+"/"+lockFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	return f, nil
}
