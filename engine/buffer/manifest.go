package buffer

import (
	"fmt"
	"os"
	"path"
	"slices"
	"sync"
)

// segKind tells data segments from dead-letter segments.
type segKind uint8

const (
	kindData segKind = 1
	kindDead segKind = 2
)

// Manifest record types and remove reasons (docs/format/buffer.md 5).
const (
	manAdd    = 1
	manRemove = 2
	manHigh   = 3

	reasonQuota      = 2
	reasonTTL        = 3
	reasonCorrupt    = 4
	reasonMissing    = 5
	reasonDeadPurged = 6

	manAddSize    = 68
	manRemoveSize = 28
)

// segEntry is one manifest-listed segment.
type segEntry struct {
	kind       segKind
	hasTime    bool
	first      uint64
	last       uint64
	rows       uint64
	tmin, tmax int64
	written    int64 // oldest append time, ms
	bytes      int64
	crc        uint32
}

func (e *segEntry) rel() string {
	dir := segDir
	if e.kind == kindDead {
		dir = deadDir
	}
	return path.Join(dir, segName(e.first, e.last))
}

// seqRange is a removed sequence range.
type seqRange struct {
	kind        segKind
	reason      uint8
	first, last uint64
	rows        uint64
}

type segKey struct {
	kind  segKind
	first uint64
}

// manifest is the durable list of sealed segments: an append-only log that
// is compacted by atomic replacement. Its in-memory state changes only once
// a record is durable.
type manifest struct {
	mu      sync.Mutex
	fs      FS
	path    string
	f       File
	size    int64
	records int
	broken  bool // the file's tail is unknown: rewrite before appending

	live    map[segKey]segEntry
	removed []seqRange
	high    uint64 // every sequence below high was issued
	cursor  uint64 // removed ranges at or below are forgotten on compaction
}

func encodeAdd(e segEntry) []byte {
	b := make([]byte, manRecHeader+manAddSize)
	body := b[manRecHeader:]
	body[0] = byte(e.kind)
	if e.hasTime {
		body[1] = flagHasTime
	}
	le.PutUint64(body[4:], e.first)
	le.PutUint64(body[12:], e.last)
	le.PutUint64(body[20:], e.rows)
	le.PutUint64(body[28:], uint64(e.tmin))
	le.PutUint64(body[36:], uint64(e.tmax))
	le.PutUint64(body[44:], uint64(e.written))
	le.PutUint64(body[52:], uint64(e.bytes))
	le.PutUint32(body[60:], e.crc)
	return frameManRecord(b, manAdd)
}

func encodeRemove(r seqRange) []byte {
	b := make([]byte, manRecHeader+manRemoveSize)
	body := b[manRecHeader:]
	body[0] = byte(r.kind)
	body[1] = r.reason
	le.PutUint64(body[4:], r.first)
	le.PutUint64(body[12:], r.last)
	le.PutUint64(body[20:], r.rows)
	return frameManRecord(b, manRemove)
}

func encodeHigh(next uint64) []byte {
	b := make([]byte, manRecHeader+8)
	le.PutUint64(b[manRecHeader:], next)
	return frameManRecord(b, manHigh)
}

func frameManRecord(b []byte, typ byte) []byte {
	le.PutUint32(b[4:], uint32(len(b)-manRecHeader))
	b[8] = typ
	le.PutUint32(b[0:], crc(b[4:]))
	return b
}

func manifestHeader() []byte {
	b := make([]byte, manHeaderSize)
	copy(b, manifestMagic)
	le.PutUint32(b[8:], formatVersion)
	le.PutUint32(b[12:], crc(b[:12]))
	return b
}

// apply changes the in-memory state by one decoded record.
func (m *manifest) apply(typ byte, body []byte) string {
	switch typ {
	case manAdd:
		if len(body) != manAddSize {
			return "bad add record length"
		}
		e := segEntry{
			kind:    segKind(body[0]),
			hasTime: body[1]&flagHasTime != 0,
			first:   le.Uint64(body[4:]),
			last:    le.Uint64(body[12:]),
			rows:    le.Uint64(body[20:]),
			tmin:    int64(le.Uint64(body[28:])),
			tmax:    int64(le.Uint64(body[36:])),
			written: int64(le.Uint64(body[44:])),
			bytes:   int64(le.Uint64(body[52:])),
			crc:     le.Uint32(body[60:]),
		}
		if (e.kind != kindData && e.kind != kindDead) || e.first == 0 || e.last < e.first {
			return "bad add record"
		}
		m.live[segKey{e.kind, e.first}] = e
		m.high = max(m.high, e.last+1)
	case manRemove:
		if len(body) != manRemoveSize {
			return "bad remove record length"
		}
		r := seqRange{
			kind: segKind(body[0]), reason: body[1],
			first: le.Uint64(body[4:]), last: le.Uint64(body[12:]), rows: le.Uint64(body[20:]),
		}
		if r.first == 0 || r.last < r.first {
			return "bad remove record"
		}
		delete(m.live, segKey{r.kind, r.first})
		if r.kind == kindData {
			m.removed = append(m.removed, r)
		}
		m.high = max(m.high, r.last+1)
	case manHigh:
		if len(body) != 8 {
			return "bad high record length"
		}
		m.high = max(m.high, le.Uint64(body))
	default:
		return fmt.Sprintf("unknown record type %d", typ)
	}
	return ""
}

// openManifest loads dir/manifest. Damage is returned as a
// *CorruptionError (the caller quarantines a copy and compacts); err is an
// I/O error.
func openManifest(fsys FS, dir string) (m *manifest, damage *CorruptionError, torn bool, err error) {
	m = &manifest{fs: fsys, path: path.Join(dir, manifestName), live: map[segKey]segEntry{}, broken: true}
	data, err := readFile(fsys, m.path)
	if os.IsNotExist(err) {
		return m, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("buffer: read manifest: %w", err)
	}
	if len(data) < manHeaderSize || allZero(data[:manHeaderSize]) {
		return m, nil, true, nil
	}
	if string(data[:8]) != manifestMagic || crc(data[:12]) != le.Uint32(data[12:]) ||
		le.Uint32(data[8:]) != formatVersion {
		return m, &CorruptionError{Segment: manifestName, Offset: 0, Reason: "bad manifest header"}, false, nil
	}
	off := manHeaderSize
	for off < len(data) {
		rem := data[off:]
		if len(rem) < manRecHeader || allZero(rem) {
			return m, nil, true, nil
		}
		n := int(le.Uint32(rem[4:]))
		if n > len(rem)-manRecHeader {
			return m, nil, true, nil
		}
		rec := rem[:manRecHeader+n]
		if crc(rec[4:]) != le.Uint32(rec) {
			if manRecHeader+n == len(rem) {
				return m, nil, true, nil
			}
			return m, &CorruptionError{Segment: manifestName, Offset: int64(off), Reason: "bad record checksum"}, false, nil
		}
		if reason := m.apply(rec[8], rec[manRecHeader:]); reason != "" {
			return m, &CorruptionError{Segment: manifestName, Offset: int64(off), Reason: reason}, false, nil
		}
		m.records++
		off += len(rec)
	}
	// Intact: append to it.
	f, err := fsys.OpenFile(m.path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, false, fmt.Errorf("buffer: open manifest: %w", err)
	}
	m.f, m.size, m.broken = f, int64(len(data)), false
	return m, nil, false, nil
}

// write appends records, makes them durable and applies them. After a
// failure the log's tail is unknown and the next write rewrites the file.
func (m *manifest) write(recs ...[]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.broken || m.f == nil {
		if err := m.rewriteLocked(recs...); err != nil {
			return err
		}
	} else {
		var buf []byte
		for _, r := range recs {
			buf = append(buf, r...)
		}
		if _, err := m.f.WriteAt(buf, m.size); err != nil {
			m.broken = true
			return fmt.Errorf("buffer: write manifest: %w", err)
		}
		if err := m.f.Sync(); err != nil {
			m.broken = true
			return fmt.Errorf("buffer: sync manifest: %w", err)
		}
		m.size += int64(len(buf))
		m.records += len(recs)
	}
	for _, r := range recs {
		m.apply(r[8], r[manRecHeader:])
	}
	if m.records > 2*(len(m.live)+len(m.removed))+64 {
		_ = m.rewriteLocked() // best effort; broken is set on failure
	}
	return nil
}

// compact rewrites the manifest from its state.
func (m *manifest) compact(next uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.high = max(m.high, next)
	return m.rewriteLocked()
}

// rewriteLocked replaces the file with the state plus extra records
// (applied by the caller once this returns nil).
func (m *manifest) rewriteLocked(extra ...[]byte) error {
	m.removed = slices.DeleteFunc(m.removed, func(r seqRange) bool { return r.last <= m.cursor })
	buf := manifestHeader()
	buf = append(buf, encodeHigh(m.high)...)
	n := 1
	keys := make([]segKey, 0, len(m.live))
	for k := range m.live {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b segKey) int {
		if a.kind != b.kind {
			return int(a.kind) - int(b.kind)
		}
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	for _, k := range keys {
		buf = append(buf, encodeAdd(m.live[k])...)
		n++
	}
	for _, r := range m.removed {
		buf = append(buf, encodeRemove(r)...)
		n++
	}
	for _, r := range extra {
		buf = append(buf, r...)
		n++
	}
	if m.f != nil {
		_ = m.f.Close()
		m.f = nil
	}
	m.broken = true
	if err := writeFileAtomic(m.fs, m.path, buf); err != nil {
		return fmt.Errorf("buffer: rewrite manifest: %w", err)
	}
	f, err := m.fs.OpenFile(m.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("buffer: open manifest: %w", err)
	}
	m.f, m.size, m.records, m.broken = f, int64(len(buf)), n, false
	return nil
}

// forget drops a delivered segment from the state (no record is written:
// segments at or below the cursor are reclaimed by definition).
func (m *manifest) forget(kind segKind, first uint64) {
	m.mu.Lock()
	delete(m.live, segKey{kind, first})
	m.mu.Unlock()
}

func (m *manifest) setCursor(c uint64) {
	m.mu.Lock()
	m.cursor = c
	m.mu.Unlock()
}

// removedContains reports whether [first, last] lies in a removed range.
func (m *manifest) removedContains(first, last uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.removed {
		if r.first <= first && last <= r.last {
			return true
		}
	}
	return false
}

func (m *manifest) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f = nil
	return err
}
