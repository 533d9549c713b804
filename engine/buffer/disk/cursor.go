package disk

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sync"
)

// Small state files (docs/format/buffer.md 6): the cursor, the sync mark
// and source positions are files of two slots, written in place,
// alternately, each with a generation and a checksum. A reader takes the
// valid slot with the higher generation, so a write torn by a crash leaves
// the previous value readable, and an update needs no new disk space.
//
// Slot: magic (8 bytes), version (4), payload length (4), generation (8),
// payload, zero padding, CRC32-C of everything before it (the last 4
// bytes of the slot). Slot 1 starts at max(slot size, 512).
const (
	slotHeader = 24

	cursorMagic = "SLUICECR"
	markMagic   = "SLUICESM"
	cursorSlot  = 64

	legacyCursorSize = 20
)

func slotStride(size int) int { return max(size, 512) }

// slotOffset is where the slot of generation gen starts.
func slotOffset(size int, gen uint64) int64 { return int64(slotStride(size)) * int64(gen%2) }

// SlotPayloadMax is the largest payload a slot of size bytes holds.
func SlotPayloadMax(size int) int { return size - slotHeader - 4 }

func checkSlotPayload(payload []byte, size int) error {
	if len(payload) > SlotPayloadMax(size) {
		return fmt.Errorf("slot payload of %d bytes does not fit a %d-byte slot", len(payload), size)
	}
	return nil
}

// encodeSlot fills b (a slot: size bytes) with payload.
func encodeSlot(b []byte, magic string, gen uint64, payload []byte) []byte {
	size := len(b)
	clear(b)
	copy(b, magic)
	le.PutUint32(b[8:], Version)
	le.PutUint32(b[12:], uint32(len(payload)))
	le.PutUint64(b[16:], gen)
	copy(b[slotHeader:size-4], payload)
	le.PutUint32(b[size-4:], CRC(b[:size-4]))
	return b
}

// DecodeSlots returns the payload of the newest valid slot of a slot file
// of slot size bytes. found is false when no slot is valid; damaged is set
// when something other than zeros fills an invalid file.
func DecodeSlots(data []byte, magic string, size int) (payload []byte, gen uint64, found, damaged bool) {
	for _, off := range []int{0, slotStride(size)} {
		if off+size > len(data) {
			continue
		}
		s := data[off : off+size]
		n := int(le.Uint32(s[12:]))
		if string(s[:8]) != magic || le.Uint32(s[8:]) != Version || n > SlotPayloadMax(size) || CRC(s[:size-4]) != le.Uint32(s[size-4:]) {
			continue
		}
		if g := le.Uint64(s[16:]); !found || g > gen {
			payload, gen, found = s[slotHeader:slotHeader+n], g, true
		}
	}
	if !found && !AllZero(data) {
		damaged = true
	}
	return payload, gen, found, damaged
}

// Slots writes the slots of a small state file in place. It is safe for
// concurrent use.
type Slots struct {
	mu    sync.Mutex
	magic string
	size  int
	f     File
	gen   uint64
	buf   []byte // the slot being written
}

// OpenSlots opens the slot file name (slot size bytes, magic), whose newest
// generation is gen, creating it with payload in a first slot when create
// is set (that needs space; later writes do not).
func OpenSlots(fsys FS, name, magic string, size int, gen uint64, payload []byte, create bool) (*Slots, error) {
	if err := checkSlotPayload(payload, size); err != nil {
		return nil, err
	}
	if create {
		gen++
		data := make([]byte, slotStride(size)+size)
		off := slotOffset(size, gen)
		encodeSlot(data[off:off+int64(size)], magic, gen, payload)
		if err := WriteFileAtomic(fsys, name, data); err != nil {
			return nil, err
		}
	}
	f, err := fsys.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &Slots{magic: magic, size: size, f: f, gen: gen, buf: make([]byte, size)}, nil
}

// Write stores payload in the slot the newest generation does not use,
// and syncs when asked.
func (s *Slots) Write(payload []byte, sync bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return os.ErrClosed
	}
	if err := checkSlotPayload(payload, s.size); err != nil {
		return err
	}
	gen := s.gen + 1
	if _, err := s.f.WriteAt(encodeSlot(s.buf, s.magic, gen, payload), slotOffset(s.size, gen)); err != nil {
		return err
	}
	s.gen = gen
	if sync {
		return s.f.Sync()
	}
	return nil
}

// Sync makes the last write durable.
func (s *Slots) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return os.ErrClosed
	}
	return s.f.Sync()
}

// Close closes the file. It is idempotent.
func (s *Slots) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// CursorState is what the cursor file says.
type CursorState struct {
	// Cursor is the highest delivered sequence.
	Cursor uint64
	// Gen is the generation of the slot read.
	Gen uint64
	// Present is false when there is no cursor file; Legacy when it has
	// the 20-byte format of version 1.
	Present, Legacy bool
	// Damage is set when the file holds no valid slot (the cursor then
	// reads as 0).
	Damage *CorruptionError
}

// ReadCursor reads dir/cursor without changing it.
func ReadCursor(fsys FS, dir string) (CursorState, error) {
	data, err := ReadFile(fsys, path.Join(dir, CursorName))
	if errors.Is(err, os.ErrNotExist) {
		return CursorState{}, nil
	}
	if err != nil {
		return CursorState{}, fmt.Errorf("buffer: read cursor: %w", err)
	}
	st := CursorState{Present: true}
	if len(data) == legacyCursorSize && string(data[:8]) == cursorMagic {
		if CRC(data[:16]) != le.Uint32(data[16:]) {
			st.Damage = &CorruptionError{Segment: CursorName, Offset: -1, Reason: "bad cursor file"}
			return st, nil
		}
		st.Cursor, st.Legacy = le.Uint64(data[8:]), true
		if st.Cursor > MaxSeq {
			st.Cursor, st.Damage = 0, &CorruptionError{Segment: CursorName, Offset: -1, Reason: "cursor out of range"}
		}
		return st, nil
	}
	payload, gen, found, damaged := DecodeSlots(data, cursorMagic, cursorSlot)
	switch {
	case found && (len(payload) != 8 || le.Uint64(payload) > MaxSeq):
		st.Damage = &CorruptionError{Segment: CursorName, Offset: -1, Reason: "bad cursor record"}
	case found:
		st.Cursor, st.Gen = le.Uint64(payload), gen
	case damaged || len(data) > 0:
		st.Damage = &CorruptionError{Segment: CursorName, Offset: -1, Reason: "bad cursor file"}
	}
	return st, nil
}

// CursorFile stores the delivery cursor in place.
type CursorFile struct{ s *Slots }

// OpenCursorFile opens dir/cursor for updates. st is what ReadCursor
// found; a missing, legacy or damaged file (the caller has quarantined
// it) is replaced by a new one holding st.Cursor.
func OpenCursorFile(fsys FS, dir string, st CursorState) (*CursorFile, error) {
	create := !st.Present || st.Legacy || st.Damage != nil
	var p [8]byte
	le.PutUint64(p[:], st.Cursor)
	s, err := OpenSlots(fsys, path.Join(dir, CursorName), cursorMagic, cursorSlot, st.Gen, p[:], create)
	if err != nil {
		return nil, fmt.Errorf("buffer: open cursor: %w", err)
	}
	return &CursorFile{s}, nil
}

// Store makes c the durable cursor: one slot write and one fsync.
func (c *CursorFile) Store(v uint64) error {
	var p [8]byte
	le.PutUint64(p[:], v)
	if err := c.s.Write(p[:], true); err != nil {
		return fmt.Errorf("buffer: store cursor: %w", err)
	}
	return nil
}

// Close closes the file.
func (c *CursorFile) Close() error { return c.s.Close() }

// Mark is a sync mark: the extent of the active WAL file.
type Mark = WALExtent

// MarkState is what the sync-mark file says.
type MarkState struct {
	Mark
	Gen uint64 `json:"gen"`
	// Valid is false when there is no file or no valid slot (marks are
	// advisory: damage only weakens the checks they allow).
	Valid bool `json:"valid"`
}

// ReadMark reads dir/syncmark without changing it.
func ReadMark(fsys FS, dir string) (MarkState, error) {
	data, err := ReadFile(fsys, path.Join(dir, SyncMarkName))
	if errors.Is(err, os.ErrNotExist) {
		return MarkState{}, nil
	}
	if err != nil {
		return MarkState{}, fmt.Errorf("buffer: read sync mark: %w", err)
	}
	p, gen, found, _ := DecodeSlots(data, markMagic, cursorSlot)
	if !found || len(p) != extentSize {
		return MarkState{}, nil
	}
	m := getExtent(p)
	if m.Base == 0 || !m.plausible() {
		return MarkState{}, nil
	}
	return MarkState{Mark: m, Gen: gen, Valid: true}, nil
}

// MarkFile stores sync marks in place. Write does not fsync: a mark
// written after a WAL fsync survives a process crash, and after a power
// loss an older mark only checks less.
type MarkFile struct{ s *Slots }

// OpenMarkFile opens dir/syncmark for updates, creating it when st is not
// valid.
func OpenMarkFile(fsys FS, dir string, st MarkState) (*MarkFile, error) {
	s, err := OpenSlots(fsys, path.Join(dir, SyncMarkName), markMagic, cursorSlot, st.Gen, markPayload(st.Mark), !st.Valid)
	if err != nil {
		return nil, fmt.Errorf("buffer: open sync mark: %w", err)
	}
	return &MarkFile{s}, nil
}

// Write stores m without syncing.
func (f *MarkFile) Write(m Mark) error {
	var p [extentSize]byte
	putExtent(p[:], m)
	return f.s.Write(p[:], false)
}

func markPayload(m Mark) []byte {
	p := make([]byte, extentSize)
	putExtent(p, m)
	return p
}

// Sync makes the last mark durable.
func (f *MarkFile) Sync() error { return f.s.Sync() }

// Close closes the file.
func (f *MarkFile) Close() error { return f.s.Close() }
