//go:build !unix

package buffer

// dirLock is a no-op where flock is not available.
type dirLock struct{}

func lockDir(string, bool) (*dirLock, error) { return &dirLock{}, nil }

func (*dirLock) unlock() {}
