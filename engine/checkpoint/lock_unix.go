//go:build unix

package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// held maps the absolute checkpoint directories this process has locked to
// the open directory holding the lock. A lock is kept for the life of the
// process: a pipeline rebuilt by a release switch opens its store again
// while the one before still runs, and both are this process.
var held = struct {
	sync.Mutex
	dirs map[string]*os.File
}{dirs: map[string]*os.File{}}

// lockDir takes an exclusive flock on dir for this process, so that a
// second engine started on the same data directory refuses to run instead
// of writing the same checkpoints and output files. <dir>.lock beside the
// directory names the process holding it, for the error message.
func lockDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("checkpoint: lock %s: %w", dir, err)
	}
	held.Lock()
	defer held.Unlock()
	if f := held.dirs[abs]; f != nil {
		// Still the same directory (not removed and made again by a
		// start from scratch)?
		a, aerr := f.Stat()
		b, berr := os.Stat(abs)
		if aerr == nil && berr == nil && os.SameFile(a, b) {
			return nil
		}
		_ = f.Close()
		delete(held.dirs, abs)
	}
	f, err := os.Open(abs)
	if err != nil {
		return fmt.Errorf("checkpoint: lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("checkpoint: lock %s: %w", dir, err)
		}
		holder := ""
		if b, rerr := os.ReadFile(abs + ".lock"); rerr == nil {
			if pid := strings.TrimSpace(string(b)); pid != "" {
				holder = " (process " + pid + ")"
			}
		}
		return fmt.Errorf("%w: %s is used by another engine%s; stop it first", ErrLocked, dir, holder)
	}
	// Best effort: the lock holds without it (a full disk).
	_ = os.WriteFile(abs+".lock", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	held.dirs[abs] = f
	return nil
}
