package mqtt

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sluice-edge/sluice/engine/lograte"
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

// OtherDevices is the name under which a source counts the messages whose
// device key it refused (longer than max_key_length, or holding characters
// a topic segment cannot hold): such keys are never tracked.
const OtherDevices = "(other)"

// Defaults of the device table's bounds.
const (
	defaultMaxDevices     = 100_000
	defaultMaxDeviceBytes = 64 << 20
	// deviceEntryBytes is what one tracked device costs besides its name
	// and last error: the deviceStats, the lastError and the map slot,
	// rounded up (measured by TestDeviceTableHeapBound).
	deviceEntryBytes = 320
	// maxReasonBytes bounds the last error kept per device.
	maxReasonBytes = 256
)

type deviceStats struct {
	name                                 string
	messages, rows                       atomic.Int64
	bad, oversized, rateLimited, unknown atomic.Int64
	lastErr                              atomic.Pointer[lastError]
	tokens                               float64 // rate limiter; run goroutine only
	last                                 int64   // ns of the last refill
	// The least recently seen order, and what the entry costs; run
	// goroutine only.
	prev, next *deviceStats
	size       int64
}

type lastError struct {
	reason string
	at     time.Time
}

// devices holds per-device statistics and rate limits, within a bound on
// the devices tracked and on the bytes they take: a new device beyond
// either evicts the devices seen least recently. Every device the source
// accepts has its own statistics and its own token bucket, so that devices
// sending under ever new keys cannot make the others share a bucket; an
// evicted device that comes back starts with a full bucket (a key flood
// can only make the limit more lenient for the devices it evicts, never
// refuse them). The run goroutine is the only writer; snapshot may be
// called from any goroutine.
type devices struct {
	mu    sync.RWMutex
	m     map[string]*deviceStats
	other *deviceStats

	// Least recently seen order (run goroutine only): head is the device
	// seen last.
	head, tail *deviceStats
	bytes      atomic.Int64 // what the tracked devices take
	maxEntries int
	maxBytes   int64
	evicted    *atomic.Int64

	rate  float64 // messages per second per device; 0 is no limit
	burst float64
}

func newDevices(rate float64, burst, maxEntries int, maxBytes int64, evicted *atomic.Int64) *devices {
	d := &devices{m: map[string]*deviceStats{}, other: &deviceStats{name: OtherDevices}, rate: rate,
		maxEntries: maxEntries, maxBytes: maxBytes, evicted: evicted}
	if d.maxEntries <= 0 {
		d.maxEntries = defaultMaxDevices
	}
	if d.maxBytes <= 0 {
		d.maxBytes = defaultMaxDeviceBytes
	}
	if d.evicted == nil {
		d.evicted = new(atomic.Int64)
	}
	d.burst = float64(burst)
	if d.burst <= 0 {
		d.burst = max(1, rate)
	}
	return d
}

// get returns the statistics of a device, creating them (and evicting the
// devices seen least recently when the table is full).
func (d *devices) get(name string) *deviceStats {
	if s, ok := d.m[name]; ok {
		d.touch(s)
		return s
	}
	s := &deviceStats{name: strings.Clone(name), tokens: d.burst, last: -1}
	s.size = deviceEntryBytes + int64(len(name))
	d.mu.Lock()
	d.evict(len(d.m)+1-d.maxEntries, s.size, nil)
	d.m[s.name] = s
	d.mu.Unlock()
	d.bytes.Add(s.size)
	d.pushFront(s)
	return s
}

// evict forgets the devices seen least recently, other than keep, until
// n more are gone and extra more bytes fit; d.mu is held.
func (d *devices) evict(n int, extra int64, keep *deviceStats) {
	for d.tail != nil && (n > 0 || d.bytes.Load()+extra > d.maxBytes) {
		v := d.tail
		if v == keep {
			return
		}
		d.unlink(v)
		delete(d.m, v.name)
		d.bytes.Add(-v.size)
		d.evicted.Add(1)
		n--
	}
}

func (d *devices) touch(s *deviceStats) {
	if d.head != s {
		d.unlink(s)
		d.pushFront(s)
	}
}

func (d *devices) pushFront(s *deviceStats) {
	s.prev, s.next = nil, d.head
	if d.head != nil {
		d.head.prev = s
	}
	d.head = s
	if d.tail == nil {
		d.tail = s
	}
}

func (d *devices) unlink(s *deviceStats) {
	if s.prev != nil {
		s.prev.next = s.next
	} else if d.head == s {
		d.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else if d.tail == s {
		d.tail = s.prev
	}
	s.prev, s.next = nil, nil
}

// tracked returns the number of devices tracked and the bytes they take.
func (d *devices) tracked() (int, int64) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.m), d.bytes.Load()
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

// fail records the reason of a device's last rejected message (cut to
// maxReasonBytes), keeping the table within its bytes.
func (d *devices) fail(s *deviceStats, reason string, at time.Time) {
	reason = cutUTF8(reason, maxReasonBytes)
	old := s.lastErr.Swap(&lastError{reason: reason, at: at})
	if s == d.other {
		return
	}
	delta := int64(len(reason))
	if old != nil {
		delta -= int64(len(old.reason))
	}
	s.size += delta
	d.bytes.Add(delta)
	if delta > 0 && d.bytes.Load() > d.maxBytes {
		d.mu.Lock()
		d.evict(0, 0, s)
		d.mu.Unlock()
	}
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

// logLimiter bounds the log lines input from outside can cause.
type logLimiter = lograte.Limiter

// cutUTF8 returns s cut to at most n bytes on a character boundary, as a
// copy when cut (so that the long string is not kept alive), else s.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.Clone(s[:n])
}
