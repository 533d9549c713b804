package buffer

import "fmt"

// walState is the life cycle of a WAL file.
type walState uint8

const (
	walActive  walState = iota // receiving appends
	walRolled                  // full or idle, waiting to be sealed
	walSealing                 // being rewritten as Parquet
	walRemoved                 // sealed, delivered, dropped or quarantined
)

// walRec locates one record of a WAL file.
type walRec struct {
	off int64
	recMeta
}

// walFile is one WAL file and the index of its valid records.
type walFile struct {
	num   uint32
	rel   string // "wal/00000001.wal"
	f     File
	base  uint64
	size  int64
	recs  []walRec
	state walState
	// refs counts users of f besides the directory entry: the appender
	// while active, syncs, readers and the sealer. f is closed once the
	// file is removed and refs is zero.
	refs  int
	dirty bool // written since the last sync
	// damage lists corruption found in the file; a damaged file is
	// quarantined, not removed, once its valid records are sealed.
	damage []*CorruptionError
}

func (w *walFile) lastSeq() uint64 {
	if len(w.recs) == 0 {
		return 0
	}
	return w.recs[len(w.recs)-1].last()
}

// scanResult is what replaying one WAL file found.
type scanResult struct {
	noHeader bool // shorter than a header or a zero header: holds nothing
	base     uint64
	recs     []walRec
	end      int64 // offset after the last valid record
	tornAt   int64 // offset of a torn tail to truncate, or -1
	// tornFirst and tornLast are the sequences of the torn record when its
	// header was intact.
	tornFirst, tornLast uint64
	damage              []*CorruptionError
	// unbounded is set when damage hides how many sequences were issued.
	unbounded bool
}

// scanWAL validates the records of a WAL file (docs/format/buffer.md 3.5).
// rel names the file in errors.
func scanWAL(data []byte, rel string) scanResult {
	res := scanResult{tornAt: -1}
	if len(data) < walHeaderSize || allZero(data[:walHeaderSize]) {
		res.noHeader = true
		return res
	}
	base, reason := parseWALHeader(data)
	if reason != "" {
		res.damage = append(res.damage, &CorruptionError{Segment: rel, Offset: 0, Reason: reason})
	}
	res.base = base
	expect := base // next sequence expected, 0 when unknown
	off := int64(walHeaderSize)
	size := int64(len(data))
	corrupt := func(at int64, reason string, lostFirst, lostLast uint64) {
		res.damage = append(res.damage, &CorruptionError{
			Segment: rel, Offset: at, Reason: reason, LostFirst: lostFirst, LostLast: lostLast,
		})
	}
	for off < size {
		rem := data[off:]
		if len(rem) < recHeaderSize || allZero(rem) {
			res.tornAt = off
			break
		}
		m, reason := parseRecHeader(rem)
		if reason == "" {
			end := off + recHeaderSize + int64(m.length)
			if end > size {
				res.tornAt, res.tornFirst, res.tornLast = off, m.first, m.last()
				break
			}
			if crc(data[off+recHeaderSize:end]) != m.pcrc {
				if end == size {
					res.tornAt, res.tornFirst, res.tornLast = off, m.first, m.last()
					break
				}
				corrupt(off, "bad payload checksum", m.first, m.last())
				expect = m.last() + 1
				off = end
				continue
			}
			if expect != 0 && m.first != expect {
				if m.first < expect {
					corrupt(off, fmt.Sprintf("sequence %d does not follow %d", m.first, expect-1), 0, 0)
					off = end
					continue
				}
				corrupt(off, fmt.Sprintf("sequence gap before %d", m.first), expect, m.first-1)
			}
			res.recs = append(res.recs, walRec{off: off, recMeta: m})
			expect = m.last() + 1
			off = end
			continue
		}
		// A damaged header: resynchronise on the next valid record.
		next := resync(data, off+1)
		if next < 0 {
			lost := expect
			if lost == 0 {
				lost = 1
			}
			corrupt(off, reason, lost, 0)
			res.unbounded = true
			off = size
			break
		}
		nm, _ := parseRecHeader(data[next:])
		var lf, ll uint64
		if expect != 0 && nm.first > expect {
			lf, ll = expect, nm.first-1
		}
		corrupt(off, reason, lf, ll)
		off = next
		expect = nm.first
	}
	res.end = off
	if res.tornAt >= 0 {
		res.end = res.tornAt
	}
	return res
}

// resync returns the offset of the first complete, valid record at or
// after from, or -1.
func resync(data []byte, from int64) int64 {
	size := int64(len(data))
	for p := from; p+recHeaderSize <= size; p++ {
		if data[p+12] != recTypeBatch {
			continue
		}
		m, reason := parseRecHeader(data[p:])
		if reason != "" {
			continue
		}
		end := p + recHeaderSize + int64(m.length)
		if end <= size && crc(data[p+recHeaderSize:end]) == m.pcrc {
			return p
		}
	}
	return -1
}
