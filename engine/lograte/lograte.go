// Package lograte bounds log lines that input from outside can cause (a
// flood of bad packets, refused connections, unreadable replies): at most
// a burst of lines per interval, counting the ones left out so that the
// next line let through can say how many.
package lograte

import "time"

// Limiter lets through at most Burst lines per Interval (a fixed window
// starting at the first line after the previous one ended) and counts the
// rest. The zero Interval and Burst let nothing through. It is not safe
// for concurrent use.
type Limiter struct {
	Interval time.Duration
	Burst    int

	start      time.Time
	n          int
	suppressed int
}

// Allow reports whether a line may be logged at now, and how many lines
// were left out in the window that just ended (to be said with it).
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed int) {
	if l.start.IsZero() || now.Sub(l.start) >= l.Interval {
		suppressed = l.suppressed
		l.start, l.n, l.suppressed = now, 0, 0
	}
	if l.n < l.Burst {
		l.n++
		return true, suppressed
	}
	l.suppressed++
	return false, suppressed
}
