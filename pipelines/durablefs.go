package pipelines

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sluice-edge/sluice/engine/buffer"
)

// durable returns fsys, or the real disk when it is nil.
func durable(fsys buffer.FS) buffer.FS {
	if fsys == nil {
		return buffer.OS
	}
	return fsys
}

// removeAll removes dir and everything in it from fsys (nil: the real
// disk); a dir that does not exist is no error.
func removeAll(fsys buffer.FS, dir string) error {
	if fsys == nil || fsys == buffer.OS {
		return os.RemoveAll(dir)
	}
	fi, err := fsys.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		names, err := fsys.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := removeAll(fsys, filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	return fsys.Remove(dir)
}
