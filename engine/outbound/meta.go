package outbound

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Metadata keys set on every outgoing message.
const (
	// MetaID is the stable message ID (also the Watermill message UUID).
	MetaID = "id"
	// MetaEdge is the name of the edge that produced the rows.
	MetaEdge = "edge"
	// MetaStream is the name of the stream the rows belong to.
	MetaStream = "stream"
	// MetaFirstSeq and MetaLastSeq are the sequences of the first and last
	// row in the message (equal for a one-row message).
	MetaFirstSeq = "first_seq"
	MetaLastSeq  = "last_seq"
	// MetaTimeMin and MetaTimeMax bound the event times of the rows, as RFC
	// 3339 UTC with milliseconds ("2024-01-01T00:00:00.000Z"); empty when no
	// row has a time.
	MetaTimeMin = "time_min"
	MetaTimeMax = "time_max"
	// MetaBackfill is "true" for rows delivered from the backlog after an
	// outage and "false" for live rows.
	MetaBackfill = "backfill"
	// MetaEncoding is the payload encoding: json, json_batch or arrow.
	MetaEncoding = "encoding"
	// MetaAsset is the key column value of a one-row json message; it is
	// absent from batch messages, when the stream has no key, and when
	// the value cannot travel as a header (control characters, more than
	// 256 bytes).
	MetaAsset = "asset"
)

// MetadataKeys lists the metadata keys every message carries.
func MetadataKeys() []string {
	return []string{MetaID, MetaEdge, MetaStream, MetaFirstSeq, MetaLastSeq, MetaTimeMin, MetaTimeMax, MetaBackfill, MetaEncoding}
}

// CheckName reports whether s can be an edge or stream name in a message
// ID: it must not be empty and must not contain '/', white space or
// control characters.
func CheckName(s string) error {
	if s == "" {
		return errors.New("name is empty")
	}
	for _, r := range s {
		if r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("name %q contains %q; use letters, digits, '-', '_', '.' or ':'", s, r)
		}
	}
	return nil
}

// RowID returns the ID of a message holding the one row with sequence seq:
// "<edge>/<stream>/<seq>".
func RowID(edge, stream string, seq uint64) string {
	return string(appendRowID(nil, edge, stream, seq))
}

// BatchID returns the ID of a message holding the rows with sequences first
// to last: "<edge>/<stream>/<first>-<last>".
func BatchID(edge, stream string, first, last uint64) string {
	return string(appendBatchID(nil, edge, stream, first, last))
}

func appendRowID(dst []byte, edge, stream string, seq uint64) []byte {
	dst = append(dst, edge...)
	dst = append(dst, '/')
	dst = append(dst, stream...)
	dst = append(dst, '/')
	return strconv.AppendUint(dst, seq, 10)
}

func appendBatchID(dst []byte, edge, stream string, first, last uint64) []byte {
	dst = appendRowID(dst, edge, stream, first)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, last, 10)
}

// ParseID splits a message ID into its edge, stream and sequence range. For
// a one-row ID first equals last; batch reports whether the ID has the
// batch form.
func ParseID(id string) (edge, stream string, first, last uint64, batch bool, err error) {
	bad := func() (string, string, uint64, uint64, bool, error) {
		return "", "", 0, 0, false, fmt.Errorf("malformed message id %q (want edge/stream/seq or edge/stream/first-last)", id)
	}
	parts := strings.Split(id, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return bad()
	}
	lo, hi, batch := strings.Cut(parts[2], "-")
	if first, err = strconv.ParseUint(lo, 10, 64); err != nil {
		return bad()
	}
	last = first
	if batch {
		if last, err = strconv.ParseUint(hi, 10, 64); err != nil || last < first {
			return bad()
		}
	}
	return parts[0], parts[1], first, last, batch, nil
}

// FormatTime formats milliseconds since the Unix epoch as RFC 3339 UTC with
// milliseconds, the form of the time_min and time_max metadata.
func FormatTime(ms int64) string { return string(appendRFC3339(nil, ms)) }

// appendRFC3339 appends ms as "YYYY-MM-DDTHH:MM:SS.mmmZ". Years outside
// 0000-9999 fall back to the decimal milliseconds.
func appendRFC3339(dst []byte, ms int64) []byte {
	days := floorDiv(ms, 86_400_000)
	rem := ms - days*86_400_000
	y, m, d := civilFromDays(days)
	if y < 0 || y > 9999 {
		return strconv.AppendInt(dst, ms, 10)
	}
	hh, rem := rem/3_600_000, rem%3_600_000
	mm, rem := rem/60_000, rem%60_000
	ss, frac := rem/1000, rem%1000
	dst = appendDigits(dst, y, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, m, 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, d, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hh, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, mm, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, ss, 2)
	dst = append(dst, '.')
	dst = appendDigits(dst, frac, 3)
	return append(dst, 'Z')
}

func appendDigits(dst []byte, v int64, width int) []byte {
	var buf [4]byte
	for i := width - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[:width]...)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// civilFromDays converts days since 1970-01-01 to a proleptic Gregorian
// date (Howard Hinnant's algorithm).
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}
