package buffer

import (
	"fmt"
	"os"
	"path"
)

func encodeCursor(c uint64) []byte {
	b := make([]byte, cursorFileSize)
	copy(b, cursorMagic)
	le.PutUint64(b[8:], c)
	le.PutUint32(b[16:], crc(b[:16]))
	return b
}

// loadCursor reads dir/cursor. A missing file is cursor 0; a damaged one
// is returned as a *CorruptionError with cursor 0.
func loadCursor(fsys FS, dir string) (uint64, *CorruptionError, error) {
	data, err := readFile(fsys, path.Join(dir, cursorName))
	if os.IsNotExist(err) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("buffer: read cursor: %w", err)
	}
	if len(data) != cursorFileSize || string(data[:8]) != cursorMagic || crc(data[:16]) != le.Uint32(data[16:]) {
		return 0, &CorruptionError{Segment: cursorName, Offset: -1, Reason: "bad cursor file"}, nil
	}
	return le.Uint64(data[8:]), nil, nil
}

// storeCursor replaces dir/cursor atomically and durably.
func storeCursor(fsys FS, dir string, c uint64) error {
	if err := writeFileAtomic(fsys, path.Join(dir, cursorName), encodeCursor(c)); err != nil {
		return fmt.Errorf("buffer: store cursor: %w", err)
	}
	return nil
}
