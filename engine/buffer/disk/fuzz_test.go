package disk_test

import (
	"bytes"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
)

var fuzzSchema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String}, {Name: "v", Type: engine.Float64},
}, "time", "asset")

func fuzzRecord(n int) arrow.RecordBatch {
	rb := engine.NewRecordBuilder(memory.DefaultAllocator, fuzzSchema)
	defer rb.Release()
	for i := range n {
		rb.Timestamp(0).Append(arrow.Timestamp(1_700_000_000_000 + int64(i)))
		rb.String(1).Append("T1")
		rb.Float64(2).Append(float64(i))
		rb.RowDone()
	}
	return rb.NewRecord()
}

// walFile returns a valid WAL file of three records.
func walFile(t testing.TB) []byte {
	msg, err := disk.SchemaMessage(fuzzSchema.Arrow())
	if err != nil {
		t.Fatal(err)
	}
	out := disk.WALHeader(1)
	seq := uint64(1)
	for _, n := range []int{3, 1, 5} {
		rec := fuzzRecord(n)
		var w disk.AppendWriter
		b, err := disk.EncodeRecord(&w, msg, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		disk.PutRecHeader(b, disk.RecMeta{First: seq, Rows: uint32(n), MsgRows: 2})
		out = append(out, b...)
		seq += uint64(n)
	}
	return out
}

// FuzzScanWAL: any bytes give a scan whose records lie inside the file, in
// order, with consecutive sequences, and never a panic.
func FuzzScanWAL(f *testing.F) {
	good := walFile(f)
	f.Add(good)
	f.Add(good[:len(good)-7])
	f.Add(append(bytes.Clone(good), make([]byte, 100)...))
	bad := bytes.Clone(good)
	bad[40] ^= 0xff
	f.Add(bad)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		res := disk.ScanWAL(data, "wal/00000001.wal")
		if res.End < 0 || res.End > int64(len(data)) || res.TornAt < -1 || res.TornAt > int64(len(data)) {
			t.Fatalf("end %d, torn at %d in %d bytes", res.End, res.TornAt, len(data))
		}
		prevEnd := int64(disk.WALHeaderSize)
		var next uint64
		for _, r := range res.Recs {
			end := r.Off + disk.RecHeaderSize + int64(r.Length)
			if r.Off < prevEnd || end > int64(len(data)) || r.Rows == 0 || r.First == 0 {
				t.Fatalf("record %+v outside the file or overlapping", r)
			}
			if next != 0 && r.First < next {
				t.Fatalf("record at %d: sequence %d after %d", r.Off, r.First, next-1)
			}
			starts := r.Starts(nil, r.First, r.Last())
			if len(starts) == 0 || starts[0] != r.First {
				t.Fatalf("record %+v: message starts %v", r, starts)
			}
			prevEnd, next = end, r.Last()+1
		}
	})
}

// FuzzParseManifest: any bytes parse without a panic to a state whose
// valid records end inside the file.
func FuzzParseManifest(f *testing.F) {
	hdr := []byte("SLUICEMF\x02\x00\x00\x00\x00\x00\x00\x00")
	f.Add([]byte("SLUICEMF"))
	f.Add(append(bytes.Clone(hdr), disk.EncodeHigh(5)...))
	f.Add(append(bytes.Clone(hdr), disk.EncodeAdd(disk.SegEntry{Kind: disk.KindData, First: 1, Last: 9, Rows: 9, Bytes: 100})...))
	f.Add(append(bytes.Clone(hdr), disk.EncodeWAL(disk.WALExtent{Num: 1, Base: 1, Next: 9, Size: 100})...))
	f.Fuzz(func(t *testing.T, data []byte) {
		st := disk.ParseManifest(data)
		if st.End < 0 || st.End > int64(len(data)) || st.Offset < 0 || st.Offset > int64(len(data)) {
			t.Fatalf("end %d, offset %d in %d bytes", st.End, st.Offset, len(data))
		}
		for k, e := range st.Live {
			if k.First != e.First || e.Last < e.First {
				t.Fatalf("entry %+v under %+v", e, k)
			}
		}
	})
}

// FuzzDecodeSlots: the cursor, sync-mark and position files decode any
// bytes without a panic, to a payload that fits its slot.
func FuzzDecodeSlots(f *testing.F) {
	f.Add([]byte("SLUICECR"), 64)
	f.Add(make([]byte, 576), 64)
	f.Add(bytes.Repeat([]byte{0xff}, 8192), 4096)
	f.Fuzz(func(t *testing.T, data []byte, size int) {
		if size < 32 || size > 1<<16 {
			return
		}
		for _, magic := range []string{"SLUICECR", "SLUICESM", "SLUICEPS"} {
			p, _, found, _ := disk.DecodeSlots(data, magic, size)
			if found && len(p) > size-28 {
				t.Fatalf("payload of %d bytes from a %d-byte slot", len(p), size)
			}
		}
	})
}

// FuzzReadSegmentFile: damaged Parquet files are errors, never panics.
func FuzzReadSegmentFile(f *testing.F) {
	var buf bytes.Buffer
	w, err := disk.NewSegmentWriter(&buf, fuzzSchema, map[string]string{"sluice.edge": "e"})
	if err != nil {
		f.Fatal(err)
	}
	rec := fuzzRecord(20)
	if err := w.Write(rec, 1, []uint64{1, 8, 15}); err != nil {
		f.Fatal(err)
	}
	rec.Release()
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	good := buf.Bytes()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		sf, err := disk.ReadSegmentFile(data, memory.DefaultAllocator)
		if err != nil {
			return
		}
		if sf.Rec != nil {
			if sf.Starts != nil && (len(sf.Starts) == 0 || sf.Starts[0] != sf.First) {
				t.Fatalf("message starts %v of rows from %d", sf.Starts, sf.First)
			}
			sf.Rec.Release()
		}
	})
}

// FuzzReadCursorAndMark: any bytes in the cursor and sync-mark files read
// as a cursor, damage or no mark — never a panic, never a sequence beyond
// MaxSeq.
func FuzzReadCursorAndMark(f *testing.F) {
	f.Add([]byte("SLUICECR"))
	f.Add(make([]byte, 128))
	f.Add(bytes.Repeat([]byte{0xff}, 200))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := faultfs.New()
		if err := fs.MkdirAll("/buf", 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{disk.CursorName, disk.SyncMarkName} {
			if err := fs.WriteFile("/buf/"+name, data); err != nil {
				t.Fatal(err)
			}
		}
		c, err := disk.ReadCursor(fs, "/buf")
		if err != nil {
			t.Fatal(err)
		}
		if c.Cursor > disk.MaxSeq {
			t.Fatalf("cursor %d beyond MaxSeq", c.Cursor)
		}
		m, err := disk.ReadMark(fs, "/buf")
		if err != nil {
			t.Fatal(err)
		}
		if m.Valid && (m.Next > disk.MaxSeq+1 || m.Next < m.Base) {
			t.Fatalf("mark %+v accepted", m.Mark)
		}
	})
}
