package engine

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends, and reports whether d passed: the wait
// between retries of a component that must stop at once when told to.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
