package buffer_test

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
)

// walOffsets returns the offsets of the records of a WAL file.
func walOffsets(t *testing.T, data []byte) []int {
	t.Helper()
	var offs []int
	for off := 32; off+56 <= len(data); {
		offs = append(offs, off)
		off += 56 + int(binary.LittleEndian.Uint32(data[off+4:]))
	}
	return offs
}

// fourBatches writes 4 batches of 10 rows into one WAL file and closes the
// buffer.
func fourBatches(t *testing.T, fs *faultfs.FS, o buffer.Options) []byte {
	t.Helper()
	b := mustOpen(t, "/buf", o)
	appendN(t, b, o.Mem, 0, 4, 10)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := fs.ReadFile("/buf/wal/00000001.wal")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(walOffsets(t, data)); n != 4 {
		t.Fatalf("%d records in the WAL file, want 4", n)
	}
	return data
}

func TestTornTail(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(data []byte, offs []int) []byte
		batches int64 // batches that survive
	}{
		{"cut in header", func(d []byte, o []int) []byte { return d[:o[3]+20] }, 3},
		{"cut in payload", func(d []byte, o []int) []byte { return d[:o[3]+56+10] }, 3},
		{"cut after header", func(d []byte, o []int) []byte { return d[:o[3]+56] }, 3},
		{"zeroed last record", func(d []byte, o []int) []byte {
			clear(d[o[3]:])
			return d
		}, 3},
		{"garbage in the last payload", func(d []byte, o []int) []byte {
			d[len(d)-20] ^= 0xff
			return d
		}, 3},
		{"zero padding after the records", func(d []byte, o []int) []byte { return append(d, make([]byte, 4096)...) }, 4},
		{"two records cut", func(d []byte, o []int) []byte { return d[:o[2]+3] }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			fs := faultfs.New()
			o := opts(fs, mem)
			data := fourBatches(t, fs, o)
			offs := walOffsets(t, data)
			// A crash tears only what was not synced: the sync mark
			// covers the batches that survive.
			synced := int64(len(data))
			if tc.batches < 4 {
				synced = int64(offs[tc.batches])
			}
			setMark(t, fs, "/buf", disk.Mark{Num: 1, Base: 1, Next: uint64(tc.batches*10 + 1), Size: synced})
			if err := fs.WriteFile("/buf/wal/00000001.wal", tc.damage(data, offs)); err != nil {
				t.Fatal(err)
			}
			var corrupt []*buffer.CorruptionError
			o.OnCorruption = func(e *buffer.CorruptionError) { corrupt = append(corrupt, e) }
			b := mustOpen(t, "/buf", o)
			defer b.Close()
			if len(corrupt) != 0 {
				t.Fatalf("a torn tail was reported as corruption: %v", corrupt[0])
			}
			wantContiguous(t, drain(t, b), 1, 0, tc.batches*10)
			rec := rows(mem, testSchema, 100, 10)
			first, err := b.Append(rec)
			rec.Release()
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(tc.batches*10 + 1); first != want {
				t.Fatalf("append after repair got sequence %d, want %d", first, want)
			}
			if q := b.Status().Quarantined; q != 0 {
				t.Fatalf("%d files quarantined", q)
			}
		})
	}
}

// setMark replaces the sync mark of the buffer in dir, as a crash
// before the mark reached later writes would leave it.
func setMark(t *testing.T, fs *faultfs.FS, dir string, m disk.Mark) {
	t.Helper()
	st, err := disk.ReadMark(fs, dir)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := disk.OpenMarkFile(fs, dir, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := mf.Write(m); err != nil {
		t.Fatal(err)
	}
	if err := mf.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := mf.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCutWALBelowSyncMark cuts acknowledged rows off a WAL file after the
// buffer closed (a bad copy, a disk error, a hostile hand): a crash tears
// only what was never synced, so this is corruption. The lost range is
// reported and recorded, the file quarantined after its valid records are
// sealed, and the sequences it held are never handed out again.
func TestCutWALBelowSyncMark(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(d []byte, o []int) []byte
		kept int64 // rows that survive
	}{
		{"to 60 percent", func(d []byte, o []int) []byte { return d[:len(d)*6/10] }, 20},
		{"at a record boundary", func(d []byte, o []int) []byte { return d[:o[2]] }, 20},
		{"to its header", func(d []byte, o []int) []byte { return d[:32] }, 0},
		{"to nothing", func(d []byte, o []int) []byte { return nil }, 0},
		{"zeroed", func(d []byte, o []int) []byte { return make([]byte, len(d)) }, 0},
		{"to half its header", func(d []byte, o []int) []byte { return d[:16] }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			fs := faultfs.New()
			o := opts(fs, mem)
			data := fourBatches(t, fs, o)
			if err := fs.WriteFile("/buf/wal/00000001.wal", tc.cut(data, walOffsets(t, data))); err != nil {
				t.Fatal(err)
			}
			var corrupt []*buffer.CorruptionError
			o.OnCorruption = func(e *buffer.CorruptionError) { corrupt = append(corrupt, e) }
			b := mustOpen(t, "/buf", o)
			defer b.Close()
			if len(corrupt) != 1 {
				t.Fatalf("want one corruption report, got %v", corrupt)
			}
			ce := corrupt[0]
			if ce.Segment != "wal/00000001.wal" || ce.LostFirst != uint64(tc.kept+1) || ce.LostLast != 40 || ce.Quarantined == "" {
				t.Fatalf("report %+v: want sequences %d-40 lost and the file quarantined", ce, tc.kept+1)
			}
			wantContiguous(t, drain(t, b), 1, 0, tc.kept)
			rec := rows(mem, testSchema, 100, 10)
			first, err := b.Append(rec)
			rec.Release()
			if err != nil {
				t.Fatal(err)
			}
			if first <= 40 {
				t.Fatalf("sequence %d handed out again (40 was issued before the cut)", first)
			}
			in, err := buffer.Inspect("/buf", buffer.InspectOptions{FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			if len(in.Removed) != 1 || in.Removed[0].First != uint64(tc.kept+1) || in.Removed[0].Last != 40 || in.Removed[0].Reason != "corrupt" {
				t.Fatalf("removed ranges %+v: want %d-40 lost to corruption", in.Removed, tc.kept+1)
			}
		})
	}
}

func TestCorruptWALRecord(t *testing.T) {
	for _, tc := range []struct {
		name      string
		damage    func(d []byte, o []int)
		reason    string
		lostFirst uint64
		lostLast  uint64
		survivors []int64 // first ids of the batches that survive
		jump      bool    // the next sequence jumps (lost range unbounded)
	}{
		{"payload of the second record", func(d []byte, o []int) { d[o[1]+100] ^= 0x01 }, "bad payload checksum", 11, 20, []int64{0, 20, 30}, false},
		{"header of the second record", func(d []byte, o []int) { d[o[1]+17] ^= 0x01 }, "bad record header checksum", 11, 20, []int64{0, 20, 30}, false},
		{"length of the second record", func(d []byte, o []int) { d[o[1]+6] ^= 0x40 }, "bad record header checksum", 11, 20, []int64{0, 20, 30}, false},
		{"header of the last record", func(d []byte, o []int) { d[o[3]+2] ^= 0x01 }, "bad record header checksum", 31, 0, []int64{0, 10, 20}, true},
		{"file header", func(d []byte, o []int) { d[3] ^= 0x01 }, "bad file magic", 0, 0, []int64{0, 10, 20, 30}, false},
		{"zeroed file header", func(d []byte, o []int) { clear(d[:32]) }, "zeroed file header", 0, 0, []int64{0, 10, 20, 30}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			fs := faultfs.New()
			o := opts(fs, mem)
			data := fourBatches(t, fs, o)
			offs := walOffsets(t, data)
			tc.damage(data, offs)
			if err := fs.WriteFile("/buf/wal/00000001.wal", data); err != nil {
				t.Fatal(err)
			}
			var corrupt []*buffer.CorruptionError
			var quarantined []string // as reported, at the time of the report
			o.OnCorruption = func(e *buffer.CorruptionError) {
				corrupt = append(corrupt, e)
				quarantined = append(quarantined, e.Quarantined)
			}
			var logged strings.Builder
			o.Log = slog.New(slog.NewTextHandler(&logged, nil))
			b := mustOpen(t, "/buf", o)
			defer b.Close()
			var found *buffer.CorruptionError
			for i, c := range corrupt {
				if c.Reason == tc.reason {
					found = c
					if quarantined[i] != "quarantine/wal-00000001.wal" {
						t.Fatalf("reported before the file was quarantined: %q", quarantined[i])
					}
				}
			}
			if found == nil {
				t.Fatalf("no corruption %q reported; got %v", tc.reason, corrupt)
			}
			if found.Segment != "wal/00000001.wal" || found.Quarantined != "quarantine/wal-00000001.wal" {
				t.Fatalf("reported %+v", found)
			}
			// The log line names where the file went.
			if !strings.Contains(logged.String(), "quarantined=quarantine/wal-00000001.wal") {
				t.Fatalf("log lacks the quarantined file:\n%s", logged.String())
			}
			wantOff := int64(-1)
			switch tc.name {
			case "file header", "zeroed file header":
				wantOff = 0
			case "header of the last record":
				wantOff = int64(offs[3])
			default:
				wantOff = int64(offs[1])
			}
			if found.Offset != wantOff {
				t.Fatalf("offset %d, want %d", found.Offset, wantOff)
			}
			if found.LostFirst != tc.lostFirst || found.LostLast != tc.lostLast {
				t.Fatalf("lost %d-%d, want %d-%d", found.LostFirst, found.LostLast, tc.lostFirst, tc.lostLast)
			}
			var ce *buffer.CorruptionError
			if !errors.As(error(found), &ce) || !strings.Contains(found.Error(), "wal/00000001.wal at offset") {
				t.Fatalf("error text %q", found.Error())
			}
			// The valid records around the damage were salvaged.
			got := drain(t, b)
			var want []read
			for _, id := range tc.survivors {
				for i := range int64(10) {
					want = append(want, read{uint64(id + i + 1), id + i})
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("read %v\nwant %v", got, want)
			}
			st := b.Status()
			if st.Quarantined != 1 || st.WALFiles != 1 || st.Segments == 0 {
				t.Fatalf("status %+v", st)
			}
			if _, err := fs.ReadFile("/buf/quarantine/wal-00000001.wal"); err != nil {
				t.Fatal(err)
			}
			rec := rows(mem, testSchema, 100, 1)
			first, err := b.Append(rec)
			rec.Release()
			if err != nil {
				t.Fatal(err)
			}
			if tc.jump != (first > 1<<32) {
				t.Fatalf("next sequence %d (jump expected: %v)", first, tc.jump)
			}
			// Reopening reports nothing new.
			b.Close()
			corrupt = nil
			b2 := mustOpen(t, "/buf", o)
			defer b2.Close()
			if len(corrupt) != 0 {
				t.Fatalf("reported again after reopen: %v", corrupt[0])
			}
			if got2 := drain(t, b2); len(got2) != len(want)+1 {
				t.Fatalf("read %d rows after reopen, want %d", len(got2), len(want)+1)
			}
		})
	}
}

// threeSegments seals three segments of 10 rows each and closes the buffer.
func threeSegments(t *testing.T, o buffer.Options) []buffer.SegmentInfo {
	t.Helper()
	b := mustOpen(t, "/buf", o)
	defer b.Close()
	id := int64(0)
	for range 3 {
		id = appendN(t, b, o.Mem, id, 1, 10)
		if err := b.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Seal(); err != nil {
		t.Fatal(err)
	}
	segs := b.Segments()
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3", len(segs))
	}
	return segs
}

func TestCorruptSegment(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(fs *faultfs.FS, seg buffer.SegmentInfo)
		reason string
		atOpen bool
		lost   bool
	}{
		{"truncated", func(fs *faultfs.FS, s buffer.SegmentInfo) {
			d, _ := fs.ReadFile("/buf/" + s.Path)
			fs.WriteFile("/buf/"+s.Path, d[:len(d)/2])
		}, "size", true, true},
		{"flipped byte", func(fs *faultfs.FS, s buffer.SegmentInfo) {
			d, _ := fs.ReadFile("/buf/" + s.Path)
			d[len(d)/2] ^= 0x10
			fs.WriteFile("/buf/"+s.Path, d)
		}, "file checksum mismatch", false, true},
		{"missing", func(fs *faultfs.FS, s buffer.SegmentInfo) {
			fs.Remove("/buf/" + s.Path)
		}, "listed in the manifest but missing", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			fs := faultfs.New()
			o := opts(fs, mem)
			segs := threeSegments(t, o)
			tc.damage(fs, segs[1])
			var corrupt []*buffer.CorruptionError
			o.OnCorruption = func(e *buffer.CorruptionError) { corrupt = append(corrupt, e) }
			b := mustOpen(t, "/buf", o)
			defer b.Close()
			if got := len(corrupt); tc.atOpen && got != 1 || !tc.atOpen && got != 0 {
				t.Fatalf("%d corruptions at open: %v", got, corrupt)
			}
			got := drain(t, b)
			if len(corrupt) != 1 || !strings.Contains(corrupt[0].Reason, tc.reason) {
				t.Fatalf("corruptions %v, want one %q", corrupt, tc.reason)
			}
			c := corrupt[0]
			if c.Segment != segs[1].Path || c.LostFirst != 11 || c.LostLast != 20 {
				t.Fatalf("reported %+v", c)
			}
			if tc.name != "missing" && c.Quarantined != "quarantine/seg-"+strings.TrimPrefix(segs[1].Path, "seg/") {
				t.Fatalf("quarantined as %q", c.Quarantined)
			}
			// The neighbours are read; the damaged rows are skipped.
			want := append(seqIDs(1, 0, 10), seqIDs(21, 20, 10)...)
			if !slices.Equal(got, want) {
				t.Fatalf("read %v\nwant %v", got, want)
			}
			b.Close()
			corrupt = nil
			b2 := mustOpen(t, "/buf", o)
			defer b2.Close()
			if len(corrupt) != 0 || len(b2.Segments()) != 2 {
				t.Fatalf("after reopen: corruptions %v, %d segments", corrupt, len(b2.Segments()))
			}
		})
	}
}

func seqIDs(seq uint64, id int64, n int) []read {
	out := make([]read, n)
	for i := range out {
		out[i] = read{seq + uint64(i), id + int64(i)}
	}
	return out
}

func TestUnlistedSegments(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	o := opts(fs, mem)
	segs := threeSegments(t, o)
	// An unreadable file that claims rows nobody else holds.
	if err := fs.WriteFile("/buf/seg/00000000000000000500-00000000000000000509.parquet", []byte("PAR1 not really")); err != nil {
		t.Fatal(err)
	}
	// A leftover of an interrupted publication.
	if err := fs.WriteFile("/buf/seg/"+strings.TrimPrefix(segs[0].Path, "seg/")+".tmp", []byte("x")); err != nil {
		t.Fatal(err)
	}
	var corrupt []*buffer.CorruptionError
	o.OnCorruption = func(e *buffer.CorruptionError) { corrupt = append(corrupt, e) }
	b := mustOpen(t, "/buf", o)
	defer b.Close()
	if len(corrupt) != 1 || corrupt[0].Reason != "unlisted segment is unreadable" || corrupt[0].LostFirst != 500 {
		t.Fatalf("corruptions %v", corrupt)
	}
	wantContiguous(t, drain(t, b), 1, 0, 30)
	for _, n := range fs.Names() {
		if strings.HasSuffix(n, ".tmp") {
			t.Fatalf("%s left behind", n)
		}
	}
}

// manifestRecords returns the offsets of the manifest records of type typ
// (docs/format/buffer.md 5: a 16-byte header, then records of a CRC, a
// body length and a type before the body).
func manifestRecords(data []byte, typ byte) []int {
	var out []int
	for off := 16; off+9 <= len(data); {
		n := int(binary.LittleEndian.Uint32(data[off+4:]))
		if n == 0 {
			break // padding
		}
		if data[off+8] == typ {
			out = append(out, off)
		}
		off += 9 + n
	}
	return out
}

func TestCorruptManifest(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	o := opts(fs, mem)
	threeSegments(t, o)
	data, err := fs.ReadFile("/buf/manifest")
	if err != nil {
		t.Fatal(err)
	}
	// Damage the second add record (type 1).
	addAt := manifestRecords(data, 1)
	if len(addAt) != 3 {
		t.Fatalf("%d add records in the manifest, want 3", len(addAt))
	}
	data[addAt[1]+30] ^= 0xff
	fs.WriteFile("/buf/manifest", data)
	var corrupt []*buffer.CorruptionError
	o.OnCorruption = func(e *buffer.CorruptionError) { corrupt = append(corrupt, e) }
	b := mustOpen(t, "/buf", o)
	defer b.Close()
	if len(corrupt) != 1 || corrupt[0].Segment != "manifest" || corrupt[0].Offset != int64(addAt[1]) {
		t.Fatalf("corruptions %v", corrupt)
	}
	if !strings.HasPrefix(corrupt[0].Quarantined, "quarantine/manifest-") {
		t.Fatalf("manifest copy at %q", corrupt[0].Quarantined)
	}
	// The segments the manifest lost were adopted.
	if n := len(b.Segments()); n != 3 {
		t.Fatalf("%d segments, want 3", n)
	}
	wantContiguous(t, drain(t, b), 1, 0, 30)
}

func TestCorruptCursor(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	o := opts(fs, mem)
	b := mustOpen(t, "/buf", o)
	appendN(t, b, mem, 0, 3, 10)
	drain(t, b)
	if err := b.Ack(15); err != nil {
		t.Fatal(err)
	}
	b.Close()
	fs.WriteFile("/buf/cursor", []byte("SLUICECR garbage...."))
	var corrupt []*buffer.CorruptionError
	o.OnCorruption = func(e *buffer.CorruptionError) { corrupt = append(corrupt, e) }
	b = mustOpen(t, "/buf", o)
	defer b.Close()
	if len(corrupt) != 1 || corrupt[0].Segment != "cursor" || corrupt[0].Quarantined != "quarantine/cursor-cursor" {
		t.Fatalf("corruptions %v", corrupt)
	}
	// At least once: the rows still on disk are delivered again, under the
	// same sequences.
	got := drain(t, b)
	if len(got) == 0 || got[len(got)-1] != (read{30, 29}) {
		t.Fatalf("read %v", got)
	}
}

// TestDuplicateWALFile copies a WAL file to a new number beside the
// original: its rows must be read once, the copy reported and
// quarantined. Both used to be read, every row twice.
func TestDuplicateWALFile(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	o := opts(fs, mem)
	data := fourBatches(t, fs, o)
	if err := fs.WriteFile("/buf/wal/00000002.wal", data); err != nil {
		t.Fatal(err)
	}
	var corrupt []*buffer.CorruptionError
	o.OnCorruption = func(e *buffer.CorruptionError) { corrupt = append(corrupt, e) }
	b := mustOpen(t, "/buf", o)
	defer b.Close()
	wantContiguous(t, drain(t, b), 1, 0, 40)
	if len(corrupt) == 0 || corrupt[0].Segment != "wal/00000002.wal" || corrupt[0].LostFirst != 0 || corrupt[0].Quarantined == "" {
		t.Fatalf("reports %v: want the copy reported (nothing lost) and quarantined", corrupt)
	}
}
