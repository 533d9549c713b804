package buffer_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
)

// TestFullDiskHealsItself fills the file system under a buffer with no
// quota: appends fail with ErrNoSpace and store nothing; the buffer
// reopens on the full disk (it used to fail rewriting its manifest),
// delivers and acknowledges its backlog without new space, and frees the
// space itself, after which appends work again.
func TestFullDiskHealsItself(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		name := "backlog in the WAL"
		if sealed {
			name = "backlog sealed"
		}
		t.Run(name, func(t *testing.T) {
			mem := checkedMem(t)
			fs := faultfs.New()
			o := opts(fs, mem)
			o.SegmentBytes = 32 << 10
			b := mustOpen(t, "/buf", o)
			id := appendN(t, b, mem, 0, 10, 50)
			if sealed {
				_ = b.Roll()
				if err := b.Seal(); err != nil {
					t.Fatal(err)
				}
			}
			fs.SetCapacity(fs.Used() + 20<<10)
			var err error
			for err == nil {
				rec := rows(mem, testSchema, id, 50)
				next := b.NextSeq()
				_, err = b.Append(rec)
				rec.Release()
				if err == nil {
					id += 50
				} else if b.NextSeq() != next {
					t.Fatalf("a failed append took sequences %d-%d", next, b.NextSeq()-1)
				}
			}
			if !errors.Is(err, buffer.ErrNoSpace) {
				t.Fatalf("append on a full disk: %v, want ErrNoSpace", err)
			}
			stored := b.NextSeq() - 1
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			// Reopen on the still-full disk.
			b = mustOpen(t, "/buf", o)
			defer b.Close()
			got := drain(t, b)
			wantContiguous(t, got, 1, 0, int64(stored))
			if err := b.Ack(stored); err != nil {
				t.Fatalf("ack on a full disk: %v", err)
			}
			full := fs.Used()
			// The sink rolls on a failed append: the delivered active file
			// is emptied in place.
			if err := b.Roll(); err != nil {
				t.Fatalf("roll on a full disk: %v", err)
			}
			if fs.Used() >= full {
				t.Fatalf("delivery freed nothing: %d bytes used, %d before", fs.Used(), full)
			}
			appendN(t, b, mem, id, 5, 50)
			rs := drain(t, b)
			wantContiguous(t, rs, stored+1, id, id+250)
		})
	}
}

// TestResetActiveCrash crashes at every step of emptying a delivered active
// WAL file in place (what a full disk relies on). A crash there used to be
// reported as a WAL file cut below its synced extent; nothing was lost, and
// nothing may be reported, and no sequence is handed out again.
func TestResetActiveCrash(t *testing.T) {
	for _, mode := range []faultfs.CrashMode{faultfs.ProcessCrash, faultfs.PowerLoss} {
		for i := 0; i < 12; i++ {
			mem := checkedMem(t)
			fs := faultfs.New()
			o := opts(fs, mem)
			b := mustOpen(t, "/buf", o)
			appendN(t, b, mem, 0, 3, 10)
			drain(t, b)
			if err := b.Ack(30); err != nil {
				t.Fatal(err)
			}
			fs.FailAt(i, true)
			_ = b.Roll()
			crashed := fs.Crash(mode)
			b.Close()
			var corrupt []*buffer.CorruptionError
			o.FS = crashed
			o.OnCorruption = func(e *buffer.CorruptionError) { corrupt = append(corrupt, e) }
			b = mustOpen(t, "/buf", o)
			if len(corrupt) > 0 {
				t.Fatalf("%s, failing at operation %d of the reset: %v", mode, i, corrupt[0])
			}
			rec := rows(mem, testSchema, 100, 5)
			first, err := b.Append(rec)
			rec.Release()
			if err != nil || first <= 30 {
				t.Fatalf("%s, failing at operation %d: append got %d, %v", mode, i, first, err)
			}
			b.Close()
		}
	}
}

// TestIdentityChangeOnFullDisk reopens a delivered buffer under a new
// identity while the disk is full, so its meta file cannot be rewritten.
// Rows appended once space returns must carry the identity the meta file
// records: the buffer used to switch identity in memory only, so a later
// reader (export, a restart) published those rows under the old identity,
// other message IDs. Now the first append records the identity first.
func TestIdentityChangeOnFullDisk(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	o := opts(fs, mem)
	o.Edge, o.Stream = "edge-1", "stream-1"
	b := mustOpen(t, "/buf", o)
	appendN(t, b, mem, 0, 2, 10)
	drain(t, b)
	if err := b.Ack(20); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	fs.SetCapacity(fs.Used())
	o.Edge = "edge-2"
	b = mustOpen(t, "/buf", o)
	// Opening removed the delivered WAL file: the append may find room
	// (then it records the identity first) or not (then it stores nothing).
	rec := rows(mem, testSchema, 100, 10)
	_, err := b.Append(rec)
	rec.Release()
	if err != nil {
		if !errors.Is(err, buffer.ErrNoSpace) {
			t.Fatalf("append on the full disk: %v, want ErrNoSpace", err)
		}
		fs.SetCapacity(0)
		appendN(t, b, mem, 100, 1, 10)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ro := opts(fs, mem)
	ro.ReadOnly = true
	r := mustOpen(t, "/buf", ro)
	defer r.Close()
	if edge, stream := r.Identity(); edge != "edge-2" || stream != "stream-1" {
		t.Fatalf("the rows appended after the change read back under %s/%s, want edge-2/stream-1", edge, stream)
	}
	wantContiguous(t, drain(t, r), 21, 100, 110)
}

// TestIdentityAndSchemaKeptForUndeliveredRows: rows keep the identity they
// were stored under when the configuration names another while they wait;
// the new identity applies once they are delivered. A buffer holding
// undelivered rows of another schema does not open — with its meta file,
// and without it (the schema is then read from the WAL).
func TestIdentityAndSchemaKeptForUndeliveredRows(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	o := opts(fs, mem)
	o.Edge, o.Stream = "edge-1", "stream-1"
	b := mustOpen(t, "/buf", o)
	appendN(t, b, mem, 0, 2, 10)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	o.Edge = "edge-2"
	b = mustOpen(t, "/buf", o)
	if edge, _ := b.Identity(); edge != "edge-1" {
		t.Fatalf("undelivered rows under %s, want the identity they were stored under", edge)
	}
	other := o
	other.Schema = engine.MustSchema(append(slices.Clone(testSchema.Fields), engine.Field{Name: "extra", Type: engine.Float64}), "time", "asset")
	drain(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := buffer.Open("/buf", other); err == nil || !strings.Contains(err.Error(), "undelivered rows of schema") {
		t.Fatalf("open with another schema: %v, want a refusal", err)
	}
	if err := fs.Remove("/buf/" + disk.MetaName); err != nil {
		t.Fatal(err)
	}
	if _, err := buffer.Open("/buf", other); err == nil || !strings.Contains(err.Error(), "undelivered rows of schema") {
		t.Fatalf("open with another schema and no meta file: %v, want a refusal", err)
	}
	b = mustOpen(t, "/buf", o)
	drain(t, b)
	if err := b.Ack(20); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = mustOpen(t, "/buf", o)
	defer b.Close()
	if edge, _ := b.Identity(); edge != "edge-2" {
		t.Fatalf("a delivered buffer opened under %s, want the configured edge-2", edge)
	}
}
