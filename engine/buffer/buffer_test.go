package buffer_test

import (
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
)

func TestAppendReadRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fsync buffer.FsyncPolicy
		seal  bool
		seg   int64
	}{
		{"always", buffer.FsyncAlways, false, 0},
		{"interval", buffer.FsyncInterval, false, 0},
		{"none", buffer.FsyncNone, false, 0},
		{"always sealed", buffer.FsyncAlways, true, 8 << 10},
		{"none sealed", buffer.FsyncNone, true, 8 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			fs := faultfs.New()
			o := opts(fs, mem)
			o.Fsync, o.SegmentBytes = tc.fsync, tc.seg
			o.FsyncInterval = time.Hour // the test never waits for it
			b := mustOpen(t, "/buf", o)
			next := appendN(t, b, mem, 0, 20, 100)
			if tc.fsync == buffer.FsyncInterval {
				// Readers see only durable rows; Close syncs.
				if got := drain(t, b); len(got) != 0 {
					t.Fatalf("read %d rows before the interval fsync", len(got))
				}
			} else {
				wantContiguous(t, drain(t, b), 1, 0, next)
			}
			if tc.seal {
				if err := b.Roll(); err != nil {
					t.Fatal(err)
				}
				if err := b.Seal(); err != nil {
					t.Fatal(err)
				}
				if len(b.Segments()) == 0 {
					t.Fatal("no segment after Seal")
				}
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			b = mustOpen(t, "/buf", o)
			defer b.Close()
			wantContiguous(t, drain(t, b), 1, 0, next)
			// Appends continue the sequence.
			rec := rows(mem, testSchema, next, 3)
			first, err := b.Append(rec)
			rec.Release()
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(next) + 1; first != want {
				t.Fatalf("first sequence after reopen %d, want %d", first, want)
			}
		})
	}
}
