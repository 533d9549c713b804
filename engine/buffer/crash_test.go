package buffer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
)

// crashRun is what one run of the crash workload observed before the
// crash.
type crashRun struct {
	acked     map[int64]uint64 // id -> sequence, for appends that returned nil
	attempted map[int64]bool   // ids of every append attempted
	delivered map[uint64]bool  // sequences handed out by Next
	cursor    uint64           // highest Ack that returned nil
	ops       int
	injected  []string
}

// crashWorkload appends, seals, reads, acks and dead-letters on fs,
// tolerating every error, and returns what it observed. The buffer is not
// closed before the crash snapshot is taken (kill -9).
func crashWorkload(t *testing.T, fs *faultfs.FS, o buffer.Options, recs []arrow.RecordBatch) (crashRun, *buffer.Buffer) {
	run := crashRun{acked: map[int64]uint64{}, attempted: map[int64]bool{}, delivered: map[uint64]bool{}}
	b, err := buffer.Open("/buf", o)
	if err != nil {
		return run, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	id := int64(0)
	for k, rec := range recs {
		n := int(rec.NumRows())
		first, err := b.Append(rec)
		for i := range int64(n) {
			run.attempted[id+i] = true
			if err == nil {
				run.acked[id+i] = first + uint64(i)
			}
		}
		id += int64(n)
		switch k {
		case 4, 9, 13, 16:
			_ = b.Seal()
		case 6, 14:
			// Forward what is there and ack part of it, so that
			// segments stay partly delivered.
			var seqs []uint64
			for {
				e, err := b.Next(ctx)
				if err != nil {
					break
				}
				for i := range e.Rec.NumRows() {
					run.delivered[e.First+uint64(i)] = true
					seqs = append(seqs, e.First+uint64(i))
				}
				e.Rec.Release()
			}
			if len(seqs) > 0 {
				last := seqs[len(seqs)/3]
				if b.Ack(last) == nil {
					run.cursor = last
				}
				b.Rewind()
			}
		case 7:
			_ = b.Roll()
		case 11:
			// A dead letter does not disturb the data.
			_ = b.DeadLetter(1, recs[0], errors.New("rejected"))
		}
	}
	return run, b
}

func TestCrashAtEveryOperation(t *testing.T) {
	for _, tc := range []struct {
		mode   faultfs.CrashMode
		sticky bool
		fsync  buffer.FsyncPolicy
	}{
		{faultfs.PowerLoss, false, buffer.FsyncAlways},
		{faultfs.PowerLoss, true, buffer.FsyncAlways},
		{faultfs.TornWrites, false, buffer.FsyncAlways},
		{faultfs.TornWrites, true, buffer.FsyncAlways},
		{faultfs.ProcessCrash, false, buffer.FsyncAlways},
		{faultfs.ProcessCrash, true, buffer.FsyncNone},
	} {
		t.Run(fmt.Sprintf("%s/sticky=%v/fsync=%s", tc.mode, tc.sticky, tc.fsync), func(t *testing.T) {
			t.Parallel()
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			o := opts(nil, mem)
			o.Fsync = tc.fsync
			o.SegmentBytes = 12 << 10
			// The workload's batches, built once: ids run on across them.
			var recs []arrow.RecordBatch
			for k, id := 0, int64(0); k < 18; k++ {
				n := 20 + k%3*15
				recs = append(recs, rows(mem, testSchema, id, n))
				id += int64(n)
			}
			defer func() {
				for _, r := range recs {
					r.Release()
				}
				mem.AssertSize(t, 0)
			}()
			// A clean run counts the operations.
			clean := faultfs.New()
			o.FS = clean
			_, b := crashWorkload(t, clean, o, recs)
			total := clean.Ops()
			b.Close()
			if total < 60 {
				t.Fatalf("workload did only %d operations", total)
			}
			for i := 0; i <= total; i++ {
				fs := faultfs.New()
				fs.FailAt(i, tc.sticky)
				o.FS = fs
				run, b := crashWorkload(t, fs, o, recs)
				run.injected = fs.Injected()
				crashed := fs.Crash(tc.mode)
				if b != nil {
					b.Close()
				}
				checkRecovery(t, i, crashed, o, mem, run)
			}
		})
	}
}

// checkRecovery reopens a crashed buffer and checks the at-least-once
// rules of docs/format/buffer.md section 12.
func checkRecovery(t *testing.T, i int, fs *faultfs.FS, o buffer.Options, mem memory.Allocator, run crashRun) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("fail at op %d %v: %s\nfiles:\n%s", i, run.injected, fmt.Sprintf(format, args...), fs)
	}
	var corrupt []*buffer.CorruptionError
	o.FS = fs
	o.OnCorruption = func(e *buffer.CorruptionError) { corrupt = append(corrupt, e) }
	b, err := buffer.Open("/buf", o)
	if err != nil {
		fail("reopen: %v", err)
	}
	defer b.Close()
	if len(corrupt) > 0 {
		fail("corruption reported after a crash: %v", corrupt[0])
	}
	cursor := b.Cursor()
	if cursor < run.cursor {
		fail("cursor %d after reopen, acked %d", cursor, run.cursor)
	}
	if cursor > 0 && !run.delivered[cursor] {
		fail("cursor %d was never delivered", cursor)
	}
	got := drain(t, b)
	bySeq := map[uint64]int64{}
	seenID := map[int64]bool{}
	var prev uint64
	for _, r := range got {
		if r.seq <= prev || r.seq <= cursor {
			fail("sequence %d read after %d (cursor %d)", r.seq, prev, cursor)
		}
		prev = r.seq
		if seenID[r.id] {
			fail("id %d read twice", r.id)
		}
		if !run.attempted[r.id] {
			fail("id %d was never appended", r.id)
		}
		seenID[r.id] = true
		bySeq[r.seq] = r.id
	}
	for id, seq := range run.acked {
		if seq <= cursor {
			if !run.delivered[seq] {
				fail("acked id %d (seq %d) is below the cursor %d but was never delivered", id, seq, cursor)
			}
			continue
		}
		if got, ok := bySeq[seq]; !ok || got != id {
			fail("acked id %d lost: sequence %d holds id %d (present %v)", id, seq, got, ok)
		}
	}
	// The reopened buffer takes appends with fresh sequences.
	rec := rows(mem, testSchema, 1_000_000, 5)
	first, err := b.Append(rec)
	rec.Release()
	if err != nil {
		fail("append after reopen: %v", err)
	}
	if first <= prev || first <= cursor {
		fail("sequence %d reused after reopen (last read %d, cursor %d)", first, prev, cursor)
	}
	if err := b.Seal(); err != nil && !errors.Is(err, buffer.ErrClosed) {
		fail("seal after reopen: %v", err)
	}
}
