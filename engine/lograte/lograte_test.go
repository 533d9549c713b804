package lograte

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := Limiter{Interval: time.Minute, Burst: 2}
	for _, step := range []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0}, {time.Second, true, 0}, {2 * time.Second, false, 0}, {3 * time.Second, false, 0},
		{61 * time.Second, true, 2}, // a new window says how many the last one left out
		{62 * time.Second, true, 0}, {63 * time.Second, false, 0},
		{10 * time.Minute, true, 1},
	} {
		ok, n := l.Allow(t0.Add(step.at))
		if ok != step.ok || n != step.suppressed {
			t.Fatalf("at %v: Allow = %v, %d; want %v, %d", step.at, ok, n, step.ok, step.suppressed)
		}
	}
}
