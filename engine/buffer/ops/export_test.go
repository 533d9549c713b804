package ops_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/ops"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// appendRows appends rows from..from+n-1 of one turbine, a second apart.
func appendRows(t testing.TB, b *buffer.Buffer, from, n int) {
	t.Helper()
	rows := make([]enginetest.Row, n)
	for i := range rows {
		rows[i] = enginetest.Row{time.UnixMilli(1700000000000 + int64(from+i)*1000), "T1", float64(from + i)}
	}
	rec := enginetest.Record(memory.DefaultAllocator, schema, rows...)
	defer rec.Release()
	if _, err := b.Append(rec); err != nil {
		t.Fatal(err)
	}
}

var schema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "asset", Type: engine.String},
	{Name: "value", Type: engine.Float64},
}, "time", "asset")

// TestExportSelectsWholeMessages exports from and to sequences that fall
// inside messages (of 100 rows): the export must start and end where those
// messages do, so that a replay cuts the same messages, with the same IDs,
// as the engine. It used to seek to the first sequence and start the
// export mid-message.
func TestExportSelectsWholeMessages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "buf")
	b, err := buffer.Open(dir, buffer.Options{Schema: schema, MessageRows: 100, Edge: "site", Stream: "p.cloud"})
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, b, 0, 1000)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                string
		from, to            uint64
		since               time.Time
		wantFirst, wantLast uint64
	}{
		{"from inside a message", 150, 0, time.Time{}, 101, 1000},
		{"from and to inside messages", 150, 420, time.Time{}, 101, 500},
		{"from at a message start", 201, 300, time.Time{}, 201, 300},
		{"since inside a message", 0, 0, time.UnixMilli(1700000000000 + 649*1000), 601, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := ops.Export(context.Background(), dir, t.TempDir(), ops.ExportOptions{FromSeq: tc.from, ToSeq: tc.to, Since: tc.since})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Files) == 0 {
				t.Fatal("nothing exported")
			}
			first, last := rep.Files[0].First, rep.Files[len(rep.Files)-1].Last
			if first != tc.wantFirst || last != tc.wantLast || rep.Rows != int64(last-first+1) {
				t.Fatalf("exported %d-%d (%d rows), want the whole messages %d-%d", first, last, rep.Rows, tc.wantFirst, tc.wantLast)
			}
		})
	}
}

// snapshot returns every file under dir with its bytes.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExportChangesNothing exports a buffer whose WAL file ends in a torn
// record (what a read-write open would truncate): every file of the
// buffer is byte for byte the same afterwards (docs/operations.md: export
// opens the buffer read-only).
func TestExportChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "buf")
	b, err := buffer.Open(dir, buffer.Options{Schema: schema, MessageRows: 100, Edge: "site", Stream: "p.cloud", ManualSeal: true, IdleSeal: -1})
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, b, 0, 500)
	if err := b.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := b.Seal(); err != nil {
		t.Fatal(err)
	}
	appendRows(t, b, 500, 300)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wals, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if len(wals) == 0 {
		t.Fatal("no WAL file")
	}
	data, err := os.ReadFile(wals[len(wals)-1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wals[len(wals)-1], append(data, data[32:32+80]...), 0o644); err != nil {
		t.Fatal(err) // a record header and the start of its payload
	}
	before := snapshot(t, dir)
	rep, err := ops.Export(context.Background(), dir, t.TempDir(), ops.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows != 800 {
		t.Fatalf("exported %d rows, want 800", rep.Rows)
	}
	after := snapshot(t, dir)
	if len(after) != len(before) {
		t.Fatalf("files before %d, after %d", len(before), len(after))
	}
	for name, b := range before {
		if after[name] != b {
			t.Fatalf("%s changed", name)
		}
	}
}
