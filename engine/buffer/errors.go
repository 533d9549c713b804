package buffer

import (
	"errors"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
)

var (
	// ErrFull is returned by Append when the quota is exhausted and the
	// policy does not allow dropping anything to make room. The caller
	// applies backpressure (does not acknowledge its input) and retries.
	ErrFull = errors.New("buffer: quota full")
	// ErrNoSpace is returned (wrapped) by Append when the file system is
	// full. Nothing was stored; the caller applies backpressure and
	// retries once delivered rows have freed space.
	ErrNoSpace = errors.New("buffer: no space left on device")
	// ErrClosed is returned by operations on a closed buffer.
	ErrClosed = errors.New("buffer: closed")
	// ErrFailed is returned by Append after an fsync of the WAL failed: what
	// is on disk is unknown until the buffer is closed and reopened.
	ErrFailed = errors.New("buffer: write-ahead log failed, reopen the buffer")
	// ErrSchema is returned by Append for a record of another schema.
	ErrSchema = errors.New("buffer: record schema differs from the buffer schema")
	// ErrReadOnly is returned by changes to a buffer opened read-only.
	ErrReadOnly = errors.New("buffer: opened read-only")
	// ErrLocked is returned by Open when another buffer (in this process
	// or another) has the directory open.
	ErrLocked = errors.New("buffer: in use")
	// ErrMark is returned (wrapped) by Commit and Rollback for a sequence
	// they cannot take: past the last appended row, inside a WAL record,
	// below what is committed, or on a buffer not opened Held.
	ErrMark = errors.New("buffer: invalid commit mark")
)

// CorruptionError describes a damaged file; see disk.CorruptionError.
type CorruptionError = disk.CorruptionError

// FS is the file system a buffer uses; see disk.FS.
type FS = disk.FS

// File is an open file of an FS; see disk.File.
type File = disk.File

// OS is the FS of the operating system.
var OS = disk.OS

// DefaultSegmentBytes is the default WAL file size limit.
const DefaultSegmentBytes = disk.DefaultSegmentBytes

// noSpace wraps a file-system-full error as ErrNoSpace (keeping the cause).
func noSpace(err error) error {
	if err == nil || errors.Is(err, ErrNoSpace) || !disk.IsNoSpace(err) {
		return err
	}
	return errors.Join(ErrNoSpace, err)
}
