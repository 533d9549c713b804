package buffer

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// The constants of docs/format/buffer.md.
const (
	walMagic       = "SLUICEWL"
	manifestMagic  = "SLUICEMF"
	cursorMagic    = "SLUICECR"
	formatVersion  = 1
	walHeaderSize  = 32
	recHeaderSize  = 56
	manHeaderSize  = 16
	manRecHeader   = 9
	cursorFileSize = 20
	maxPayload     = 1 << 30

	recTypeBatch = 1
	flagHasTime  = 1

	// DefaultSegmentBytes is the default WAL file size limit.
	DefaultSegmentBytes = 16 << 20

	walDir        = "wal"
	segDir        = "seg"
	deadDir       = "dead"
	quarantineDir = "quarantine"
	manifestName  = "manifest"
	cursorName    = "cursor"

	seqColumn   = "_seq"
	errorColumn = "_error"

	// seqJump is added to the next sequence when corruption hides how many
	// sequences were issued, so that no identity is ever reused.
	seqJump = 1 << 32
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

var le = binary.LittleEndian

// walHeader is the 32-byte header of a WAL file.
func walHeader(base uint64) []byte {
	b := make([]byte, walHeaderSize)
	copy(b, walMagic)
	le.PutUint32(b[8:], formatVersion)
	le.PutUint64(b[16:], base)
	le.PutUint32(b[24:], crc(b[:24]))
	return b
}

// parseWALHeader returns the base sequence of a WAL file header.
func parseWALHeader(b []byte) (base uint64, reason string) {
	if string(b[:8]) != walMagic {
		return 0, "bad file magic"
	}
	if crc(b[:24]) != le.Uint32(b[24:]) {
		return 0, "bad file header checksum"
	}
	if v := le.Uint32(b[8:]); v != formatVersion {
		return 0, fmt.Sprintf("unsupported version %d", v)
	}
	return le.Uint64(b[16:]), ""
}

// recMeta is what a WAL record header says about its batch.
type recMeta struct {
	length  uint32
	pcrc    uint32
	flags   uint8
	first   uint64
	rows    uint32
	tmin    int64
	tmax    int64
	wall    int64
	hasTime bool
}

func (m recMeta) last() uint64 { return m.first + uint64(m.rows) - 1 }

// putRecHeader fills the 56-byte header of a record whose payload follows
// it in b, and returns m with the length and checksum set.
func putRecHeader(b []byte, m recMeta) recMeta {
	payload := b[recHeaderSize:]
	m.length = uint32(len(payload))
	m.pcrc = crc(payload)
	le.PutUint32(b[4:], m.length)
	le.PutUint32(b[8:], m.pcrc)
	b[12] = recTypeBatch
	var flags uint8
	if m.hasTime {
		flags |= flagHasTime
	}
	b[13] = flags
	b[14], b[15] = 0, 0
	le.PutUint64(b[16:], m.first)
	le.PutUint32(b[24:], m.rows)
	le.PutUint32(b[28:], 0)
	le.PutUint64(b[32:], uint64(m.tmin))
	le.PutUint64(b[40:], uint64(m.tmax))
	le.PutUint64(b[48:], uint64(m.wall))
	le.PutUint32(b[0:], crc(b[4:recHeaderSize]))
	return m
}

// parseRecHeader validates and decodes a record header. reason is empty when
// the header is valid.
func parseRecHeader(b []byte) (m recMeta, reason string) {
	if crc(b[4:recHeaderSize]) != le.Uint32(b[0:]) {
		return m, "bad record header checksum"
	}
	m.length = le.Uint32(b[4:])
	m.pcrc = le.Uint32(b[8:])
	if b[12] != recTypeBatch {
		return m, fmt.Sprintf("unknown record type %d", b[12])
	}
	m.flags = b[13]
	m.hasTime = m.flags&flagHasTime != 0
	m.first = le.Uint64(b[16:])
	m.rows = le.Uint32(b[24:])
	m.tmin = int64(le.Uint64(b[32:]))
	m.tmax = int64(le.Uint64(b[40:]))
	m.wall = int64(le.Uint64(b[48:]))
	switch {
	case m.length > maxPayload:
		return m, fmt.Sprintf("impossible payload length %d", m.length)
	case m.rows == 0:
		return m, "record with no rows"
	case m.first == 0:
		return m, "record with sequence 0"
	}
	return m, ""
}

func walName(num uint32) string { return fmt.Sprintf("%08d.wal", num) }

func parseWALName(name string) (uint32, bool) {
	s, ok := strings.CutSuffix(name, ".wal")
	if !ok || len(s) != 8 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint32(n), true
}

func segName(first, last uint64) string { return fmt.Sprintf("%020d-%020d.parquet", first, last) }

func parseSegName(name string) (first, last uint64, ok bool) {
	s, ok := strings.CutSuffix(name, ".parquet")
	if !ok || len(s) != 41 || s[20] != '-' {
		return 0, 0, false
	}
	f, err1 := strconv.ParseUint(s[:20], 10, 64)
	l, err2 := strconv.ParseUint(s[21:], 10, 64)
	if err1 != nil || err2 != nil || f == 0 || l < f {
		return 0, 0, false
	}
	return f, l, true
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
