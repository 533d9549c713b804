package buffer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/parquet-go/parquet-go"

	"github.com/sluice-edge/sluice/engine"
)

// Inspection is a read-only view of a buffer directory: what Open would
// find there, without changing anything. It is safe to take while an
// engine has the buffer open (files may change between reads; take it
// again for a consistent view).
type Inspection struct {
	Dir string `json:"dir"`
	// Schema is the stream schema found in a segment's metadata or, when
	// no segment is readable, in a WAL record (then SchemaFrom names the
	// WAL file and the key column is unknown). Nil when no file tells.
	Schema     *engine.Schema `json:"-"`
	SchemaFrom string         `json:"schema_from,omitempty"`
	// WALSchema is the schema of the first readable WAL record (time taken
	// as the first timestamp column, no key), for a consistency check.
	WALSchema *engine.Schema `json:"-"`
	// Cursor is the delivery cursor; CursorProblem is set when the cursor
	// file is damaged (Open then reads it as 0).
	Cursor        uint64 `json:"cursor"`
	CursorProblem string `json:"cursor_problem,omitempty"`
	// NextSeq is the sequence the next appended row would get (without
	// the jump Open adds when corruption hides the issued range).
	NextSeq uint64 `json:"next_seq"`
	// Manifest is the state of the manifest file.
	Manifest ManifestState `json:"manifest"`
	// Segments and DeadLetters list listed and unlisted segment files.
	Segments    []SegmentState `json:"segments"`
	DeadLetters []SegmentState `json:"dead_letters"`
	WAL         []WALState     `json:"wal"`
	// Removed lists the sequence ranges the manifest records as dropped
	// or lost above the cursor.
	Removed    []RemovedRange    `json:"removed,omitempty"`
	Quarantine []QuarantinedFile `json:"quarantine,omitempty"`
	// Temp lists *.tmp files (removed by Open).
	Temp []string `json:"temp,omitempty"`
}

// ManifestState describes the manifest file.
type ManifestState struct {
	Present bool   `json:"present"`
	Bytes   int64  `json:"bytes"`
	Records int    `json:"records"`
	High    uint64 `json:"high"`
	// TornTail is set when the last record is incomplete (Open truncates
	// it); Problem when the manifest is damaged in the middle (Open keeps
	// the valid prefix, quarantines a copy and rewrites it), at Offset.
	TornTail bool   `json:"torn_tail,omitempty"`
	Problem  string `json:"problem,omitempty"`
	Offset   int64  `json:"offset,omitempty"`
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

// SegmentState is a segment file and what the manifest says about it.
type SegmentState struct {
	SegmentInfo
	Listed     bool   `json:"listed"`
	Present    bool   `json:"present"`
	DiskBytes  int64  `json:"disk_bytes"`
	State      string `json:"state"`
	CoveredWAL bool   `json:"covered_by_wal,omitempty"`
}

// WALState is one WAL file as replay would find it.
type WALState struct {
	Path  string `json:"path"`
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
	// NoHeader is set for a file too short to hold anything (Open removes
	// it).
	NoHeader bool `json:"no_header,omitempty"`
	// Damage lists corruption: Open seals the valid records and moves the
	// file to quarantine.
	Damage []*CorruptionError `json:"damage,omitempty"`
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

var reasonNames = map[uint8]string{
	reasonQuota: "quota", reasonTTL: "ttl", reasonCorrupt: "corrupt",
	reasonMissing: "missing", reasonDeadPurged: "dead_letter_purged",
}

// InspectOptions tune Inspect.
type InspectOptions struct {
	// FS is the file system; OS by default. Inspect only reads.
	FS FS
	// VerifyChecksums reads every listed segment and checks its CRC32-C.
	VerifyChecksums bool
}

// Inspect reads the buffer in dir without changing it. It fails only on
// I/O errors; damage is described in the result.
func Inspect(dir string, opts InspectOptions) (*Inspection, error) {
	fsys := opts.FS
	if fsys == nil {
		fsys = OS
	}
	in := &Inspection{Dir: dir}
	p := func(rel string) string { return path.Join(dir, rel) }
	if _, err := fsys.Stat(dir); err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	list := func(d string) ([]string, error) {
		names, err := fsys.ReadDir(p(d))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return names, err
	}
	for _, d := range []string{"", walDir, segDir, deadDir} {
		names, err := list(d)
		if err != nil {
			return nil, fmt.Errorf("buffer: list %s: %w", p(d), err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, ".tmp") {
				in.Temp = append(in.Temp, path.Join(d, n))
			}
		}
	}

	cursor, cerr, err := loadCursor(fsys, dir)
	if err != nil {
		return nil, err
	}
	if cerr != nil {
		in.CursorProblem = cerr.Reason
	}
	in.Cursor = cursor

	man := &manifest{live: map[segKey]segEntry{}}
	if data, err := readFile(fsys, p(manifestName)); err == nil {
		in.Manifest = parseManifestRO(man, data)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("buffer: read manifest: %w", err)
	}
	for _, r := range man.removed {
		if r.last > cursor {
			kind := "data"
			if r.kind == kindDead {
				kind = "dead"
			}
			in.Removed = append(in.Removed, RemovedRange{Kind: kind, Reason: reasonNames[r.reason], First: r.first, Last: r.last, Rows: r.rows})
		}
	}
	removed := func(first, last uint64) bool {
		for _, r := range man.removed {
			if r.first <= first && last <= r.last {
				return true
			}
		}
		return false
	}

	// WAL files.
	names, err := list(walDir)
	if err != nil {
		return nil, fmt.Errorf("buffer: list wal: %w", err)
	}
	var walCover ranges
	next := max(cursor+1, man.high, 1)
	var walSchema *arrow.Schema
	var walSchemaFrom string
	var scans []scanResult
	for _, n := range names {
		if _, ok := parseWALName(n); !ok {
			continue
		}
		rel := path.Join(walDir, n)
		data, err := readFile(fsys, p(rel))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // sealed meanwhile
			}
			return nil, fmt.Errorf("buffer: read %s: %w", rel, err)
		}
		res := scanWAL(data, rel)
		w := WALState{Path: rel, Bytes: int64(len(data)), Base: res.base, TornAt: res.tornAt, NoHeader: res.noHeader, Damage: res.damage}
		if res.tornAt >= 0 {
			w.TornBytes = int64(len(data)) - res.tornAt
		}
		for i, r := range res.recs {
			walCover = walCover.add(r.first, r.last())
			w.Records++
			w.Rows += int64(r.rows)
			if i == 0 {
				w.First = r.first
				w.OldestAppend = time.UnixMilli(r.wall).UTC()
			}
			w.Last = r.last()
			if r.hasTime {
				lo, hi := time.UnixMilli(r.tmin).UTC(), time.UnixMilli(r.tmax).UTC()
				if w.MinTime.IsZero() || lo.Before(w.MinTime) {
					w.MinTime = lo
				}
				if hi.After(w.MaxTime) {
					w.MaxTime = hi
				}
			}
			next = max(next, r.last()+1)
			if walSchema == nil {
				end := r.off + recHeaderSize + int64(r.length)
				if s, err := arrowSchemaOf(data[r.off+recHeaderSize : end]); err == nil {
					walSchema, walSchemaFrom = s, rel
				}
			}
		}
		next = max(next, res.base)
		scans = append(scans, res)
		in.WAL = append(in.WAL, w)
	}

	// Segments.
	var schemaSeg string
	for _, kind := range []segKind{kindData, kindDead} {
		d := segDir
		if kind == kindDead {
			d = deadDir
		}
		names, err := list(d)
		if err != nil {
			return nil, fmt.Errorf("buffer: list %s: %w", d, err)
		}
		var out []SegmentState
		seen := map[uint64]bool{}
		for _, n := range names {
			first, last, ok := parseSegName(n)
			if !ok {
				continue
			}
			rel := path.Join(d, n)
			fi, err := fsys.Stat(p(rel))
			if err != nil {
				continue
			}
			e, listed := man.live[segKey{kind, first}]
			if !listed || e.last != last {
				e = segEntry{kind: kind, first: first, last: last, rows: last - first + 1}
				listed = false
			}
			st := SegmentState{SegmentInfo: inspectInfo(e, cursor), Listed: listed, Present: true, DiskBytes: fi.Size()}
			st.CoveredWAL = kind == kindData && walCover.contains(first, last)
			switch {
			case kind == kindData && last <= cursor:
				st.State = SegDelivered
			case !listed:
				st.State = SegUnlisted
			case fi.Size() != e.bytes:
				st.State = SegBadSize
			case opts.VerifyChecksums:
				data, err := readFile(fsys, p(rel))
				if err != nil {
					return nil, fmt.Errorf("buffer: read %s: %w", rel, err)
				}
				st.State = SegOK
				if crc(data) != e.crc {
					st.State = SegBadCRC
				}
			default:
				st.State = SegUnverified
			}
			if in.Schema == nil && (st.State == SegOK || st.State == SegUnverified || st.State == SegUnlisted) {
				if s, err := SegmentSchema(fsys, p(rel)); err == nil {
					in.Schema, schemaSeg = s, rel
				}
			}
			seen[first] = true
			out = append(out, st)
		}
		for _, e := range sortedEntries(man.live, kind) {
			if seen[e.first] {
				continue
			}
			st := SegmentState{SegmentInfo: inspectInfo(e, cursor), Listed: true, State: SegMissing}
			if kind == kindData && e.last <= cursor {
				st.State = SegDelivered
			}
			st.CoveredWAL = kind == kindData && walCover.contains(e.first, e.last)
			out = append(out, st)
		}
		slices.SortFunc(out, func(a, b SegmentState) int {
			switch {
			case a.First < b.First:
				return -1
			case a.First > b.First:
				return 1
			}
			return 0
		})
		if kind == kindData {
			in.Segments = out
		} else {
			in.DeadLetters = out
		}
	}
	for _, s := range in.Segments {
		next = max(next, s.Last+1)
	}
	for _, r := range man.removed {
		next = max(next, r.last+1)
	}
	in.NextSeq = next

	// Pending WAL rows: above the cursor, not in a live segment, not removed.
	live := func(first, last uint64) bool {
		for _, s := range in.Segments {
			if s.Listed && s.Present && s.State != SegBadSize && s.First <= first && last <= s.Last {
				return true
			}
		}
		return false
	}
	for i, res := range scans {
		w := &in.WAL[i]
		for _, r := range res.recs {
			if r.last() <= cursor || live(r.first, r.last()) || removed(r.first, r.last()) {
				continue
			}
			f := max(r.first, cursor+1)
			if w.PendingFirst == 0 {
				w.PendingFirst = f
			}
			w.Pending += int64(r.last() - f + 1)
			if r.hasTime {
				t := time.UnixMilli(r.tmin).UTC()
				if w.PendingMinTime.IsZero() || t.Before(w.PendingMinTime) {
					w.PendingMinTime = t
				}
			}
		}
	}

	if walSchema != nil {
		if s, err := SchemaFromArrow(walSchema); err == nil {
			in.WALSchema = s
		}
	}
	switch {
	case in.Schema != nil:
		in.SchemaFrom = schemaSeg
	case in.WALSchema != nil:
		in.Schema, in.SchemaFrom = in.WALSchema, walSchemaFrom
	}

	q, err := list(quarantineDir)
	if err != nil {
		return nil, fmt.Errorf("buffer: list quarantine: %w", err)
	}
	for _, n := range q {
		qf := QuarantinedFile{Name: path.Join(quarantineDir, n)}
		if fi, err := fsys.Stat(p(qf.Name)); err == nil {
			qf.Bytes, qf.Modified = fi.Size(), fi.ModTime().UTC()
		}
		in.Quarantine = append(in.Quarantine, qf)
	}
	return in, nil
}

func inspectInfo(e segEntry, cursor uint64) SegmentInfo {
	si := SegmentInfo{
		Path: e.rel(), First: e.first, Last: e.last, Rows: int64(e.rows), Bytes: e.bytes, Checksum: e.crc,
	}
	if e.written != 0 {
		si.Written = time.UnixMilli(e.written).UTC()
	}
	if e.hasTime {
		si.MinTime, si.MaxTime = time.UnixMilli(e.tmin).UTC(), time.UnixMilli(e.tmax).UTC()
	}
	if e.kind == kindData && e.last > cursor {
		si.Undelivered = int64(e.last - max(e.first, cursor+1) + 1)
	}
	return si
}

// parseManifestRO applies the valid records of a manifest to m, as
// openManifest does, without opening the file for writing.
func parseManifestRO(m *manifest, data []byte) ManifestState {
	st := ManifestState{Present: true, Bytes: int64(len(data))}
	if len(data) < manHeaderSize || allZero(data[:manHeaderSize]) {
		st.TornTail = true
		return st
	}
	if string(data[:8]) != manifestMagic || crc(data[:12]) != le.Uint32(data[12:]) || le.Uint32(data[8:]) != formatVersion {
		st.Problem = "bad manifest header"
		return st
	}
	off := manHeaderSize
	for off < len(data) {
		rem := data[off:]
		if len(rem) < manRecHeader || allZero(rem) {
			st.TornTail, st.Offset = true, int64(off)
			break
		}
		n := int(le.Uint32(rem[4:]))
		if n > len(rem)-manRecHeader {
			st.TornTail, st.Offset = true, int64(off)
			break
		}
		rec := rem[:manRecHeader+n]
		if crc(rec[4:]) != le.Uint32(rec) {
			if manRecHeader+n == len(rem) {
				st.TornTail, st.Offset = true, int64(off)
			} else {
				st.Problem, st.Offset = "bad record checksum", int64(off)
			}
			break
		}
		if reason := m.apply(rec[8], rec[manRecHeader:]); reason != "" {
			st.Problem, st.Offset = reason, int64(off)
			break
		}
		st.Records++
		off += len(rec)
	}
	st.High = m.high
	return st
}

// arrowSchemaOf returns the schema of a WAL record payload.
func arrowSchemaOf(payload []byte) (s *arrow.Schema, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decode schema: %v", p)
		}
	}()
	r, err := ipc.NewReader(bytes.NewReader(payload), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return nil, err
	}
	defer r.Release()
	return r.Schema(), nil
}

// SchemaFromArrow builds the engine schema of an Arrow schema written by a
// buffer. The first timestamp column is taken as the event time; the key
// column is not recorded in Arrow schemas and is left empty.
func SchemaFromArrow(as *arrow.Schema) (*engine.Schema, error) {
	var fields []engine.Field
	timeName := ""
	for _, f := range as.Fields() {
		var t engine.Type
		for _, c := range []engine.Type{engine.Float64, engine.Int64, engine.String, engine.Bool, engine.Timestamp} {
			if arrow.TypeEqual(c.Arrow(), f.Type) {
				t = c
				break
			}
		}
		if t == engine.Invalid {
			return nil, fmt.Errorf("buffer: column %q has unsupported type %s", f.Name, f.Type)
		}
		if t == engine.Timestamp && timeName == "" {
			timeName = f.Name
		}
		fields = append(fields, engine.Field{Name: f.Name, Type: t})
	}
	return engine.NewSchema(fields, timeName, "")
}

// ParseSchemaJSON parses the sluice.schema metadata of a segment:
// {"fields":[{"name":..,"type":..}],"time":..,"key":..}.
func ParseSchemaJSON(s string) (*engine.Schema, error) {
	var js struct {
		Fields []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"fields"`
		Time string `json:"time"`
		Key  string `json:"key"`
	}
	if err := json.Unmarshal([]byte(s), &js); err != nil {
		return nil, fmt.Errorf("buffer: schema metadata: %w", err)
	}
	fields := make([]engine.Field, len(js.Fields))
	for i, f := range js.Fields {
		t, err := engine.ParseType(f.Type)
		if err != nil {
			return nil, fmt.Errorf("buffer: schema metadata: field %q: %w", f.Name, err)
		}
		fields[i] = engine.Field{Name: f.Name, Type: t}
	}
	return engine.NewSchema(fields, js.Time, js.Key)
}

// SchemaJSON renders a schema as the sluice.schema metadata of segments.
func SchemaJSON(s *engine.Schema) (string, error) {
	l, err := newSegLayout(s, false)
	if err != nil {
		return "", err
	}
	return l.meta, nil
}

// SegmentSchema reads the stream schema from the metadata of a segment
// file (or of any Parquet file written in the segment layout).
func SegmentSchema(fsys FS, name string) (*engine.Schema, error) {
	if fsys == nil {
		fsys = OS
	}
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("buffer: %s: %w", name, err)
	}
	meta, ok := pf.Lookup("sluice.schema")
	if !ok {
		return nil, fmt.Errorf("buffer: %s: no sluice.schema metadata", name)
	}
	return ParseSchemaJSON(meta)
}

// SegmentWriter writes rows in the segment layout of docs/format/buffer.md
// section 4 (zstd Parquet, one column per field plus _seq, sluice.*
// metadata) to any writer, for exports: the result is a plain Parquet file.
type SegmentWriter struct {
	sw    *segWriter
	codec *zstdCodec
	first uint64
	last  uint64
	rows  int64
}

// NewSegmentWriter starts a segment file on w. meta is added to the
// key/value metadata; sluice.first_seq and sluice.last_seq are set by
// Close from the rows written.
func NewSegmentWriter(w io.Writer, s *engine.Schema, meta map[string]string) (*SegmentWriter, error) {
	l, err := newSegLayout(s, false)
	if err != nil {
		return nil, err
	}
	codec := new(zstdCodec)
	sw := newSegWriter(w, l, s, codec, 0, 0)
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		sw.w.SetKeyValueMetadata(k, meta[k])
	}
	return &SegmentWriter{sw: sw, codec: codec}, nil
}

// Write appends the rows of rec; row i has sequence first+i. Sequences
// must increase from one call to the next.
func (w *SegmentWriter) Write(rec arrow.RecordBatch, first uint64) error {
	n := rec.NumRows()
	if n == 0 {
		return nil
	}
	if w.rows > 0 && first <= w.last {
		return fmt.Errorf("buffer: segment writer: sequence %d does not follow %d", first, w.last)
	}
	if err := w.sw.write(rec, first, ""); err != nil {
		return err
	}
	if w.rows == 0 {
		w.first = first
	}
	w.last = first + uint64(n) - 1
	w.rows += n
	return nil
}

// Rows returns the rows written so far.
func (w *SegmentWriter) Rows() int64 { return w.rows }

// Close sets the sequence metadata and finishes the file.
func (w *SegmentWriter) Close() error {
	defer w.codec.close()
	w.sw.w.SetKeyValueMetadata("sluice.first_seq", strconv.FormatUint(w.first, 10))
	w.sw.w.SetKeyValueMetadata("sluice.last_seq", strconv.FormatUint(w.last, 10))
	return w.sw.close()
}

// SegmentFile is a Parquet file in the segment layout read back whole.
type SegmentFile struct {
	Schema *engine.Schema
	// Meta is the key/value metadata.
	Meta map[string]string
	// First is the sequence of the first row; rows are consecutive.
	First uint64
	// Rec holds the rows; the caller releases it. Nil for an empty file.
	Rec arrow.RecordBatch
}

// ReadSegmentFile decodes a Parquet file in the segment layout holding
// consecutive sequences (a segment or an export). The schema comes from
// the sluice.schema metadata and the range from sluice.first_seq and
// sluice.last_seq; the _seq column must match them.
func ReadSegmentFile(data []byte, mem memory.Allocator) (*SegmentFile, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("buffer: read segment file: %w", err)
	}
	meta := map[string]string{}
	for _, kv := range pf.Metadata().KeyValueMetadata {
		meta[kv.Key] = kv.Value
	}
	js, ok := meta["sluice.schema"]
	if !ok {
		return nil, errors.New("buffer: read segment file: no sluice.schema metadata")
	}
	s, err := ParseSchemaJSON(js)
	if err != nil {
		return nil, err
	}
	out := &SegmentFile{Schema: s, Meta: meta}
	if pf.NumRows() == 0 {
		return out, nil
	}
	first, err1 := strconv.ParseUint(meta["sluice.first_seq"], 10, 64)
	last, err2 := strconv.ParseUint(meta["sluice.last_seq"], 10, 64)
	if err1 != nil || err2 != nil || first == 0 || last < first {
		return nil, errors.New("buffer: read segment file: bad sluice.first_seq or sluice.last_seq metadata")
	}
	l, err := newSegLayout(s, false)
	if err != nil {
		return nil, err
	}
	rec, err := readSegment(data, l, s, mem, first, last)
	if err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	out.First, out.Rec = first, rec
	return out, nil
}
