package mqtt

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DeviceStats is what a source counted for one device.
type DeviceStats struct {
	Device string
	// Messages received, and rows they produced.
	Messages, Rows int64
	// Rejected messages by cause: malformed payloads or wrong value
	// types, payloads over max_payload, messages beyond
	// max_rate_per_device, and messages from devices not allowed.
	Bad, Oversized, RateLimited, Unknown int64
	// LastError is the reason of the last rejected message.
	LastError   string
	LastErrorAt time.Time
}

// OtherDevices is the name under which devices are counted once a source
// tracks maxTrackedDevices of them.
const OtherDevices = "(other)"

// maxTrackedDevices bounds the per-device statistics a source keeps.
const maxTrackedDevices = 100_000

type deviceStats struct {
	name                                 string
	messages, rows                       atomic.Int64
	bad, oversized, rateLimited, unknown atomic.Int64
	lastErr                              atomic.Pointer[lastError]
	tokens                               float64 // rate limiter; run goroutine only
	last                                 int64   // ns of the last refill
}

type lastError struct {
	reason string
	at     time.Time
}

// devices holds per-device statistics and rate limits. The run goroutine
// is its only writer; Snapshot may be called from any goroutine.
type devices struct {
	mu    sync.RWMutex
	m     map[string]*deviceStats
	other *deviceStats

	rate  float64 // messages per second per device; 0 is no limit
	burst float64
}

func newDevices(rate float64, burst int) *devices {
	d := &devices{m: map[string]*deviceStats{}, other: &deviceStats{name: OtherDevices}, rate: rate}
	d.burst = float64(burst)
	if d.burst <= 0 {
		d.burst = max(1, rate)
	}
	return d
}

// get returns the statistics of a device, creating them.
func (d *devices) get(name string) *deviceStats {
	if s, ok := d.m[name]; ok {
		return s
	}
	if len(d.m) >= maxTrackedDevices {
		return d.other
	}
	s := &deviceStats{name: strings.Clone(name), tokens: d.burst, last: -1}
	d.mu.Lock()
	d.m[s.name] = s
	d.mu.Unlock()
	return s
}

// allow takes one token from the device's bucket at time now (ns).
func (d *devices) allow(s *deviceStats, now int64) bool {
	if d.rate <= 0 {
		return true
	}
	if s.last >= 0 && now > s.last {
		s.tokens = min(d.burst, s.tokens+float64(now-s.last)*d.rate/1e9)
	}
	s.last = now
	if s.tokens >= 1 {
		s.tokens--
		return true
	}
	return false
}

func (s *deviceStats) fail(reason string, at time.Time) {
	s.lastErr.Store(&lastError{reason: reason, at: at})
}

// snapshot returns the statistics of every device, sorted by name.
func (d *devices) snapshot() []DeviceStats {
	d.mu.RLock()
	all := make([]*deviceStats, 0, len(d.m)+1)
	for _, s := range d.m {
		all = append(all, s)
	}
	d.mu.RUnlock()
	if d.other.messages.Load() > 0 {
		all = append(all, d.other)
	}
	out := make([]DeviceStats, len(all))
	for i, s := range all {
		out[i] = DeviceStats{
			Device: s.name, Messages: s.messages.Load(), Rows: s.rows.Load(),
			Bad: s.bad.Load(), Oversized: s.oversized.Load(), RateLimited: s.rateLimited.Load(), Unknown: s.unknown.Load(),
		}
		if le := s.lastErr.Load(); le != nil {
			out[i].LastError, out[i].LastErrorAt = le.reason, le.at
		}
	}
	slices.SortFunc(out, func(a, b DeviceStats) int { return strings.Compare(a.Device, b.Device) })
	return out
}

// logLimiter lets through at most burst log lines per interval and counts
// the rest.
type logLimiter struct {
	interval   time.Duration
	burst      int
	start      time.Time
	n          int
	suppressed int
}

// allow reports whether a line may be logged at now, and how many lines
// were suppressed in the interval that just ended (to be summarised).
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	if l.start.IsZero() || now.Sub(l.start) >= l.interval {
		suppressed = l.suppressed
		l.start, l.n, l.suppressed = now, 0, 0
	}
	if l.n < l.burst {
		l.n++
		return true, suppressed
	}
	l.suppressed++
	return false, suppressed
}
