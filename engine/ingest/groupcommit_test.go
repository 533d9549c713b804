package ingest_test

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/disk"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/ingest"
)

// gatedFS is a faultfs.FS whose file syncs can be held (they wait until
// let) or made to fail.
type gatedFS struct {
	*faultfs.FS

	mu      sync.Mutex
	release chan struct{} // syncs wait while not nil
	fail    error
}

func (g *gatedFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return gatedFile{f, g}, nil
}

// hold makes file syncs wait until let.
func (g *gatedFS) hold() {
	g.mu.Lock()
	g.release = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedFS) let() {
	g.mu.Lock()
	close(g.release)
	g.release = nil
	g.mu.Unlock()
}

// failSyncs makes every later file sync fail with err.
func (g *gatedFS) failSyncs(err error) {
	g.mu.Lock()
	g.fail = err
	g.mu.Unlock()
}

type gatedFile struct {
	disk.File
	g *gatedFS
}

func (f gatedFile) Sync() error {
	f.g.mu.Lock()
	r, err := f.g.release, f.g.fail
	f.g.mu.Unlock()
	if r != nil {
		<-r
	}
	if err != nil {
		return err
	}
	return f.File.Sync()
}

// startRun runs s in the background; the channel receives Run's error.
func startRun(s *ingest.Source, k *sink) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), k.emit) }()
	return done
}

// TestAckOnlyOnceDurable: under fsync always a record goes into the graph
// before its fsync, but the wrapped source's Ack completes only once the
// log is durable up to it: a power loss after the emits and before the
// sync loses rows of which none was acknowledged; once the sync is done
// every record is acknowledged and survives a power loss.
func TestAckOnlyOnceDurable(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	g := &gatedFS{FS: faultfs.New()}
	f := &fake{mem: mem, batches: crashBatches()[:4]}
	s := wrap(t, f, "/log", ingest.Options{Mem: mem,
		Buffer: buffer.Options{FS: g, ManualSeal: true}})
	defer s.Close()
	g.hold()
	k := &sink{t: t, src: s}
	done := startRun(s, k)
	within(t, "every record is emitted", func() bool { return len(k.ids()) == 28 })
	if got := ackedIDs(f); len(got) != 0 {
		t.Errorf("acknowledged before the log was synced: %v", got)
	}
	if got := replayAll(t, g.Crash(faultfs.PowerLoss), mem); len(got) != 0 {
		t.Errorf("a power loss before the sync kept %v", got)
	}
	g.let()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := ackedIDs(f); !slices.Equal(got, seq(0, 28)) {
		t.Errorf("acknowledged after the sync: %v", got)
	}
	if got := replayAll(t, g.Crash(faultfs.PowerLoss), mem); !slices.Equal(got, seq(0, 28)) {
		t.Errorf("a power loss after the sync kept %v", got)
	}
}

// TestSyncMakesPositionDurable: Sync, which the engine calls before it
// saves a checkpoint, makes every row up to the source's position durable
// whatever the fsync policy: a power loss right after it keeps them all.
func TestSyncMakesPositionDurable(t *testing.T) {
	for _, fsync := range []buffer.FsyncPolicy{buffer.FsyncInterval, buffer.FsyncNone} {
		t.Run(fsync.String(), func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			fs := faultfs.New()
			s := wrap(t, &fake{mem: mem, batches: crashBatches()}, "/log", ingest.Options{Mem: mem,
				Buffer: buffer.Options{FS: fs, Fsync: fsync, FsyncInterval: 1 << 62, ManualSeal: true}})
			defer s.Close()
			run(t, s)
			pos, err := ingest.ParsePosition(s.Position())
			if err != nil || pos != 84 {
				t.Fatalf("position %d (%v), want 84", pos, err)
			}
			// Without the sync a power loss takes rows the position names.
			if got := replayAll(t, fs.Crash(faultfs.PowerLoss), mem); len(got) >= 84 {
				t.Fatalf("the log was durable before Sync (%d rows): the test proves nothing", len(got))
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := replayAll(t, fs.Crash(faultfs.PowerLoss), mem); !slices.Equal(got, seq(0, 84)) {
				t.Errorf("a power loss after Sync kept %v, want rows up to the position", got)
			}
		})
	}
}

// TestUnsyncedRecordsBounded: while the log's fsync does not complete, at
// most MaxUnsynced records are logged and emitted; the next one waits
// (counted in ingest_sync_waits) before it is logged, and goes on once the
// sync is done.
func TestUnsyncedRecordsBounded(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	const bound = 3
	g := &gatedFS{FS: faultfs.New()}
	f := &fake{mem: mem, batches: crashBatches()}
	ctr := engine.NewCounters()
	s := wrap(t, f, "/log", ingest.Options{Mem: mem, Counters: ctr, MaxUnsynced: bound,
		Buffer: buffer.Options{FS: g, ManualSeal: true}})
	defer s.Close()
	g.hold()
	k := &sink{t: t, src: s}
	done := startRun(s, k)
	waits := ctr.Counter("ingest_sync_waits")
	within(t, "the source waits for the sync", func() bool { return waits.Load() > 0 })
	// The source is held before logging its next record.
	if got := len(k.ids()); got != bound*7 {
		t.Errorf("%d rows emitted while the sync is held, want %d", got, bound*7)
	}
	if got := s.Buffer().NextSeq() - 1; got != bound*7 {
		t.Errorf("%d rows logged while the sync is held, want %d", got, bound*7)
	}
	if got := ackedIDs(f); len(got) != 0 {
		t.Errorf("acknowledged before the sync: %v", got)
	}
	g.let()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := k.ids(); !slices.Equal(got, seq(0, 84)) {
		t.Errorf("emitted %v", got)
	}
	if got := ackedIDs(f); !slices.Equal(got, seq(0, 84)) {
		t.Errorf("acknowledged %v", got)
	}
}

// TestSyncFailureStopsUnacknowledged: a failed fsync of the log stops the
// run with its error, and no record after it is acknowledged.
func TestSyncFailureStopsUnacknowledged(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	g := &gatedFS{FS: faultfs.New()}
	errSync := errors.New("sync failed")
	f := &fake{mem: mem, batches: crashBatches()}
	f.before = func(k int) {
		if k == 2 {
			g.failSyncs(errSync)
		}
	}
	k := &sink{t: t}
	k.check = func(rows []enginetest.Row, _ *engine.Ack) {
		if ids(rows)[0] == 0 {
			// Batch 0 is acknowledged before batch 1 is read.
			within(t, "batch 0 is acknowledged", func() bool { return f.ackedBatches()[0] })
		}
	}
	s := wrap(t, f, "/log", ingest.Options{Mem: mem,
		Buffer: buffer.Options{FS: g, ManualSeal: true}})
	defer s.Close()
	k.src = s
	err := s.Run(context.Background(), k.emit)
	if !errors.Is(err, buffer.ErrFailed) {
		t.Fatalf("Run returned %v, want the failed sync's error", err)
	}
	acked := ackedIDs(f)
	if !slices.Equal(acked, seq(0, 7)) && !slices.Equal(acked, seq(0, 14)) {
		t.Errorf("acknowledged %v, want batch 0 (and batch 1 if synced before the failure) only", acked)
	}
	if err := s.Sync(); !errors.Is(err, buffer.ErrFailed) {
		t.Errorf("Sync after the failure returned %v", err)
	}
}
