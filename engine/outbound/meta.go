package outbound

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/sluice-edge/sluice/engine/jsonenc"
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
func FormatTime(ms int64) string { return jsonenc.FormatTime(ms) }
