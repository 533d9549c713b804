package disk

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/seqset"
)

// Dir is a read-only reading of a buffer directory: what every file holds
// and what opening the buffer would do with it. The engine's Open and the
// operations tools (status, inspect, repair, export) all start from it.
type Dir struct {
	Dir string `json:"dir"`
	// Meta is the buffer's meta file (nil when absent: version 1, or a
	// buffer that never opened).
	Meta *Meta `json:"meta,omitempty"`
	// Schema is the stream schema: from the meta file, else a segment's
	// metadata or, when no segment is readable, a WAL record (then
	// SchemaFrom names the WAL file and the key column is unknown). Nil
	// when no file tells.
	Schema     *engine.Schema `json:"-"`
	SchemaFrom string         `json:"schema_from,omitempty"`
	// WALSchema is the schema of the first readable WAL record (time taken
	// as the first timestamp column, no key), for a consistency check.
	WALSchema *engine.Schema `json:"-"`
	// Cursor is the delivery cursor; CursorProblem is set when the cursor
	// file is damaged (Open then reads it as 0).
	Cursor        uint64      `json:"cursor"`
	CursorProblem string      `json:"cursor_problem,omitempty"`
	CursorState   CursorState `json:"-"`
	// Mark is the last sync mark of the active WAL file.
	Mark MarkState `json:"sync_mark"`
	// NextSeq is the sequence the next appended row would get; Unbounded
	// is set when damage hides how many sequences were issued (Open then
	// adds SeqJump).
	NextSeq   uint64 `json:"next_seq"`
	Unbounded bool   `json:"unbounded,omitempty"`
	// MaxWALNum is the highest WAL file number found or recorded.
	MaxWALNum uint32 `json:"-"`
	// Manifest is the state of the manifest file.
	Manifest ManifestState `json:"manifest"`
	// Segments and DeadLetters list listed and unlisted segment files.
	Segments    []SegmentState `json:"segments"`
	DeadLetters []SegmentState `json:"dead_letters"`
	WAL         []WALState     `json:"wal"`
	// Missing lists WAL files the manifest or the sync mark records but
	// that are gone with undelivered rows.
	Missing []*CorruptionError `json:"missing,omitempty"`
	// Removed lists the sequence ranges the manifest records as dropped
	// or lost above the cursor.
	Removed    []RemovedRange    `json:"removed,omitempty"`
	Quarantine []QuarantinedFile `json:"quarantine,omitempty"`
	// Temp lists *.tmp files (removed by Open).
	Temp []string `json:"temp,omitempty"`
}

// Segment states.
const (
	SegOK         = "ok"           // listed, present, size (and checksum when verified) as listed
	SegUnverified = "unverified"   // listed and present with the listed size; checksum not read
	SegBadSize    = "bad_size"     // listed, size differs: Open quarantines it
	SegBadCRC     = "bad_checksum" // listed, checksum differs: quarantined when read
	SegMissing    = "missing"      // listed but absent
	SegUnlisted   = "unlisted"     // present, not listed: Open removes or adopts it
	SegDelivered  = "delivered"    // at or below the cursor: Open deletes it
)

// SegmentInfo describes a segment file.
type SegmentInfo struct {
	// Path is relative to the buffer directory.
	Path        string    `json:"path"`
	First       uint64    `json:"first"`
	Last        uint64    `json:"last"`
	Rows        int64     `json:"rows"`
	Bytes       int64     `json:"bytes"`
	MinTime     time.Time `json:"min_time,omitzero"`
	MaxTime     time.Time `json:"max_time,omitzero"`
	Written     time.Time `json:"written,omitzero"`
	Checksum    uint32    `json:"crc32c"`
	Undelivered int64     `json:"undelivered"`
}

// Info describes a listed segment given the cursor.
func (e *SegEntry) Info(cursor uint64) SegmentInfo {
	si := SegmentInfo{Path: e.Rel(), First: e.First, Last: e.Last, Rows: int64(e.Rows), Bytes: e.Bytes, Checksum: e.CRC}
	if e.Written != 0 {
		si.Written = time.UnixMilli(e.Written).UTC()
	}
	if e.HasTime {
		si.MinTime, si.MaxTime = time.UnixMilli(e.TMin).UTC(), time.UnixMilli(e.TMax).UTC()
	}
	if e.Kind == KindData && e.Last > cursor {
		si.Undelivered = int64(e.Last - max(e.First, cursor+1) + 1)
	}
	return si
}

// SegmentState is a segment file and what the manifest says about it.
type SegmentState struct {
	SegmentInfo
	Entry      SegEntry `json:"-"`
	Listed     bool     `json:"listed"`
	Present    bool     `json:"present"`
	DiskBytes  int64    `json:"disk_bytes"`
	State      string   `json:"state"`
	CoveredWAL bool     `json:"covered_by_wal,omitempty"`
	// Removed is set for an unlisted file inside a removed range.
	Removed bool `json:"removed,omitempty"`
}

// WALState is one WAL file as replay would find it.
type WALState struct {
	Path  string `json:"path"`
	Num   uint32 `json:"num"`
	Bytes int64  `json:"bytes"`
	Base  uint64 `json:"base"`
	// Records and Rows count the valid records; First and Last bound
	// their sequences.
	Records int       `json:"records"`
	Rows    int64     `json:"rows"`
	First   uint64    `json:"first,omitempty"`
	Last    uint64    `json:"last,omitempty"`
	MinTime time.Time `json:"min_time,omitzero"`
	MaxTime time.Time `json:"max_time,omitzero"`
	// OldestAppend is the append time of the first record.
	OldestAppend time.Time `json:"oldest_append,omitzero"`
	// Synced is how far the manifest (a rolled file) or the sync mark
	// (the active file) says the file was durable, in bytes and
	// sequences; zero when nothing records it.
	Synced     int64  `json:"synced_bytes,omitempty"`
	SyncedNext uint64 `json:"synced_next,omitempty"`
	// Pending counts rows above the cursor not yet in a segment;
	// PendingFirst is the first of them and PendingMinTime their earliest
	// event time.
	Pending        int64     `json:"pending"`
	PendingFirst   uint64    `json:"pending_first,omitempty"`
	PendingMinTime time.Time `json:"pending_min_time,omitzero"`
	// TornAt is the offset of a torn tail Open truncates (-1: none), and
	// TornBytes its length.
	TornAt    int64 `json:"torn_at"`
	TornBytes int64 `json:"torn_bytes,omitempty"`
	// NoHeader is set for a file that holds nothing and had nothing
	// synced to it (Open removes it); one whose synced rows are gone is
	// damaged instead.
	NoHeader bool `json:"no_header,omitempty"`
	// Damage lists corruption, a cut below the synced extent included:
	// Open seals the valid records and moves the file to quarantine.
	Damage []*CorruptionError `json:"damage,omitempty"`
	// Scan holds the records found.
	Scan WALScan `json:"-"`
}

// RemovedRange is a sequence range the manifest records as removed.
type RemovedRange struct {
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
	First  uint64 `json:"first"`
	Last   uint64 `json:"last"`
	Rows   uint64 `json:"rows"`
}

// QuarantinedFile is a file in quarantine/.
type QuarantinedFile struct {
	Name     string    `json:"name"`
	Bytes    int64     `json:"bytes"`
	Modified time.Time `json:"modified"`
}

// ScanOptions tune Scan.
type ScanOptions struct {
	// VerifyChecksums reads every listed segment and checks its CRC32-C.
	VerifyChecksums bool
}

// WALCover returns the sequences the valid WAL records hold.
func (d *Dir) WALCover() seqset.Set {
	var s seqset.Set
	for _, w := range d.WAL {
		for _, r := range w.Scan.Recs {
			s.Add(r.First, r.Last())
		}
	}
	return s
}

func metaSchema(m *Meta) *engine.Schema {
	s, err := m.StreamSchema()
	if err != nil {
		return nil
	}
	return s
}

// Scan reads the buffer in dir without changing anything. It fails only
// on I/O errors; damage is described in the result.
func Scan(fsys FS, dir string, opts ScanOptions) (*Dir, error) {
	if fsys == nil {
		fsys = OS
	}
	d := &Dir{Dir: dir}
	p := func(rel string) string { return path.Join(dir, rel) }
	if _, err := fsys.Stat(dir); err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	list := func(sub string) ([]string, error) {
		names, err := fsys.ReadDir(p(sub))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return names, err
	}
	for _, sub := range []string{"", WALDir, SegDir, DeadDir} {
		names, err := list(sub)
		if err != nil {
			return nil, fmt.Errorf("buffer: list %s: %w", p(sub), err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, ".tmp") {
				d.Temp = append(d.Temp, path.Join(sub, n))
			}
		}
	}

	var err error
	if d.Meta, err = ReadMeta(fsys, dir); err != nil {
		return nil, err
	}
	if d.CursorState, err = ReadCursor(fsys, dir); err != nil {
		return nil, err
	}
	d.Cursor = d.CursorState.Cursor
	if d.CursorState.Damage != nil {
		d.CursorProblem = d.CursorState.Damage.Reason
	}
	cursor := d.Cursor
	if d.Mark, err = ReadMark(fsys, dir); err != nil {
		return nil, err
	}
	if d.Manifest, err = ReadManifest(fsys, dir); err != nil {
		return nil, err
	}
	man := &d.Manifest
	for _, r := range man.Removed {
		if r.Last > cursor {
			d.Removed = append(d.Removed, RemovedRange{Kind: r.Kind.String(), Reason: r.Reason.String(), First: r.First, Last: r.Last, Rows: r.Rows})
		}
	}
	next := max(cursor+1, man.High, 1)
	if d.Mark.Valid {
		next = max(next, d.Mark.Next)
		d.MaxWALNum = d.Mark.Num
	}
	for num, w := range man.WALs {
		next = max(next, w.Next)
		d.MaxWALNum = max(d.MaxWALNum, num)
	}

	// WAL files.
	names, err := list(WALDir)
	if err != nil {
		return nil, fmt.Errorf("buffer: list wal: %w", err)
	}
	var walCover seqset.Set
	var walSchema *arrow.Schema
	var walFrom string
	present := map[uint32]bool{}
	for _, n := range names {
		num, ok := ParseWALName(n)
		if !ok {
			continue
		}
		rel := path.Join(WALDir, n)
		data, err := ReadFile(fsys, p(rel))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // sealed meanwhile
			}
			return nil, fmt.Errorf("buffer: read %s: %w", rel, err)
		}
		d.MaxWALNum = max(d.MaxWALNum, num)
		res := ScanWAL(data, rel)
		present[num] = true
		// A record whose sequences an earlier WAL file already holds
		// (a file copied or restored beside the buffer) is damage: its
		// rows would be read twice.
		res.Recs = slices.DeleteFunc(res.Recs, func(r WALRec) bool {
			if walCover.Count(r.First, r.Last()) == 0 {
				return false
			}
			res.Damage = append(res.Damage, &CorruptionError{Segment: rel, Offset: r.Off,
				Reason: fmt.Sprintf("sequences %d-%d are also in an earlier WAL file", r.First, r.Last())})
			return true
		})
		w := WALState{Path: rel, Num: num, Bytes: int64(len(data)), Base: res.Base, TornAt: res.TornAt, NoHeader: res.NoHeader, Scan: res}
		for i, r := range res.Recs {
			walCover.Add(r.First, r.Last())
			if i == 0 {
				w.First = r.First
				w.OldestAppend = time.UnixMilli(r.Wall).UTC()
			}
			w.Last = r.Last()
			if walSchema == nil {
				end := r.Off + RecHeaderSize + int64(r.Length)
				if s, err := RecordSchema(data[r.Off+RecHeaderSize : end]); err == nil {
					walSchema, walFrom = s, rel
				}
			}
		}
		next = max(next, res.LastSeq()+1, res.Base)
		d.Unbounded = d.Unbounded || res.Unbounded
		d.WAL = append(d.WAL, w)
	}

	// Segments.
	var segSchema *engine.Schema
	var schemaSeg string
	for _, kind := range []SegKind{KindData, KindDead} {
		sub := SegDir
		if kind == KindDead {
			sub = DeadDir
		}
		names, err := list(sub)
		if err != nil {
			return nil, fmt.Errorf("buffer: list %s: %w", sub, err)
		}
		var out []SegmentState
		seen := map[uint64]bool{}
		for _, n := range names {
			first, last, ok := ParseSegName(n)
			if !ok {
				continue
			}
			rel := path.Join(sub, n)
			fi, err := fsys.Stat(p(rel))
			if err != nil {
				continue
			}
			e, listed := man.Live[SegKey{kind, first}]
			if !listed || e.Last != last {
				e = SegEntry{Kind: kind, First: first, Last: last, Rows: last - first + 1}
				listed = false
			}
			st := SegmentState{SegmentInfo: e.Info(cursor), Entry: e, Listed: listed, Present: true, DiskBytes: fi.Size()}
			st.CoveredWAL = kind == KindData && walCover.ContainsRange(first, last)
			switch {
			case kind == KindData && last <= cursor:
				st.State = SegDelivered
			case !listed:
				st.State = SegUnlisted
				st.Removed = kind == KindData && man.RemovedContains(first, last)
			case fi.Size() != e.Bytes:
				st.State = SegBadSize
			case opts.VerifyChecksums:
				data, err := ReadFile(fsys, p(rel))
				if err != nil {
					return nil, fmt.Errorf("buffer: read %s: %w", rel, err)
				}
				st.State = SegOK
				if CRC(data) != e.CRC {
					st.State = SegBadCRC
				}
			default:
				st.State = SegUnverified
			}
			if schemaSeg == "" && (st.State == SegOK || st.State == SegUnverified || st.State == SegUnlisted) {
				if s, err := SegmentSchema(fsys, p(rel)); err == nil {
					segSchema, schemaSeg = s, rel
				}
			}
			seen[first] = true
			out = append(out, st)
		}
		for _, e := range man.Sorted(kind) {
			if seen[e.First] {
				continue
			}
			st := SegmentState{SegmentInfo: e.Info(cursor), Entry: e, Listed: true, State: SegMissing}
			if kind == KindData && e.Last <= cursor {
				st.State = SegDelivered
			}
			st.CoveredWAL = kind == KindData && walCover.ContainsRange(e.First, e.Last)
			out = append(out, st)
		}
		slices.SortFunc(out, func(a, b SegmentState) int { return cmp.Compare(a.First, b.First) })
		if kind == KindData {
			d.Segments = out
		} else {
			d.DeadLetters = out
		}
	}
	for _, s := range d.Segments {
		next = max(next, s.Last+1)
	}
	for _, r := range man.Removed {
		next = max(next, r.Last+1)
	}

	// Rows the cursor, a segment, a removed range or another WAL file hold
	// are not lost when a WAL file is cut or gone.
	var held seqset.Set
	held.Add(0, cursor)
	for _, sg := range d.Segments {
		// Every segment, listed or present, answers for its rows: a damaged
		// or unlisted one is reported (or adopted) on its own.
		held.Add(sg.First, sg.Last)
	}
	for _, r := range man.Removed {
		held.Add(r.First, r.Last)
	}
	for _, r := range walCover {
		held.Add(r.Lo, r.Hi)
	}
	lostPart := func(first, last uint64) (uint64, uint64, bool) {
		miss := held.Missing(first, last)
		if len(miss) == 0 {
			return 0, 0, false
		}
		return miss[0].Lo, miss[len(miss)-1].Hi, true
	}
	var live []SegEntry // segments that hold their rows, by first sequence
	for _, sg := range d.Segments {
		if sg.Listed && sg.Present && sg.State != SegBadSize {
			live = append(live, sg.Entry)
		}
	}
	slices.SortFunc(live, func(a, b SegEntry) int { return cmp.Compare(a.First, b.First) })
	// expect returns the recorded extent of a WAL file; base 0 (a
	// damaged file header) matches by number alone.
	expect := func(num uint32, base uint64) (WALExtent, bool) {
		if e, ok := man.WALs[num]; ok && (e.Base == base || base == 0) {
			return e, true
		}
		if m := d.Mark; m.Valid && m.Num == num && (m.Base == base || base == 0) {
			return m.Mark, true
		}
		return WALExtent{}, false
	}
	for i := range d.WAL {
		w := &d.WAL[i]
		res := &w.Scan
		if res.NoHeader {
			// Nothing was written, or all of it is gone: damage when
			// rows were synced to the file and are not held elsewhere.
			x, ok := expect(w.Num, 0)
			if !ok || x.Next <= x.Base {
				continue
			}
			lf, ll, lost := lostPart(x.Base, x.Next-1)
			if !lost {
				continue
			}
			reason := fmt.Sprintf("holds nothing of its synced extent (%d bytes and sequences %d-%d synced; %d bytes remain)",
				x.Size, x.Base, x.Next-1, w.Bytes)
			res.Damage = append(res.Damage, &CorruptionError{Segment: w.Path, Offset: 0, Reason: reason, LostFirst: lf, LostLast: ll})
			res.NoHeader, w.NoHeader = false, false
			res.Base, w.Base = x.Base, x.Base
			w.Synced, w.SyncedNext = x.Size, x.Next
			w.Damage = res.Damage
			continue
		}
		x, ok := expect(w.Num, res.Base)
		if ok {
			w.Synced, w.SyncedNext = x.Size, x.Next
		}
		// validNext is the sequence after what the file still accounts
		// for: its valid records and the ranges its damage reports.
		validNext := max(res.Base, res.Next)
		if len(res.Recs) > 0 {
			validNext = max(validNext, res.LastSeq()+1)
		}
		if ok && !res.Unbounded && validNext < x.Next {
			// Rows that were synced are gone: a crash tears only what
			// was not. It is damage when any of them is not held
			// elsewhere (delivered, sealed, recorded as removed).
			if lf, ll, lost := lostPart(validNext, x.Next-1); lost {
				reason := fmt.Sprintf("cut below its synced extent (%d bytes and sequences up to %d synced; %d bytes and sequences below %d remain)",
					x.Size, x.Next-1, w.Bytes, validNext)
				res.Damage = append(res.Damage, &CorruptionError{Segment: w.Path, Offset: res.End, Reason: reason, LostFirst: lf, LostLast: ll})
				res.TornAt = -1
				w.TornAt = -1
			}
		}
		w.Damage = res.Damage
		w.Records, w.Rows = len(res.Recs), 0
		for _, r := range res.Recs {
			w.Rows += int64(r.Rows)
			if r.HasTime {
				lo, hi := time.UnixMilli(r.TMin).UTC(), time.UnixMilli(r.TMax).UTC()
				if w.MinTime.IsZero() || lo.Before(w.MinTime) {
					w.MinTime = lo
				}
				if hi.After(w.MaxTime) {
					w.MaxTime = hi
				}
			}
		}
		if w.TornAt >= 0 {
			w.TornBytes = w.Bytes - w.TornAt
		}
	}
	// WAL files recorded but gone.
	gone := func(num uint32, x WALExtent) {
		if present[num] || x.Next <= x.Base {
			return
		}
		if lf, ll, lost := lostPart(x.Base, x.Next-1); lost {
			d.Missing = append(d.Missing, &CorruptionError{Segment: path.Join(WALDir, WALName(num)), Offset: -1,
				Reason: "WAL file recorded as synced is missing", LostFirst: lf, LostLast: ll})
		}
	}
	nums := make([]uint32, 0, len(man.WALs))
	for num := range man.WALs {
		nums = append(nums, num)
	}
	slices.Sort(nums)
	for _, num := range nums {
		gone(num, man.WALs[num])
	}
	if m := d.Mark; m.Valid {
		if _, rec := man.WALs[m.Num]; !rec {
			gone(m.Num, m.Mark)
		}
	}
	d.NextSeq = next

	// Pending WAL rows: above the cursor, not in a live segment, not removed.
	for i := range d.WAL {
		w := &d.WAL[i]
		for _, r := range w.Scan.Recs {
			if r.Last() <= cursor || Covers(live, r.First, r.Last()) || man.RemovedContains(r.First, r.Last()) {
				continue
			}
			f := max(r.First, cursor+1)
			if w.PendingFirst == 0 {
				w.PendingFirst = f
			}
			w.Pending += int64(r.Last() - f + 1)
			if r.HasTime {
				t := time.UnixMilli(r.TMin).UTC()
				if w.PendingMinTime.IsZero() || t.Before(w.PendingMinTime) {
					w.PendingMinTime = t
				}
			}
		}
	}

	if walSchema != nil {
		if s, err := SchemaFromArrow(walSchema); err == nil {
			d.WALSchema = s
		}
	}
	switch {
	case d.Meta != nil && metaSchema(d.Meta) != nil:
		d.Schema, d.SchemaFrom = metaSchema(d.Meta), MetaName
	case segSchema != nil:
		d.Schema, d.SchemaFrom = segSchema, schemaSeg
	case d.WALSchema != nil:
		d.Schema, d.SchemaFrom = d.WALSchema, walFrom
	}

	q, err := list(QuarantineDir)
	if err != nil {
		return nil, fmt.Errorf("buffer: list quarantine: %w", err)
	}
	for _, n := range q {
		qf := QuarantinedFile{Name: path.Join(QuarantineDir, n)}
		if fi, err := fsys.Stat(p(qf.Name)); err == nil {
			qf.Bytes, qf.Modified = fi.Size(), fi.ModTime().UTC()
		}
		d.Quarantine = append(d.Quarantine, qf)
	}
	return d, nil
}
