//go:build linux

package disk

import (
	"os"
	"syscall"
)

// allocate reserves [off, off+n) with fallocate (mode 0: the file grows).
func allocate(f *os.File, off, n int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, off, n)
		if err != syscall.EINTR {
			return err
		}
	}
}
