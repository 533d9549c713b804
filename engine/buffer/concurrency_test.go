package buffer_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
)

// TestConcurrentUse runs appenders, a forwarder that reads and acks, and
// background sealing at once: every row arrives exactly once, in sequence
// order, and delivered files are reclaimed.
func TestConcurrentUse(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	o := opts(fs, mem)
	o.ManualSeal = false
	o.SegmentBytes = 16 << 10
	b := mustOpen(t, "/buf", o)
	defer b.Close()
	const appenders, batches, n = 4, 40, 25
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range batches {
				rec := rows(mem, testSchema, int64((a*batches+k)*n), n)
				_, err := b.Append(rec)
				rec.Release()
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	seen := map[int64]bool{}
	var last uint64
	for len(seen) < appenders*batches*n {
		e, err := b.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range idsOf(t, e.Rec) {
			seq := e.First + uint64(i)
			if seq != last+1 || seen[id] {
				t.Fatalf("sequence %d after %d, id %d seen before: %v", seq, last, id, seen[id])
			}
			seen[id], last = true, seq
		}
		e.Rec.Release()
		if err := b.Ack(last); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := b.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := b.Seal(); err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st.BacklogRows != 0 || st.Segments != 0 || st.WALFiles != 1 {
		t.Fatalf("after delivering everything: %+v", st)
	}
}

func TestAppendAfterFailedWrite(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	o := opts(fs, mem)
	b := mustOpen(t, "/buf", o)
	appendN(t, b, mem, 0, 2, 10)
	// The disk is full for one write: the partial record is cut off and
	// the next append lands right after the last good one.
	fs.FailAt(0, false)
	rec := rows(mem, testSchema, 20, 10)
	if _, err := b.Append(rec); !errors.Is(err, faultfs.ErrInjected) {
		t.Fatalf("Append on a full disk: %v", err)
	}
	rec.Release()
	appendN(t, b, mem, 30, 1, 10)
	want := append(seqIDs(1, 0, 20), seqIDs(21, 30, 10)...)
	if got := drain(t, b); len(got) != len(want) || got[20] != want[20] {
		t.Fatalf("read %v", got)
	}
	b.Close()
	var corrupt []*buffer.CorruptionError
	o.OnCorruption = func(e *buffer.CorruptionError) { corrupt = append(corrupt, e) }
	b = mustOpen(t, "/buf", o)
	defer b.Close()
	if got := drain(t, b); len(corrupt) != 0 || len(got) != 30 || got[29] != (read{30, 39}) {
		t.Fatalf("after reopen: %v, corruption %v", got, corrupt)
	}
}

func TestFailedFsyncStopsAppends(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	o := opts(fs, mem)
	b := mustOpen(t, "/buf", o)
	appendN(t, b, mem, 0, 1, 10)
	fs.FailAt(1, false) // the write succeeds, its fsync fails
	rec := rows(mem, testSchema, 10, 10)
	defer rec.Release()
	if _, err := b.Append(rec); !errors.Is(err, buffer.ErrFailed) {
		t.Fatalf("Append with a failing fsync: %v", err)
	}
	// What is on disk is unknown: no retry, no further appends.
	if _, err := b.Append(rec); !errors.Is(err, buffer.ErrFailed) {
		t.Fatalf("Append after a failed fsync: %v", err)
	}
	if st := b.Status(); st.Failed == "" {
		t.Fatal("status does not show the failure")
	}
	b.Close()
	b = mustOpen(t, "/buf", o)
	defer b.Close()
	// The record whose fsync failed may or may not be there (here it is:
	// the file system kept it).
	if got := drain(t, b); len(got) != 20 {
		t.Fatalf("read %d rows after reopen", len(got))
	}
	if _, err := b.Append(rec); err != nil {
		t.Fatalf("Append after reopen: %v", err)
	}
}

// TestConcurrentSharedQuota appends to two buffers sharing a drop_oldest
// quota while they seal in the background: the budget holds, nothing
// deadlocks, and every drop is reported.
func TestConcurrentSharedQuota(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	q := buffer.NewQuota(96<<10, buffer.DropOldest, nil)
	var drops dropLog
	var bufs []*buffer.Buffer
	for _, dir := range []string{"/a", "/b"} {
		o := opts(fs, mem)
		o.ManualSeal, o.SegmentBytes, o.Quota, o.OnDrop = false, 12<<10, q, drops.add
		b := mustOpen(t, dir, o)
		defer b.Close()
		bufs = append(bufs, b)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		b := bufs[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 60 {
				rec := rows(mem, testSchema, int64(k*20), 20)
				_, err := b.Append(rec)
				rec.Release()
				if err != nil && !errors.Is(err, buffer.ErrFull) {
					t.Error(err)
					return
				}
				// WAL file headers (32 bytes each) are not reserved.
				if used := q.Used(); used > q.Max()+2*32 {
					t.Errorf("quota used %d > %d", used, q.Max())
					return
				}
			}
		}()
	}
	wg.Wait()
	var dropped int64
	for _, b := range bufs {
		dropped += b.Status().DroppedRows
	}
	var reported int64
	for _, d := range drops.drops {
		reported += d.Rows
	}
	if dropped == 0 || dropped != reported {
		t.Fatalf("dropped %d rows, reported %d", dropped, reported)
	}
}
