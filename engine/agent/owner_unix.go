//go:build unix

package agent

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkOwner refuses a file or directory that another user owns, or that
// group or others may write: whoever controls the state directory
// controls what the engine runs, and whoever controls the token file
// may call the local API.
func checkOwner(name string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("%s is owned by uid %d, not by this process's user (uid %d): run as its owner, or chown it", name, st.Uid, euid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s may be written by other users (mode %v): chmod go-w it", name, fi.Mode().Perm())
	}
	return nil
}
