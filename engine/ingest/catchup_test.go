package ingest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/ingest"
)

// TestLiveInputAcceptedDuringReplay recovers with a log to replay into a
// pipeline that takes the replayed rows slowly: the wrapped source starts
// at once, its input is logged and acknowledged before the replay is
// through (a broker's queue for the subscriber does not fill up), and the
// pipeline still receives every row once, in log order — the replayed
// rows first, then the new ones.
func TestLiveInputAcceptedDuringReplay(t *testing.T) {
	for _, fsync := range []buffer.FsyncPolicy{buffer.FsyncAlways, buffer.FsyncInterval, buffer.FsyncNone} {
		t.Run(fsync.String(), func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			dir := t.TempDir()
			opts := ingest.Options{Mem: mem, Buffer: buffer.Options{Fsync: fsync}}
			first := wrap(t, &fake{mem: mem, batches: [][]int{{0, 1, 2}, {3, 4}, {5, 6, 7}}}, dir, opts)
			run(t, first)
			first.Close()

			live := &fake{mem: mem, batches: [][]int{{8, 9}, {10}, {11, 12, 13}}}
			s := wrap(t, live, dir, opts)
			defer s.Close()
			if err := s.ResumeAt([]byte("0")); err != nil {
				t.Fatal(err)
			}
			// The pipeline takes its first (replayed) record only once every
			// live batch has been acknowledged.
			k := &sink{t: t, src: s}
			gate := true
			k.check = func(rows []enginetest.Row, _ *engine.Ack) {
				if !gate {
					return
				}
				gate = false
				deadline := time.Now().Add(waitFor)
				for !slices.Equal(live.ackedBatches(), []bool{true, true, true}) {
					if time.Now().After(deadline) {
						t.Errorf("live input not acknowledged while the replay waits: %v", live.ackedBatches())
						return
					}
					time.Sleep(time.Millisecond)
				}
			}
			if err := s.Run(t.Context(), k.emit); err != nil {
				t.Fatal(err)
			}
			if got := k.ids(); !slices.Equal(got, seq(0, 14)) {
				t.Fatalf("the pipeline received %v, want 0..13 in order", got)
			}
			if got := string(s.Position()); got != "14" {
				t.Fatalf("position %q, want 14", got)
			}
		})
	}
}

// TestSyncAfterClose: a relay closes its source when the source returns,
// before the graph's last checkpoint syncs it; Sync then reports the
// log durable (Close made it so) instead of failing the checkpoint on a
// closed log.
func TestSyncAfterClose(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	for _, fsync := range []buffer.FsyncPolicy{buffer.FsyncAlways, buffer.FsyncNone} {
		s := wrap(t, &fake{mem: mem, batches: [][]int{{0, 1}}}, t.TempDir(), ingest.Options{Mem: mem, Buffer: buffer.Options{Fsync: fsync}})
		run(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			t.Fatalf("%s: Sync after Close: %v", fsync, err)
		}
	}
}
