//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package window_test

import "time"

// cpuTime is not measured on this platform.
func cpuTime() (time.Duration, bool) { return 0, false }
