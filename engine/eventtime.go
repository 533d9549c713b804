package engine

import (
	"strconv"
	"time"
)

// The event times the engine accepts, in milliseconds since the Unix epoch:
// from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z, the range of RFC
// 3339. Decoders, the event-time guard of a pipeline's sources and the
// window step refuse rows outside it with the reason, so that windows,
// watermarks and expressions can add sizes, gaps and lateness to an event
// time without overflowing
// int64.
const (
	MinEventTime int64 = -62135596800000
	MaxEventTime int64 = 253402300799999
)

// ValidEventTime reports whether ms is within [MinEventTime, MaxEventTime].
func ValidEventTime(ms int64) bool { return ms >= MinEventTime && ms <= MaxEventTime }

// FormatEventTime renders an event time for error messages: RFC 3339 with
// milliseconds when it is in range, the raw number otherwise.
func FormatEventTime(ms int64) string {
	if !ValidEventTime(ms) {
		return strconv.FormatInt(ms, 10) + " ms (outside years 0001-9999)"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
