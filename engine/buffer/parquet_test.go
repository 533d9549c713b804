package buffer_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/sluice-edge/sluice/engine/buffer"
)

// segRow is a row of a segment of testSchema as any Parquet user would
// declare it.
type segRow struct {
	Seq   int64      `parquet:"_seq"`
	Msg   int64      `parquet:"_msg"`
	Time  *time.Time `parquet:"time,optional,timestamp(millisecond)"`
	Asset *string    `parquet:"asset,optional"`
	Value *float64   `parquet:"value,optional"`
	ID    *int64     `parquet:"id,optional"`
	OK    *bool      `parquet:"ok,optional"`
	Error *string    `parquet:"_error,optional"`
}

// readRaw reads a segment file with parquet-go's generic reader, knowing
// nothing of the buffer.
func readRaw(t *testing.T, name string) ([]segRow, *parquet.File) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	r := parquet.NewGenericReader[segRow](pf)
	defer r.Close()
	out := make([]segRow, pf.NumRows())
	n, err := r.Read(out)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return out[:n], pf
}

func checkRawRow(t *testing.T, r segRow, seq uint64) {
	t.Helper()
	k := *r.ID
	if uint64(r.Seq) != seq || r.Time.UnixMilli() != t0+k*1000 || *r.Asset != "turbine-"+strconv.FormatInt(k%7, 10) || *r.OK != (k%2 == 0) {
		t.Fatalf("row %+v at sequence %d", r, seq)
	}
	if (k%11 == 5) != (r.Value == nil) || r.Value != nil && *r.Value != float64(k)*0.25 {
		t.Fatalf("value of row %d", k)
	}
}

func TestSegmentsReadableByParquetGo(t *testing.T) {
	mem := checkedMem(t)
	dir := t.TempDir()
	o := opts(buffer.OS, mem)
	b := mustOpen(t, dir, o)
	defer b.Close()
	appendN(t, b, mem, 0, 5, 300)
	b.Roll()
	if err := b.Seal(); err != nil {
		t.Fatal(err)
	}
	segs := b.Segments()
	if len(segs) != 1 || segs[0].Rows != 1500 || segs[0].First != 1 || segs[0].Last != 1500 {
		t.Fatalf("segments %+v", segs)
	}
	rows, pf := readRaw(t, filepath.Join(dir, segs[0].Path))
	if len(rows) != 1500 {
		t.Fatalf("read %d rows", len(rows))
	}
	for i, r := range rows {
		checkRawRow(t, r, uint64(i+1))
		// Each appended batch of 300 rows is one message.
		if want := int64(i/300*300 + 1); r.Msg != want {
			t.Fatalf("row %d: _msg %d, want %d", i, r.Msg, want)
		}
	}
	// The file says what it is.
	for key, want := range map[string]string{"sluice.format": "2", "sluice.first_seq": "1", "sluice.last_seq": "1500"} {
		if got, _ := pf.Lookup(key); got != want {
			t.Errorf("metadata %s = %q, want %q", key, got, want)
		}
	}
	if s, _ := pf.Lookup("sluice.schema"); !strings.Contains(s, `"time":"time"`) || !strings.Contains(s, `{"name":"value","type":"float64"}`) {
		t.Errorf("sluice.schema = %s", s)
	}
	for _, rg := range pf.Metadata().RowGroups {
		for _, c := range rg.Columns {
			if c.MetaData.Codec != format.Zstd {
				t.Errorf("column %v compressed with %v", c.MetaData.PathInSchema, c.MetaData.Codec)
			}
		}
	}
	ts, _ := pf.Schema().Lookup("time")
	if lt := ts.Node.Type().LogicalType(); lt.String() != "TIMESTAMP(isAdjustedToUTC=true,unit=MILLIS)" {
		t.Errorf("time column logical type %v", lt)
	}
	if !ts.Node.Optional() {
		t.Error("time column is required")
	}
	// The file's checksum matches the manifest.
	data, err := os.ReadFile(filepath.Join(dir, segs[0].Path))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != segs[0].Bytes {
		t.Fatalf("%d bytes, manifest says %d", len(data), segs[0].Bytes)
	}
}

func TestDeadLetter(t *testing.T) {
	mem := checkedMem(t)
	dir := t.TempDir()
	o := opts(buffer.OS, mem)
	b := mustOpen(t, dir, o)
	appendN(t, b, mem, 0, 3, 10)
	ctx, cancel := contextDone()
	defer cancel()
	e, err := b.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The sink rejects the first batch for good: it goes to a dead-letter
	// segment and the forwarder acks past it.
	if err := b.DeadLetter(e.First, e.Rec, errors.New("400 bad request: schema mismatch")); err != nil {
		t.Fatal(err)
	}
	if err := b.Ack(e.Last()); err != nil {
		t.Fatal(err)
	}
	e.Rec.Release()
	wantContiguous(t, drain(t, b), 11, 10, 30)
	b.Close()
	b = mustOpen(t, dir, o)
	defer b.Close()
	dl := b.DeadLetters()
	if len(dl) != 1 || dl[0].First != 1 || dl[0].Last != 10 || dl[0].Rows != 10 || b.Status().DeadLetterRows != 10 {
		t.Fatalf("dead letters %+v", dl)
	}
	rows, _ := readRaw(t, filepath.Join(dir, dl[0].Path))
	if len(rows) != 10 {
		t.Fatalf("%d dead-letter rows", len(rows))
	}
	for i, r := range rows {
		checkRawRow(t, r, uint64(i+1))
		if r.Error == nil || *r.Error != "400 bad request: schema mismatch" {
			t.Fatalf("error column %v", r.Error)
		}
	}
}
