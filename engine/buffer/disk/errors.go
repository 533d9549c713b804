package disk

import (
	"errors"
	"fmt"
)

// ErrNoSpace marks a failure caused by a full file system where no
// system error says so (see IsNoSpace).
var ErrNoSpace = errors.New("no space left on device")

// CorruptionError describes a damaged file. The damaged file has been moved
// to the quarantine directory (unless Quarantined is empty); the rows it
// held that could not be salvaged are Lost.
type CorruptionError struct {
	// Segment is the path of the damaged file relative to the buffer
	// directory, for example "wal/00000003.wal" or "seg/...parquet".
	Segment string
	// Offset is the byte offset of the damage in the file, or -1 when the
	// whole file is affected (checksum of a segment, missing file).
	Offset int64
	// Reason says what is wrong ("bad record header checksum", ...).
	Reason string
	// Quarantined is where the file was moved, relative to the buffer
	// directory, or empty.
	Quarantined string
	// LostFirst and LostLast bound the sequences lost with the damage;
	// both are zero when nothing was lost (for example when the WAL still
	// covers a damaged segment). LostLast is zero when the end of the lost
	// range is unknown.
	LostFirst, LostLast uint64
	// Err is the underlying error, if any.
	Err error
}

func (e *CorruptionError) Error() string {
	s := fmt.Sprintf("buffer: corrupt %s", e.Segment)
	if e.Offset >= 0 {
		s += fmt.Sprintf(" at offset %d", e.Offset)
	}
	s += ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if l := LostText(e.LostFirst, e.LostLast); l != "" {
		s += " (" + l + ")"
	}
	if e.Quarantined != "" {
		s += "; moved to " + e.Quarantined
	}
	return s
}

func (e *CorruptionError) Unwrap() error { return e.Err }

// LostText says which sequences a loss covers ("sequences 5-9 lost",
// "sequences from 5 lost" when the end is unknown), or "" for none.
func LostText(first, last uint64) string {
	switch {
	case first != 0 && last != 0:
		return fmt.Sprintf("sequences %d-%d lost", first, last)
	case first != 0:
		return fmt.Sprintf("sequences from %d lost", first)
	}
	return ""
}
