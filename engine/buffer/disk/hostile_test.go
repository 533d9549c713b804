package disk_test

import (
	"encoding/binary"
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
)

// slotFile writes a cursor or sync-mark file holding payload (any length).
func slotFile(t *testing.T, fs *faultfs.FS, name, magic string, payload []byte) {
	t.Helper()
	if err := fs.MkdirAll("/buf", 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := disk.OpenSlots(fs, "/buf/"+name, magic, 64, 0, payload, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestHostileStateFiles feeds the cursor and sync-mark readers valid
// slots with payloads of the wrong length or out-of-range sequences. A
// short cursor payload used to panic (index out of range); now every such
// file is damage (cursor) or ignored (the advisory sync mark).
func TestHostileStateFiles(t *testing.T) {
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	mark := func(num uint32, base, next uint64, size int64) []byte {
		p := make([]byte, 32)
		binary.LittleEndian.PutUint32(p, num)
		binary.LittleEndian.PutUint64(p[8:], base)
		binary.LittleEndian.PutUint64(p[16:], next)
		binary.LittleEndian.PutUint64(p[24:], uint64(size))
		return p
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		bad     bool
	}{
		{"empty", nil, true},
		{"short", []byte{1, 2, 3}, true},
		{"long", make([]byte, 16), true},
		{"largest sequence", u64(disk.MaxSeq), false},
		{"beyond the largest sequence", u64(disk.MaxSeq + 1), true},
		{"all ones", u64(^uint64(0)), true},
	} {
		t.Run("cursor "+tc.name, func(t *testing.T) {
			fs := faultfs.New()
			slotFile(t, fs, disk.CursorName, "SLUICECR", tc.payload)
			st, err := disk.ReadCursor(fs, "/buf")
			if err != nil {
				t.Fatal(err)
			}
			if (st.Damage != nil) != tc.bad {
				t.Fatalf("damage %v, want damaged=%v", st.Damage, tc.bad)
			}
			if tc.bad && st.Cursor != 0 {
				t.Fatalf("a damaged cursor reads as %d", st.Cursor)
			}
		})
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		valid   bool
	}{
		{"good", mark(1, 1, 100, 4096), true},
		{"short", []byte{1, 0, 0, 0}, false},
		{"long", make([]byte, 36), false},
		{"next beyond the largest sequence", mark(1, 1, disk.MaxSeq+2, 4096), false},
		{"base zero", mark(1, 0, 10, 4096), false},
		{"next below base", mark(1, 10, 5, 4096), false},
	} {
		t.Run("mark "+tc.name, func(t *testing.T) {
			fs := faultfs.New()
			slotFile(t, fs, disk.SyncMarkName, "SLUICESM", tc.payload)
			st, err := disk.ReadMark(fs, "/buf")
			if err != nil {
				t.Fatal(err)
			}
			if st.Valid != tc.valid {
				t.Fatalf("mark %+v valid=%v, want %v", st.Mark, st.Valid, tc.valid)
			}
		})
	}
}

// TestHostileSequences: WAL headers, records and segment names carrying
// sequences beyond MaxSeq are damage, not values to compute with.
func TestHostileSequences(t *testing.T) {
	for _, base := range []uint64{0, disk.MaxSeq + 1, ^uint64(0)} {
		if _, reason := disk.ParseWALHeader(disk.WALHeader(base)); reason == "" {
			t.Errorf("WAL header with base %d accepted", base)
		}
	}
	if b, reason := disk.ParseWALHeader(disk.WALHeader(disk.MaxSeq)); reason != "" || b != disk.MaxSeq {
		t.Errorf("WAL header with base MaxSeq: %d %q", b, reason)
	}
	data := walFile(t)
	// The first record: sequence near the top of the range, header CRC
	// recomputed so that only the range check can refuse it.
	rec := data[disk.WALHeaderSize:]
	binary.LittleEndian.PutUint64(rec[16:], ^uint64(0)-1)
	binary.LittleEndian.PutUint32(rec[0:], disk.CRC(rec[4:disk.RecHeaderSize]))
	if _, reason := disk.ParseRecHeader(rec); reason != "sequence out of range" {
		t.Errorf("record at sequence 2^64-2: %q", reason)
	}
	for _, name := range []string{
		"04611686018427387905-04611686018427387905.parquet", // MaxSeq+1
		"00000000000000000001-18446744073709551615.parquet",
	} {
		if _, _, ok := disk.ParseSegName(name); ok {
			t.Errorf("segment name %s accepted", name)
		}
	}
}

// TestHostileMetaIdentity: a meta file naming an edge or stream the
// configuration would refuse (a path, a control character) is an error:
// the identity forms message IDs, subjects and export file names.
func TestHostileMetaIdentity(t *testing.T) {
	for _, tc := range []struct {
		json string
		ok   bool
	}{
		{`{"format":2,"edge":"site-1","stream":"p.cloud"}`, true},
		{`{"format":2}`, true},
		{`{"format":2,"edge":"../../etc","stream":"p.cloud"}`, false},
		{`{"format":2,"edge":"site","stream":"a b"}`, false},
		{`{"format":2,"edge":"site\u0000x","stream":"s"}`, false},
	} {
		fs := faultfs.New()
		if err := fs.MkdirAll("/buf", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := fs.WriteFile("/buf/"+disk.MetaName, []byte(tc.json)); err != nil {
			t.Fatal(err)
		}
		_, err := disk.ReadMeta(fs, "/buf")
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.json, err, tc.ok)
		}
	}
}
