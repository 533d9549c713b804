//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package bench

import "time"

// cpuTimes is not available on this platform.
func cpuTimes() (user, sys time.Duration, ok bool) { return 0, 0, false }

// mapBytes returns n bytes of zeroed memory.
func mapBytes(n int) ([]byte, func()) { return make([]byte, n), func() {} }
