package buffer_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
)

// heldOpts returns options of a held buffer on fs that count corruption
// reports into *corrupt.
func heldOpts(fs buffer.FS, mem memory.Allocator, corrupt *[]*buffer.CorruptionError) buffer.Options {
	o := opts(fs, mem)
	o.Held = true
	o.OnCorruption = func(e *buffer.CorruptionError) { *corrupt = append(*corrupt, e) }
	return o
}

// mustSync is the Prepare of a held sink: everything durable, the last
// sequence as the mark.
func mustSync(t testing.TB, b *buffer.Buffer) uint64 {
	t.Helper()
	last, err := b.Sync()
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return last
}

func TestHeldRowsInvisibleUntilCommit(t *testing.T) {
	mem := checkedMem(t)
	var corrupt []*buffer.CorruptionError
	b := mustOpen(t, "/buf", heldOpts(faultfs.New(), mem, &corrupt))
	defer b.Close()
	id := appendN(t, b, mem, 0, 2, 10) // rows 1-20
	mark := mustSync(t, b)
	appendN(t, b, mem, id, 1, 10) // rows 21-30
	if rs := drain(t, b); len(rs) != 0 {
		t.Fatalf("read %d uncommitted rows", len(rs))
	}
	if mark != 20 {
		t.Fatalf("mark %d, want 20", mark)
	}
	for _, bad := range []uint64{15, 31} { // inside a record, past the end
		if err := b.Commit(bad); !errors.Is(err, buffer.ErrMark) {
			t.Fatalf("Commit(%d): %v, want ErrMark", bad, err)
		}
	}
	if err := b.Commit(mark); err != nil {
		t.Fatal(err)
	}
	wantContiguous(t, drain(t, b), 1, 0, 20)
	if err := b.Commit(10); err != nil || b.Committed() != 20 { // monotone
		t.Fatalf("Commit below: %v, committed %d", err, b.Committed())
	}
	if err := b.Commit(30); err != nil {
		t.Fatal(err)
	}
	wantContiguous(t, drain(t, b), 21, 20, 30)
	if len(corrupt) > 0 {
		t.Fatalf("corruption: %v", corrupt[0])
	}
}

func TestRollbackRefused(t *testing.T) {
	mem := checkedMem(t)
	var corrupt []*buffer.CorruptionError
	b := mustOpen(t, "/buf", heldOpts(faultfs.New(), mem, &corrupt))
	defer b.Close()
	appendN(t, b, mem, 0, 3, 10) // rows 1-30
	if err := b.Commit(20); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		seq  uint64
		want string
	}{
		{10, "committed"},
		{25, "inside the record"},
		{31, "past the last stored row"},
	} {
		err := b.Rollback(tc.seq)
		if !errors.Is(err, buffer.ErrMark) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Rollback(%d): %v, want ErrMark saying %q", tc.seq, err, tc.want)
		}
	}
	if got := b.NextSeq(); got != 31 {
		t.Fatalf("a refused rollback changed the buffer: next %d", got)
	}
	plain := mustOpen(t, "/plain", opts(faultfs.New(), mem))
	defer plain.Close()
	if err := plain.Rollback(0); !errors.Is(err, buffer.ErrMark) {
		t.Fatalf("Rollback on a buffer not held: %v", err)
	}
}

// TestRollbackReusesSequences checks that the rows after a rollback get
// the sequences they get in a run that never wrote the rolled-back epoch.
func TestRollbackReusesSequences(t *testing.T) {
	mem := checkedMem(t)
	var corrupt []*buffer.CorruptionError
	b := mustOpen(t, "/buf", heldOpts(faultfs.New(), mem, &corrupt))
	defer b.Close()
	id := appendN(t, b, mem, 0, 3, 7)
	mark := mustSync(t, b)
	if err := b.Commit(mark); err != nil {
		t.Fatal(err)
	}
	appendN(t, b, mem, 1000, 4, 5) // the epoch that never completes
	if err := b.Rollback(mark); err != nil {
		t.Fatal(err)
	}
	if err := b.Rollback(mark); err != nil { // again: nothing to do
		t.Fatal(err)
	}
	rec := rows(mem, testSchema, id, 9)
	first, err := b.Append(rec)
	rec.Release()
	if err != nil || first != mark+1 {
		t.Fatalf("Append after Rollback: first %d (%v), want %d", first, err, mark+1)
	}
	if err := b.Commit(mustSync(t, b)); err != nil {
		t.Fatal(err)
	}
	got := drain(t, b)

	// The same input without the rolled-back epoch.
	ref := mustOpen(t, "/ref", heldOpts(faultfs.New(), mem, &corrupt))
	defer ref.Close()
	appendN(t, ref, mem, 0, 3, 7)
	appendN(t, ref, mem, id, 1, 9)
	if err := ref.Commit(mustSync(t, ref)); err != nil {
		t.Fatal(err)
	}
	want := drain(t, ref)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after rollback read %v\nwithout the epoch %v", got, want)
	}
	wantContiguous(t, got, 1, 0, id+9)
	if len(corrupt) > 0 {
		t.Fatalf("corruption: %v", corrupt[0])
	}
}

// TestRollbackAfterCrash crashes a held buffer in the middle of an epoch
// (kill -9, power loss, torn writes), reopens the directory, rolls back to
// the last mark and appends again: the rows follow the mark, nothing is
// reported as corrupt, and a second crash right after keeps the result.
// The epoch spans several WAL files, so the rollback removes files and
// cuts one.
func TestRollbackAfterCrash(t *testing.T) {
	for _, mode := range []faultfs.CrashMode{faultfs.ProcessCrash, faultfs.PowerLoss, faultfs.TornWrites} {
		for _, fsync := range []buffer.FsyncPolicy{buffer.FsyncAlways, buffer.FsyncInterval, buffer.FsyncNone} {
			t.Run(fmt.Sprintf("%s/%s", mode, fsync), func(t *testing.T) {
				mem := checkedMem(t)
				var corrupt []*buffer.CorruptionError
				fs := faultfs.New()
				o := heldOpts(fs, mem, &corrupt)
				o.Fsync, o.SegmentBytes = fsync, 4<<10
				b := mustOpen(t, "/buf", o)
				id := appendN(t, b, mem, 0, 5, 10)
				mark := mustSync(t, b)
				if err := b.Commit(mark); err != nil {
					t.Fatal(err)
				}
				appendN(t, b, mem, 1000, 12, 10) // several WAL files
				if st := b.Status(); st.WALFiles < 3 {
					t.Fatalf("the epoch spans %d WAL files; want more", st.WALFiles)
				}
				crashed := fs.Crash(mode)
				b.Close()

				o.FS = crashed
				b = mustOpen(t, "/buf", o)
				if err := b.Rollback(mark); err != nil {
					t.Fatalf("Rollback after the crash: %v", err)
				}
				if err := b.Commit(mark); err != nil {
					t.Fatal(err)
				}
				next := appendN(t, b, mem, id, 3, 10)
				mark2 := mustSync(t, b)
				if mark2 != mark+30 {
					t.Fatalf("mark after the rewrite %d, want %d", mark2, mark+30)
				}
				again := crashed.Crash(faultfs.PowerLoss)
				b.Close()

				o.FS = again
				b = mustOpen(t, "/buf", o)
				defer b.Close()
				if err := b.Rollback(mark2); err != nil {
					t.Fatal(err)
				}
				if err := b.Commit(mark2); err != nil {
					t.Fatal(err)
				}
				wantContiguous(t, drain(t, b), 1, 0, next)
				if len(corrupt) > 0 {
					t.Fatalf("corruption reported: %v", corrupt[0])
				}
			})
		}
	}
}

// TestRollbackInterrupted fails every file operation of a rollback in
// turn, loses power there, reopens and rolls back again: the result is
// always the rolled-back buffer, with no corruption reported.
func TestRollbackInterrupted(t *testing.T) {
	mem := checkedMem(t)
	for i := 0; ; i++ {
		var corrupt []*buffer.CorruptionError
		fs := faultfs.New()
		o := heldOpts(fs, mem, &corrupt)
		o.SegmentBytes = 4 << 10
		b := mustOpen(t, "/buf", o)
		id := appendN(t, b, mem, 0, 5, 10)
		mark := mustSync(t, b)
		if err := b.Commit(mark); err != nil {
			t.Fatal(err)
		}
		appendN(t, b, mem, 1000, 12, 10)
		b.Close()
		b = mustOpen(t, "/buf", o)
		fs.FailAt(i, true)
		err := b.Rollback(mark)
		crashed := fs.Crash(faultfs.PowerLoss)
		b.Close()

		o.FS = crashed
		b = mustOpen(t, "/buf", o)
		if err := b.Rollback(mark); err != nil {
			t.Fatalf("fail at op %d: Rollback after the crash: %v", i, err)
		}
		if err := b.Commit(mark); err != nil {
			t.Fatal(err)
		}
		next := appendN(t, b, mem, id, 2, 10)
		if err := b.Commit(mustSync(t, b)); err != nil {
			t.Fatal(err)
		}
		wantContiguous(t, drain(t, b), 1, 0, next)
		b.Close()
		if len(corrupt) > 0 {
			t.Fatalf("fail at op %d: corruption reported: %v", i, corrupt[0])
		}
		if err == nil {
			if i < 3 {
				t.Fatalf("the rollback did only %d operations", i)
			}
			return
		}
	}
}

// TestHeldSealsOnlyCommitted checks that no uncommitted row is ever
// written into a Parquet segment.
func TestHeldSealsOnlyCommitted(t *testing.T) {
	mem := checkedMem(t)
	var corrupt []*buffer.CorruptionError
	fs := faultfs.New()
	o := heldOpts(fs, mem, &corrupt)
	o.SegmentBytes = 4 << 10
	b := mustOpen(t, "/buf", o)
	defer b.Close()
	id := appendN(t, b, mem, 0, 8, 10)
	mark := mustSync(t, b)
	appendN(t, b, mem, id, 8, 10)
	if err := b.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := b.Seal(); err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st.Segments != 0 {
		t.Fatalf("%d segments sealed before any commit", st.Segments)
	}
	if err := b.Commit(mark); err != nil {
		t.Fatal(err)
	}
	if err := b.Seal(); err != nil {
		t.Fatal(err)
	}
	segs := 0
	for _, n := range fs.Names() {
		var first, last uint64
		if _, err := fmt.Sscanf(n, "/buf/seg/%d-%d.parquet", &first, &last); err != nil {
			continue
		}
		segs++
		if last > mark {
			t.Fatalf("segment %s holds rows after the committed %d", n, mark)
		}
	}
	if segs == 0 {
		t.Fatal("nothing sealed after the commit")
	}
	// A rollback to the mark keeps every sealed row.
	if err := b.Rollback(mark); err != nil {
		t.Fatal(err)
	}
	wantContiguous(t, drain(t, b), 1, 0, id)
}

// TestHeldQuota checks the quota of a held buffer: rows of the open epoch
// are never dropped, an append that only a commit could make room for is
// admitted over the quota (no deadlock behind a checkpoint barrier), and
// once rows are committed the policy applies to them again.
func TestHeldQuota(t *testing.T) {
	for _, policy := range []buffer.Policy{buffer.RejectNew, buffer.DropOldest} {
		t.Run(policy.String(), func(t *testing.T) {
			mem := checkedMem(t)
			var corrupt []*buffer.CorruptionError
			var drops []buffer.Drop
			o := heldOpts(faultfs.New(), mem, &corrupt)
			o.SegmentBytes, o.MaxBytes, o.Policy = 4<<10, 8<<10, policy
			o.OnDrop = func(d buffer.Drop) { drops = append(drops, d) }
			b := mustOpen(t, "/buf", o)
			defer b.Close()
			// One open epoch of three times the quota: admitted, nothing
			// dropped.
			id := appendN(t, b, mem, 0, 30, 10)
			if used, limit := b.Status().QuotaUsed, int64(8<<10); used <= limit {
				t.Fatalf("used %d of %d: the epoch should exceed the quota", used, limit)
			}
			if len(drops) > 0 {
				t.Fatalf("uncommitted rows dropped: %v", drops[0])
			}
			mark := mustSync(t, b)
			if err := b.Commit(mark); err != nil {
				t.Fatal(err)
			}
			rec := rows(mem, testSchema, id, 10)
			defer rec.Release()
			_, err := b.Append(rec)
			switch policy {
			case buffer.RejectNew:
				// Committed rows wait for delivery: the forwarder frees
				// space, so the append waits.
				if !errors.Is(err, buffer.ErrFull) {
					t.Fatalf("Append with committed rows to deliver: %v, want ErrFull", err)
				}
				rs := drain(t, b)
				if err := b.Ack(rs[len(rs)-1].seq); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Append(rec); err != nil {
					t.Fatalf("Append once the committed rows left: %v", err)
				}
			case buffer.DropOldest:
				// Committed rolled files are evicted; the rows of the open
				// epoch never are.
				if err != nil {
					t.Fatal(err)
				}
				if len(drops) == 0 {
					t.Fatal("nothing committed was evicted")
				}
				for _, d := range drops {
					if d.Last > mark {
						t.Fatalf("dropped rows %d-%d past the committed %d", d.First, d.Last, mark)
					}
				}
			}
			if len(corrupt) > 0 {
				t.Fatalf("corruption: %v", corrupt[0])
			}
		})
	}
}
