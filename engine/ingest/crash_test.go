package ingest_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
	"github.com/sluice-edge/sluice/engine/ingest"
)

// crashBatches is the input of the crash tests: 12 batches of 7 rows.
func crashBatches() [][]int {
	return batchesOf(12, 7)
}

// ackedIDs returns the ids of the batches the wrapped source saw
// acknowledged.
func ackedIDs(f *fake) []int {
	var out []int
	for k, a := range f.ackedBatches() {
		if a {
			out = append(out, f.batches[k]...)
		}
	}
	return out
}

// replayAll reopens the log on fs and replays it from the start.
func replayAll(t *testing.T, fs *faultfs.FS, mem memory.Allocator) []int {
	t.Helper()
	s, err := ingest.Wrap(&fake{mem: mem}, ingest.Options{Dir: "/log", Mem: mem, Log: quiet(),
		Buffer: buffer.Options{FS: fs, ManualSeal: true}})
	if err != nil {
		t.Fatalf("reopen after the crash: %v", err)
	}
	defer s.Close()
	if err := s.ResumeAt([]byte("0")); err != nil {
		t.Fatal(err)
	}
	return run(t, s).ids()
}

// TestPowerLossReplaysDurableRows: after a power loss the log replays
// exactly the rows that were durable: under fsync always every row whose
// input was acknowledged, under fsync interval the rows synced before the
// crash (here: sealed), and never a row twice or out of order.
func TestPowerLossReplaysDurableRows(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fsync buffer.FsyncPolicy
		// sealAfter makes the rows of the first batches durable by
		// sealing them (fsync interval, whose background sync never runs
		// here).
		sealAfter int
		want      []int
	}{
		{"always", buffer.FsyncAlways, 0, seq(0, 84)},
		{"interval", buffer.FsyncInterval, 5, seq(0, 35)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			fs := faultfs.New()
			f := &fake{mem: mem, batches: crashBatches()}
			s := wrap(t, f, "/log", ingest.Options{Mem: mem,
				Buffer: buffer.Options{FS: fs, Fsync: tc.fsync, FsyncInterval: 1 << 62, ManualSeal: true}})
			if tc.sealAfter > 0 {
				f.before = func(k int) {
					if k == tc.sealAfter {
						if err := s.Buffer().Roll(); err != nil {
							t.Error(err)
						}
						if err := s.Buffer().Seal(); err != nil {
							t.Error(err)
						}
					}
				}
			}
			if got := run(t, s).ids(); !slices.Equal(got, seq(0, 84)) {
				t.Fatalf("first run emitted %v", got)
			}
			crashed := fs.Crash(faultfs.PowerLoss)
			s.Close() // the process is gone; only the crashed disk counts
			if got := replayAll(t, crashed, mem); !slices.Equal(got, tc.want) {
				t.Errorf("replayed %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCrashAtEveryOperation: a failure injected at any file operation of
// a run, then a power loss: the reopened log replays every row whose input
// was acknowledged, in order, each once, and only rows the source emitted;
// a failed sync stops the run and acknowledges nothing after it.
func TestCrashAtEveryOperation(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	o := func(fs *faultfs.FS) ingest.Options {
		return ingest.Options{Dir: "/log", Mem: mem, Log: quiet(),
			Buffer: buffer.Options{FS: fs, ManualSeal: true, SegmentBytes: 2 << 10}}
	}
	clean := faultfs.New()
	s, err := ingest.Wrap(&fake{mem: mem, batches: crashBatches()}, o(clean))
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	total := clean.Ops()
	s.Close()
	for _, sticky := range []bool{false, true} {
		t.Run(fmt.Sprintf("sticky=%v", sticky), func(t *testing.T) {
			partial := 0 // runs cut short after some rows were acknowledged
			defer func() {
				if partial == 0 {
					t.Errorf("no injected failure (of %d operations) cut a run short", total)
				}
			}()
			for i := 0; i <= total; i++ {
				fs := faultfs.New()
				fs.FailAt(i, sticky)
				f := &fake{mem: mem, batches: crashBatches()}
				s, err := ingest.Wrap(f, o(fs))
				if err != nil {
					continue // failed to open: nothing was acknowledged
				}
				k := &sink{t: t, src: s}
				_ = s.Run(context.Background(), k.emit) // fails at the injected operation
				acked := ackedIDs(f)
				if len(acked) > 0 && len(acked) < 84 {
					partial++
				}
				// Acknowledged in order, and only what was emitted; a
				// record is emitted before its fsync, so the failed
				// sync's records were emitted but not acknowledged.
				emitted := k.ids()
				if len(emitted) < len(acked) || !slices.Equal(emitted[:len(acked)], acked) {
					t.Fatalf("op %d: emitted %v, acknowledged %v", i, emitted, acked)
				}
				crashed := fs.Crash(faultfs.PowerLoss)
				s.Close()
				got := replayAll(t, crashed, mem)
				if len(got) < len(acked) || !slices.Equal(got[:len(acked)], acked) {
					t.Fatalf("op %d %v: replayed %v, acknowledged %v", i, fs.Injected(), got, acked)
				}
				// Beyond the acknowledged rows, rows of the batches whose
				// sync or append failed may have reached the disk (not
				// all of them: a failed sync of one WAL file does not stop
				// that of the next), each once and in order.
				prev := len(acked) - 1
				for _, id := range got[len(acked):] {
					if id <= prev {
						t.Fatalf("op %d: replayed %v after the acknowledged rows", i, got[len(acked):])
					}
					prev = id
				}
			}
		})
	}
}

// BenchmarkLogAndEmit measures the wrapper's cost per row: append to the
// log, emit, acknowledge once durable per the policy (under fsync always
// the run ends once the last batch is synced and acknowledged, and with
// max_unsynced=1 each batch waits for its own fsync); batches of 100 rows.
func BenchmarkLogAndEmit(b *testing.B) {
	for _, tc := range []struct {
		name        string
		fsync       buffer.FsyncPolicy
		maxUnsynced int
	}{
		{"fsync=always", buffer.FsyncAlways, 0},
		// Every batch waits for the fsync of the one before: one fsync
		// per batch.
		{"fsync=always,max_unsynced=1", buffer.FsyncAlways, 1},
		{"fsync=interval", buffer.FsyncInterval, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const rows = 100
			rec := record(memory.DefaultAllocator, seq(0, rows)...)
			defer rec.Release()
			src := &benchSource{rec: rec, n: b.N}
			s, err := ingest.Wrap(src, ingest.Options{Dir: b.TempDir(), Log: quiet(), MaxUnsynced: tc.maxUnsynced,
				Buffer: buffer.Options{Fsync: tc.fsync}})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ReportAllocs()
			b.ResetTimer()
			err = s.Run(context.Background(), func(r arrow.RecordBatch, _ *engine.Ack) error {
				r.Release()
				return nil
			})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}

// benchSource emits the same record n times.
type benchSource struct {
	rec arrow.RecordBatch
	n   int
}

func (s *benchSource) Schema() *engine.Schema { return testSchema }

func (s *benchSource) Run(ctx context.Context, emit engine.Emit) error {
	for range s.n {
		s.rec.Retain()
		if err := emit(s.rec, engine.NewAck(nil)); err != nil {
			return err
		}
	}
	return nil
}
