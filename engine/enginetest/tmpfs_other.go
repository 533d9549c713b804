//go:build !linux

package enginetest

import "testing"

// Tmpfs skips: mounting a tmpfs needs Linux.
func Tmpfs(t testing.TB, size int64) string {
	t.Skip("full-disk tests mount a tmpfs (Linux only)")
	return ""
}

// Fill is not available here.
func Fill(t testing.TB, dir string, leave int64) string {
	t.Skip("full-disk tests mount a tmpfs (Linux only)")
	return ""
}
