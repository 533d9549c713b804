package disk

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"sync"
)

// SegKind tells data segments from dead-letter segments.
type SegKind uint8

// Segment kinds.
const (
	KindData SegKind = 1
	KindDead SegKind = 2
)

func (k SegKind) String() string {
	if k == KindDead {
		return "dead"
	}
	return "data"
}

// Reason says why a sequence range was removed without delivery.
type Reason uint8

// Remove reasons (docs/format/buffer.md 5).
const (
	ReasonQuota      Reason = 2
	ReasonTTL        Reason = 3
	ReasonCorrupt    Reason = 4
	ReasonMissing    Reason = 5
	ReasonDeadPurged Reason = 6
)

var reasonNames = map[Reason]string{
	ReasonQuota: "quota", ReasonTTL: "ttl", ReasonCorrupt: "corrupt",
	ReasonMissing: "missing", ReasonDeadPurged: "dead_letter_purged",
}

func (r Reason) String() string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", r)
}

// Manifest record types.
const (
	manAdd    = 1
	manRemove = 2
	manHigh   = 3
	manWAL    = 4

	manHeaderSize = 16
	manRecHeader  = 9
	manAddSize    = 68
	manRemoveSize = 28
	manWALSize    = extentSize

	manifestMagic = "SLUICEMF"
	// manifestReserve is the space kept allocated after the manifest's
	// last record, so that records can be appended on a full disk.
	manifestReserve = 64 << 10
)

// SegEntry is one manifest-listed segment.
type SegEntry struct {
	Kind       SegKind
	HasTime    bool
	First      uint64
	Last       uint64
	Rows       uint64
	TMin, TMax int64
	Written    int64 // oldest append time, ms
	Bytes      int64
	CRC        uint32
}

// Rel returns the segment's path relative to the buffer directory.
func (e *SegEntry) Rel() string {
	dir := SegDir
	if e.Kind == KindDead {
		dir = DeadDir
	}
	return path.Join(dir, SegName(e.First, e.Last))
}

// Removed is a sequence range removed without delivery.
type Removed struct {
	Kind        SegKind
	Reason      Reason
	First, Last uint64
	Rows        uint64
}

// WALExtent says how far WAL file Num, opened at sequence Base, is
// durable: up to Size bytes, holding every sequence below Next. The
// manifest records it for files closed for appends, the sync mark for the
// active file (docs/format/buffer.md 4 and 6).
type WALExtent struct {
	Num  uint32 `json:"num"`
	Base uint64 `json:"base"`
	Next uint64 `json:"next"`
	Size int64  `json:"size"`
}

// extentSize is the encoded length of a WALExtent.
const extentSize = 32

func putExtent(b []byte, w WALExtent) {
	le.PutUint32(b[0:], w.Num)
	clear(b[4:8])
	le.PutUint64(b[8:], w.Base)
	le.PutUint64(b[16:], w.Next)
	le.PutUint64(b[24:], uint64(w.Size))
}

func getExtent(b []byte) WALExtent {
	return WALExtent{Num: le.Uint32(b[0:]), Base: le.Uint64(b[8:]), Next: le.Uint64(b[16:]), Size: int64(le.Uint64(b[24:]))}
}

// plausible reports whether the extent can describe a WAL file.
func (w WALExtent) plausible() bool {
	return w.Num != 0 && w.Next >= w.Base && w.Next <= MaxSeq+1 && w.Size >= WALHeaderSize
}

// Covers reports whether one of segs (ordered by First, not overlapping)
// holds every sequence of [first, last].
func Covers(segs []SegEntry, first, last uint64) bool {
	i, _ := slices.BinarySearchFunc(segs, first, func(e SegEntry, s uint64) int {
		switch {
		case e.Last < s:
			return -1
		case e.First > s:
			return 1
		}
		return 0
	})
	return i < len(segs) && segs[i].First <= first && last <= segs[i].Last
}

// SegKey identifies a listed segment.
type SegKey struct {
	Kind  SegKind
	First uint64
}

// EncodeAdd is the manifest record listing a segment.
func EncodeAdd(e SegEntry) []byte {
	b := make([]byte, manRecHeader+manAddSize)
	body := b[manRecHeader:]
	body[0] = byte(e.Kind)
	if e.HasTime {
		body[1] = flagHasTime
	}
	le.PutUint64(body[4:], e.First)
	le.PutUint64(body[12:], e.Last)
	le.PutUint64(body[20:], e.Rows)
	le.PutUint64(body[28:], uint64(e.TMin))
	le.PutUint64(body[36:], uint64(e.TMax))
	le.PutUint64(body[44:], uint64(e.Written))
	le.PutUint64(body[52:], uint64(e.Bytes))
	le.PutUint32(body[60:], e.CRC)
	return frameManRecord(b, manAdd)
}

// EncodeRemove is the manifest record of a removed range.
func EncodeRemove(r Removed) []byte {
	b := make([]byte, manRecHeader+manRemoveSize)
	body := b[manRecHeader:]
	body[0] = byte(r.Kind)
	body[1] = byte(r.Reason)
	le.PutUint64(body[4:], r.First)
	le.PutUint64(body[12:], r.Last)
	le.PutUint64(body[20:], r.Rows)
	return frameManRecord(b, manRemove)
}

// EncodeHigh is the manifest record saying every sequence below next was
// issued.
func EncodeHigh(next uint64) []byte {
	b := make([]byte, manRecHeader+8)
	le.PutUint64(b[manRecHeader:], next)
	return frameManRecord(b, manHigh)
}

// EncodeWAL is the manifest record of a WAL file's durable extent.
func EncodeWAL(w WALExtent) []byte {
	b := make([]byte, manRecHeader+manWALSize)
	putExtent(b[manRecHeader:], w)
	return frameManRecord(b, manWAL)
}

func frameManRecord(b []byte, typ byte) []byte {
	le.PutUint32(b[4:], uint32(len(b)-manRecHeader))
	b[8] = typ
	le.PutUint32(b[0:], CRC(b[4:]))
	return b
}

func manifestHeader() []byte {
	b := make([]byte, manHeaderSize)
	copy(b, manifestMagic)
	le.PutUint32(b[8:], Version)
	le.PutUint32(b[12:], CRC(b[:12]))
	return b
}

// ManifestState is the content of a manifest: what its valid records say
// and where they end.
type ManifestState struct {
	Present bool `json:"present"`
	// Bytes is the file size; End the offset after the last valid
	// record (the rest is zero padding, a torn tail or damage).
	Bytes   int64  `json:"bytes"`
	End     int64  `json:"end"`
	Records int    `json:"records"`
	High    uint64 `json:"high"`
	// TornTail is set when the valid records are followed by an
	// incomplete one (Open clears it); Problem when the manifest is
	// damaged in the middle (Open keeps the valid prefix, quarantines a
	// copy and rewrites it), at Offset.
	TornTail bool   `json:"torn_tail,omitempty"`
	Problem  string `json:"problem,omitempty"`
	Offset   int64  `json:"offset,omitempty"`

	Live    map[SegKey]SegEntry  `json:"-"`
	Removed []Removed            `json:"-"`
	WALs    map[uint32]WALExtent `json:"-"`
}

func newManifestState() ManifestState {
	return ManifestState{Live: map[SegKey]SegEntry{}, WALs: map[uint32]WALExtent{}}
}

// apply changes the state by one decoded record.
func (m *ManifestState) apply(typ byte, body []byte) string {
	switch typ {
	case manAdd:
		if len(body) != manAddSize {
			return "bad add record length"
		}
		e := SegEntry{
			Kind:    SegKind(body[0]),
			HasTime: body[1]&flagHasTime != 0,
			First:   le.Uint64(body[4:]),
			Last:    le.Uint64(body[12:]),
			Rows:    le.Uint64(body[20:]),
			TMin:    int64(le.Uint64(body[28:])),
			TMax:    int64(le.Uint64(body[36:])),
			Written: int64(le.Uint64(body[44:])),
			Bytes:   int64(le.Uint64(body[52:])),
			CRC:     le.Uint32(body[60:]),
		}
		if (e.Kind != KindData && e.Kind != KindDead) || e.First == 0 || e.Last < e.First || e.Last > MaxSeq || e.Bytes < 0 {
			return "bad add record"
		}
		m.Live[SegKey{e.Kind, e.First}] = e
		m.High = max(m.High, e.Last+1)
	case manRemove:
		if len(body) != manRemoveSize {
			return "bad remove record length"
		}
		r := Removed{
			Kind: SegKind(body[0]), Reason: Reason(body[1]),
			First: le.Uint64(body[4:]), Last: le.Uint64(body[12:]), Rows: le.Uint64(body[20:]),
		}
		if r.First == 0 || r.Last < r.First || r.Last > MaxSeq {
			return "bad remove record"
		}
		delete(m.Live, SegKey{r.Kind, r.First})
		if r.Kind == KindData {
			m.Removed = append(m.Removed, r)
		}
		m.High = max(m.High, r.Last+1)
	case manHigh:
		if len(body) != 8 {
			return "bad high record length"
		}
		h := le.Uint64(body)
		if h > MaxSeq+1 {
			return "bad high record"
		}
		m.High = max(m.High, h)
	case manWAL:
		if len(body) != manWALSize {
			return "bad wal record length"
		}
		w := getExtent(body)
		if !w.plausible() {
			return "bad wal record"
		}
		m.WALs[w.Num] = w
		m.High = max(m.High, w.Next)
	default:
		return fmt.Sprintf("unknown record type %d", typ)
	}
	return ""
}

// RemovedContains reports whether [first, last] lies in a removed range.
func (m *ManifestState) RemovedContains(first, last uint64) bool {
	for _, r := range m.Removed {
		if r.First <= first && last <= r.Last {
			return true
		}
	}
	return false
}

// Sorted returns the listed segments of a kind in sequence order.
func (m *ManifestState) Sorted(kind SegKind) []SegEntry {
	var out []SegEntry
	for k, e := range m.Live {
		if k.Kind == kind {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b SegEntry) int { return cmp.Compare(a.First, b.First) })
	return out
}

// ParseManifest reads the records of a manifest file. A torn tail and
// zero padding end the records; damage in the middle is described in
// Problem and Offset, with the valid records before it applied.
func ParseManifest(data []byte) ManifestState {
	st := newManifestState()
	st.Present, st.Bytes = true, int64(len(data))
	if len(data) < manHeaderSize || AllZero(data[:manHeaderSize]) {
		st.TornTail = len(data) > 0
		return st
	}
	if string(data[:8]) != manifestMagic || CRC(data[:12]) != le.Uint32(data[12:]) || (le.Uint32(data[8:]) != 1 && le.Uint32(data[8:]) != Version) {
		st.Problem = "bad manifest header"
		return st
	}
	off := manHeaderSize
	st.End = int64(off)
	for off < len(data) {
		rem := data[off:]
		if AllZero(rem) {
			break // padding
		}
		if len(rem) < manRecHeader {
			st.TornTail, st.Offset = true, int64(off)
			break
		}
		n := int(le.Uint32(rem[4:]))
		if n > len(rem)-manRecHeader {
			st.TornTail, st.Offset = true, int64(off)
			break
		}
		rec := rem[:manRecHeader+n]
		if CRC(rec[4:]) != le.Uint32(rec) {
			if AllZero(rem[manRecHeader+n:]) {
				st.TornTail, st.Offset = true, int64(off)
			} else {
				st.Problem, st.Offset = "bad record checksum", int64(off)
			}
			break
		}
		if reason := st.apply(rec[8], rec[manRecHeader:]); reason != "" {
			st.Problem, st.Offset = reason, int64(off)
			break
		}
		st.Records++
		off += len(rec)
		st.End = int64(off)
	}
	return st
}

// ReadManifest reads dir/manifest; a missing file gives an empty state.
func ReadManifest(fsys FS, dir string) (ManifestState, error) {
	data, err := ReadFile(fsys, path.Join(dir, ManifestName))
	if errors.Is(err, os.ErrNotExist) {
		return newManifestState(), nil
	}
	if err != nil {
		return ManifestState{}, fmt.Errorf("buffer: read manifest: %w", err)
	}
	return ParseManifest(data), nil
}

// Manifest is the durable list of sealed segments, removed ranges and
// WAL extents: an append-only log, written in place into space reserved
// after its last record, and compacted by atomic replacement. Its
// in-memory state changes only once a record is durable. It is safe for
// concurrent use.
type Manifest struct {
	mu      sync.Mutex
	fs      FS
	path    string
	f       File
	end     int64 // offset of the next record
	alloc   int64 // bytes allocated to the file
	records int
	broken  bool // the file's tail is unknown: rewrite before appending
	st      ManifestState
	cursor  uint64 // removed ranges at or below are forgotten on compaction
	ro      bool   // never written (ReadOnlyManifest)
}

// ReadOnlyManifest holds the parsed manifest st for a read-only buffer:
// Write and Compact change nothing, on disk or in the state.
func ReadOnlyManifest(st ManifestState) *Manifest {
	m := &Manifest{st: st, ro: true, broken: true}
	if m.st.Live == nil {
		m.st = newManifestState()
	}
	return m
}

// OpenManifest continues the manifest of dir whose parsed content is st
// (from ReadManifest). A torn tail is cleared in place; a damaged or
// missing manifest is rewritten from st at the next write or Compact.
func OpenManifest(fsys FS, dir string, st ManifestState) (*Manifest, error) {
	m := &Manifest{fs: fsys, path: path.Join(dir, ManifestName), st: st, broken: true, records: st.Records}
	if m.st.Live == nil {
		m.st = newManifestState()
	}
	if !st.Present || st.Problem != "" || st.End < manHeaderSize {
		return m, nil
	}
	f, err := fsys.OpenFile(m.path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("buffer: open manifest: %w", err)
	}
	if st.Bytes > st.End {
		// Clear a torn tail (and leave the padding zero) so that the next
		// record is followed by zeros only.
		tail := make([]byte, st.Bytes-st.End)
		if _, err := f.ReadAt(tail, st.End); err == nil && !AllZero(tail) {
			if _, err := f.WriteAt(make([]byte, len(tail)), st.End); err != nil {
				_ = f.Close()
				return m, nil // rewrite
			}
			if err := f.Sync(); err != nil {
				_ = f.Close()
				return m, nil
			}
		}
	}
	m.f, m.end, m.alloc, m.broken = f, st.End, st.Bytes, false
	m.reserveLocked(0)
	return m, nil
}

// reserveLocked makes sure at least need bytes plus half the reserve are
// allocated after the end; it reports whether need bytes fit.
func (m *Manifest) reserveLocked(need int64) bool {
	if m.alloc-m.end >= need+manifestReserve/2 {
		return true
	}
	if err := m.f.Allocate(m.alloc, m.end+need+manifestReserve-m.alloc); err == nil {
		m.alloc = m.end + need + manifestReserve
		return true
	}
	return m.alloc-m.end >= need
}

// Write appends records, makes them durable and applies them. After a
// failure the log's tail is unknown and the next write rewrites the file.
func (m *Manifest) Write(recs ...[]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ro {
		return nil
	}
	if m.broken || m.f == nil {
		if err := m.rewriteLocked(recs...); err != nil {
			return err
		}
	} else {
		var buf []byte
		for _, r := range recs {
			buf = append(buf, r...)
		}
		if !m.reserveLocked(int64(len(buf))) {
			return fmt.Errorf("buffer: write manifest: %w", errNoReserve)
		}
		if _, err := m.f.WriteAt(buf, m.end); err != nil {
			m.broken = true
			return fmt.Errorf("buffer: write manifest: %w", err)
		}
		if err := m.f.Sync(); err != nil {
			m.broken = true
			return fmt.Errorf("buffer: sync manifest: %w", err)
		}
		m.end += int64(len(buf))
		m.records += len(recs)
	}
	for _, r := range recs {
		m.st.apply(r[8], r[manRecHeader:])
	}
	if m.records > 2*(len(m.st.Live)+len(m.st.Removed)+len(m.st.WALs))+64 {
		_ = m.rewriteLocked() // best effort: on failure the log goes on
	}
	return nil
}

var errNoReserve = fmt.Errorf("no space left for manifest records: %w", ErrNoSpace)

// Compact rewrites the manifest from its state. It fails (leaving the
// manifest as it was) when the disk has no room for the new file.
func (m *Manifest) Compact(next uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ro {
		return nil
	}
	m.st.High = max(m.st.High, next)
	return m.rewriteLocked()
}

// rewriteLocked replaces the file with the state plus extra records
// (applied by the caller once this returns nil).
func (m *Manifest) rewriteLocked(extra ...[]byte) error {
	m.st.Removed = slices.DeleteFunc(m.st.Removed, func(r Removed) bool { return r.Last <= m.cursor })
	buf := manifestHeader()
	buf = append(buf, EncodeHigh(m.st.High)...)
	n := 1
	keys := make([]SegKey, 0, len(m.st.Live))
	for k := range m.st.Live {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b SegKey) int {
		if a.Kind != b.Kind {
			return int(a.Kind) - int(b.Kind)
		}
		return cmp.Compare(a.First, b.First)
	})
	for _, k := range keys {
		buf = append(buf, EncodeAdd(m.st.Live[k])...)
		n++
	}
	for _, r := range m.st.Removed {
		buf = append(buf, EncodeRemove(r)...)
		n++
	}
	nums := make([]uint32, 0, len(m.st.WALs))
	for num := range m.st.WALs {
		nums = append(nums, num)
	}
	slices.Sort(nums)
	for _, num := range nums {
		buf = append(buf, EncodeWAL(m.st.WALs[num])...)
		n++
	}
	for _, r := range extra {
		buf = append(buf, r...)
		n++
	}
	end := int64(len(buf))
	tmp := m.path + ".tmp"
	f, err := m.fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("buffer: rewrite manifest: %w", err)
	}
	fail := func(err error) error {
		_ = f.Close()
		_ = m.fs.Remove(tmp)
		return fmt.Errorf("buffer: rewrite manifest: %w", err)
	}
	if _, err := f.WriteAt(buf, 0); err != nil {
		return fail(err)
	}
	alloc := end
	if err := f.Allocate(end, manifestReserve); err == nil {
		alloc = end + manifestReserve
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := m.fs.Rename(tmp, m.path); err != nil {
		return fail(err)
	}
	if err := m.fs.SyncDir(path.Dir(m.path)); err != nil {
		_ = f.Close()
		if m.f != nil {
			_ = m.f.Close()
			m.f = nil
		}
		m.broken = true
		return fmt.Errorf("buffer: rewrite manifest: %w", err)
	}
	if m.f != nil {
		_ = m.f.Close()
	}
	m.f, m.end, m.alloc, m.records, m.broken = f, end, alloc, n, false
	return nil
}

// Forget drops a delivered segment from the state (no record is written:
// segments at or below the cursor are reclaimed by definition).
func (m *Manifest) Forget(kind SegKind, first uint64) {
	m.mu.Lock()
	delete(m.st.Live, SegKey{kind, first})
	m.mu.Unlock()
}

// ForgetWAL drops the extent of a WAL file that is gone (sealed, delivered
// or dropped, all of which the manifest or the cursor records otherwise).
func (m *Manifest) ForgetWAL(num uint32) {
	m.mu.Lock()
	delete(m.st.WALs, num)
	m.mu.Unlock()
}

// SetCursor tells the manifest the delivery cursor: removed ranges at or
// below it are dropped at the next compaction.
func (m *Manifest) SetCursor(c uint64) {
	m.mu.Lock()
	m.cursor = c
	m.mu.Unlock()
}

// RemovedContains reports whether [first, last] lies in a removed range.
func (m *Manifest) RemovedContains(first, last uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.RemovedContains(first, last)
}

// High returns the high-water mark: every sequence below it was issued.
func (m *Manifest) High() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.High
}

// Close closes the file.
func (m *Manifest) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f = nil
	return err
}

// Truncate forgets every sequence from next on, for a buffer rolled back
// to next-1 (rows that never left it): the high-water mark becomes next,
// removed ranges are cut at next, the extents of the WAL files in gone are
// dropped and those in set are recorded. The manifest is rewritten
// atomically; on failure it is left as it was, on disk and in memory.
func (m *Manifest) Truncate(next uint64, set []WALExtent, gone []uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ro {
		return nil
	}
	high, removed, wals := m.st.High, slices.Clone(m.st.Removed), maps.Clone(m.st.WALs)
	m.st.High = next
	m.st.Removed = slices.DeleteFunc(m.st.Removed, func(r Removed) bool { return r.First >= next })
	for i, r := range m.st.Removed {
		if r.Last >= next {
			m.st.Removed[i].Last = next - 1
			m.st.Removed[i].Rows = min(r.Rows, next-r.First)
		}
	}
	for _, num := range gone {
		delete(m.st.WALs, num)
	}
	for _, w := range set {
		m.st.WALs[w.Num] = w
	}
	if err := m.rewriteLocked(); err != nil {
		m.st.High, m.st.Removed, m.st.WALs = high, removed, wals
		return err
	}
	return nil
}
