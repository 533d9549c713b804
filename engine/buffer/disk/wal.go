package disk

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
	"strings"
)

// The constants of docs/format/buffer.md.
const (
	// Version is the format version written by this package. Version 1
	// directories are read (their records carry no message boundaries).
	Version = 2

	walMagic      = "SLUICEWL"
	WALHeaderSize = 32
	RecHeaderSize = 56
	// MaxPayload bounds the payload of one WAL record.
	MaxPayload = 1 << 30

	recTypeBatch = 1
	flagHasTime  = 1

	// DefaultSegmentBytes is the default WAL file size limit.
	DefaultSegmentBytes = 16 << 20

	WALDir        = "wal"
	SegDir        = "seg"
	DeadDir       = "dead"
	QuarantineDir = "quarantine"
	ManifestName  = "manifest"
	CursorName    = "cursor"
	SyncMarkName  = "syncmark"
	MetaName      = "meta"

	// SeqColumn, MsgColumn and ErrorColumn are the columns segments add to
	// the stream's: the row's sequence, the sequence of the first row of
	// the message holding it, and (dead letters) the rejection.
	SeqColumn   = "_seq"
	MsgColumn   = "_msg"
	ErrorColumn = "_error"

	// SeqJump is added to the next sequence when corruption hides how many
	// sequences were issued, so that no identity is ever reused.
	SeqJump = 1 << 32

	// MaxSeq is the largest sequence a buffer hands out. Sequences read
	// from disk beyond it are damage, so that no arithmetic on them
	// overflows (2^62 sequences last 146 years at a billion rows/s).
	MaxSeq = 1 << 62
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC is the CRC32-C (Castagnoli) of b, the checksum of every structure.
func CRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// UpdateCRC continues a CRC32-C over p.
func UpdateCRC(c uint32, p []byte) uint32 { return crc32.Update(c, castagnoli, p) }

var le = binary.LittleEndian

// WALHeader is the 32-byte header of a WAL file whose first record has
// sequence base.
func WALHeader(base uint64) []byte {
	b := make([]byte, WALHeaderSize)
	copy(b, walMagic)
	le.PutUint32(b[8:], Version)
	le.PutUint64(b[16:], base)
	le.PutUint32(b[24:], CRC(b[:24]))
	return b
}

// ParseWALHeader returns the base sequence of a WAL file header; reason is
// empty when the header is valid.
func ParseWALHeader(b []byte) (base uint64, reason string) {
	if len(b) < WALHeaderSize {
		return 0, "short file header"
	}
	if string(b[:8]) != walMagic {
		return 0, "bad file magic"
	}
	if CRC(b[:24]) != le.Uint32(b[24:]) {
		return 0, "bad file header checksum"
	}
	if v := le.Uint32(b[8:]); v != 1 && v != Version {
		return 0, fmt.Sprintf("unsupported version %d", v)
	}
	base = le.Uint64(b[16:])
	if base == 0 || base > MaxSeq {
		return 0, fmt.Sprintf("base sequence %d out of range", base)
	}
	return base, ""
}

// RecMeta is what a WAL record header says about its batch.
type RecMeta struct {
	Length uint32
	PCRC   uint32
	First  uint64
	Rows   uint32
	// MsgRows cuts the batch into messages: rows First, First+MsgRows,
	// ... each start one; 0 makes the whole batch one message.
	MsgRows uint32
	HasTime bool
	TMin    int64
	TMax    int64
	Wall    int64
}

// Last returns the sequence of the record's last row.
func (m RecMeta) Last() uint64 { return m.First + uint64(m.Rows) - 1 }

// Starts appends to dst the sequences in [from, to] at which a message of
// this record starts.
func (m RecMeta) Starts(dst []uint64, from, to uint64) []uint64 {
	from, to = max(from, m.First), min(to, m.Last())
	if from > to {
		return dst
	}
	if m.MsgRows == 0 {
		if from == m.First {
			dst = append(dst, m.First)
		}
		return dst
	}
	step := uint64(m.MsgRows)
	s := m.First + (from-m.First+step-1)/step*step
	for ; s <= to; s += step {
		dst = append(dst, s)
	}
	return dst
}

// StartsWithin returns the message starts of starts (ascending) that lie
// in [lo, hi], beginning with lo: rows before the first start there end a
// message cut at lo, and count as one. nil stays nil (no boundaries
// recorded). The result shares starts' array (capacity capped) unless lo
// had to be put in front.
func StartsWithin(starts []uint64, lo, hi uint64) []uint64 {
	if starts == nil {
		return nil
	}
	i, _ := slices.BinarySearch(starts, lo)
	j, _ := slices.BinarySearch(starts, hi+1)
	if i < j && starts[i] == lo {
		return starts[i:j:j]
	}
	out := make([]uint64, 0, j-i+1)
	out = append(out, lo)
	return append(out, starts[i:j]...)
}

// PutRecHeader fills the 56-byte header of a record whose payload follows
// it in b, and returns m with the length and checksum set.
func PutRecHeader(b []byte, m RecMeta) RecMeta {
	payload := b[RecHeaderSize:]
	m.Length = uint32(len(payload))
	m.PCRC = CRC(payload)
	le.PutUint32(b[4:], m.Length)
	le.PutUint32(b[8:], m.PCRC)
	b[12] = recTypeBatch
	var flags uint8
	if m.HasTime {
		flags |= flagHasTime
	}
	b[13] = flags
	b[14], b[15] = 0, 0
	le.PutUint64(b[16:], m.First)
	le.PutUint32(b[24:], m.Rows)
	le.PutUint32(b[28:], m.MsgRows)
	le.PutUint64(b[32:], uint64(m.TMin))
	le.PutUint64(b[40:], uint64(m.TMax))
	le.PutUint64(b[48:], uint64(m.Wall))
	le.PutUint32(b[0:], CRC(b[4:RecHeaderSize]))
	return m
}

// ParseRecHeader validates and decodes a record header (at least
// RecHeaderSize bytes); reason is empty when the header is valid.
func ParseRecHeader(b []byte) (m RecMeta, reason string) {
	if CRC(b[4:RecHeaderSize]) != le.Uint32(b[0:]) {
		return m, "bad record header checksum"
	}
	m.Length = le.Uint32(b[4:])
	m.PCRC = le.Uint32(b[8:])
	if b[12] != recTypeBatch {
		return m, fmt.Sprintf("unknown record type %d", b[12])
	}
	m.HasTime = b[13]&flagHasTime != 0
	m.First = le.Uint64(b[16:])
	m.Rows = le.Uint32(b[24:])
	m.MsgRows = le.Uint32(b[28:])
	m.TMin = int64(le.Uint64(b[32:]))
	m.TMax = int64(le.Uint64(b[40:]))
	m.Wall = int64(le.Uint64(b[48:]))
	switch {
	case m.Length > MaxPayload:
		return m, fmt.Sprintf("impossible payload length %d", m.Length)
	case m.Rows == 0:
		return m, "record with no rows"
	case m.First == 0:
		return m, "record with sequence 0"
	case m.First > MaxSeq-uint64(m.Rows)+1:
		return m, "sequence out of range"
	}
	return m, ""
}

// WALName is the file name of WAL file num.
func WALName(num uint32) string { return fmt.Sprintf("%08d.wal", num) }

// ParseWALName returns the number of a WAL file name.
func ParseWALName(name string) (uint32, bool) {
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

// SegName is the file name of a segment holding sequences first..last.
func SegName(first, last uint64) string { return fmt.Sprintf("%020d-%020d.parquet", first, last) }

// ParseSegName returns the sequence range of a segment file name.
func ParseSegName(name string) (first, last uint64, ok bool) {
	s, ok := strings.CutSuffix(name, ".parquet")
	if !ok || len(s) != 41 || s[20] != '-' {
		return 0, 0, false
	}
	f, err1 := strconv.ParseUint(s[:20], 10, 64)
	l, err2 := strconv.ParseUint(s[21:], 10, 64)
	if err1 != nil || err2 != nil || f == 0 || l < f || l > MaxSeq {
		return 0, 0, false
	}
	return f, l, true
}

// AllZero reports whether b holds only zero bytes.
func AllZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// WALRec locates one record of a WAL file.
type WALRec struct {
	Off int64
	RecMeta
}

// WALScan is what replaying one WAL file found.
type WALScan struct {
	// NoHeader is set for a file shorter than its header, or with
	// nothing but zero bytes: it holds nothing.
	NoHeader bool
	// BadHeader is set when the file header is damaged: Base is then
	// unknown (0) and the records are found by their own headers.
	BadHeader bool
	Base      uint64
	// Recs are the valid records in file order.
	Recs []WALRec
	// End is the offset after the last valid record (or of the torn
	// tail).
	End int64
	// TornAt is the offset of a torn tail to truncate, or -1; TornFirst
	// and TornLast are the sequences of the torn record when its header
	// was intact.
	TornAt              int64
	TornFirst, TornLast uint64
	Damage              []*CorruptionError
	// Unbounded is set when damage hides how many sequences were issued.
	Unbounded bool
	// Next is the sequence after what the records and the damage account
	// for (0 when unknown).
	Next uint64
}

// LastSeq returns the sequence of the last valid row (0: none).
func (s *WALScan) LastSeq() uint64 {
	if len(s.Recs) == 0 {
		return 0
	}
	return s.Recs[len(s.Recs)-1].Last()
}

// ScanWAL validates the records of a WAL file (docs/format/buffer.md 3.5).
// rel names the file in errors.
func ScanWAL(data []byte, rel string) WALScan {
	res := WALScan{TornAt: -1}
	if len(data) < WALHeaderSize || AllZero(data) {
		// A crash while the file was created: nothing was written to
		// it. (Whether rows synced to it are gone is for Scan to say,
		// from the recorded extent.)
		res.NoHeader = true
		return res
	}
	base, reason := ParseWALHeader(data)
	if reason != "" {
		if AllZero(data[:WALHeaderSize]) {
			reason = "zeroed file header"
		}
		res.BadHeader = true
		res.Damage = append(res.Damage, &CorruptionError{Segment: rel, Offset: 0, Reason: reason})
	}
	res.Base = base
	expect := base // next sequence expected, 0 when unknown
	off := int64(WALHeaderSize)
	size := int64(len(data))
	corrupt := func(at int64, reason string, lostFirst, lostLast uint64) {
		res.Damage = append(res.Damage, &CorruptionError{
			Segment: rel, Offset: at, Reason: reason, LostFirst: lostFirst, LostLast: lostLast,
		})
	}
	for off < size {
		rem := data[off:]
		if len(rem) < RecHeaderSize || AllZero(rem) {
			res.TornAt = off
			break
		}
		m, reason := ParseRecHeader(rem)
		if reason == "" {
			end := off + RecHeaderSize + int64(m.Length)
			if end > size {
				res.TornAt, res.TornFirst, res.TornLast = off, m.First, m.Last()
				break
			}
			if CRC(data[off+RecHeaderSize:end]) != m.PCRC {
				if end == size || AllZero(data[end:]) {
					res.TornAt, res.TornFirst, res.TornLast = off, m.First, m.Last()
					break
				}
				corrupt(off, "bad payload checksum", m.First, m.Last())
				expect = m.Last() + 1
				off = end
				continue
			}
			if expect != 0 && m.First != expect {
				if m.First < expect {
					corrupt(off, fmt.Sprintf("sequence %d does not follow %d", m.First, expect-1), 0, 0)
					off = end
					continue
				}
				corrupt(off, fmt.Sprintf("sequence gap before %d", m.First), expect, m.First-1)
			}
			res.Recs = append(res.Recs, WALRec{Off: off, RecMeta: m})
			expect = m.Last() + 1
			off = end
			continue
		}
		// A damaged header: resynchronise on the next valid record.
		next, complete := resync(data, off+1)
		if next < 0 {
			lost := expect
			if lost == 0 {
				lost = 1
			}
			corrupt(off, reason, lost, 0)
			res.Unbounded = true
			off = size
			break
		}
		// The rows between the damage and the next valid record are lost.
		nm, _ := ParseRecHeader(data[next:])
		var lf, ll uint64
		if expect != 0 && nm.First > expect {
			lf, ll = expect, nm.First-1
		}
		corrupt(off, reason, lf, ll)
		off, expect = next, nm.First
		if !complete {
			// That record is cut by the end of the file: a torn tail
			// after the damage.
			res.TornAt, res.TornFirst, res.TornLast = next, nm.First, nm.Last()
			break
		}
	}
	res.Next = expect
	res.End = off
	if res.TornAt >= 0 {
		res.End = res.TornAt
	}
	return res
}

// resync returns the offset of the first valid record at or after from,
// or -1: a complete one, or a valid header whose payload runs past the end
// of the file (complete is false).
func resync(data []byte, from int64) (int64, bool) {
	size := int64(len(data))
	for p := from; p+RecHeaderSize <= size; p++ {
		if data[p+12] != recTypeBatch {
			continue
		}
		m, reason := ParseRecHeader(data[p:])
		if reason != "" {
			continue
		}
		end := p + RecHeaderSize + int64(m.Length)
		if end > size {
			return p, false
		}
		if CRC(data[p+RecHeaderSize:end]) == m.PCRC {
			return p, true
		}
	}
	return -1, false
}
