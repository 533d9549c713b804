package engine_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
)

// syncingSource is a replaySource whose positions become durable only by
// Sync (a source behind an ingest log that emits before its fsync).
type syncingSource struct {
	*replaySource
	// err, when set, fails every Sync after the first (the checkpoint
	// taken before the run).
	err error

	mu      sync.Mutex
	durable uint64 // the position at the last Sync
	syncs   int
}

func (s *syncingSource) Sync() error {
	p := binary.BigEndian.Uint64(s.Position())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil && s.syncs > 0 {
		return s.err
	}
	s.durable = max(s.durable, p)
	s.syncs++
	return nil
}

// syncCheckStore refuses a checkpoint naming a position of src beyond
// what src has made durable.
type syncCheckStore struct {
	memStore
	src *syncingSource
}

func (s *syncCheckStore) Save(c *engine.Checkpoint) error {
	p := binary.BigEndian.Uint64(c.Sources["src"])
	s.src.mu.Lock()
	durable := s.src.durable
	s.src.mu.Unlock()
	if p > durable {
		return fmt.Errorf("epoch %d names position %d, durable only up to %d", c.Epoch, p, durable)
	}
	return s.memStore.Save(c)
}

// TestCheckpointSyncsSourcesBeforeSave: the engine calls Sync of every
// source implementing engine.Syncer before it saves a checkpoint, so that
// no saved checkpoint names a position the source could lose; a failing
// Sync fails the checkpoint, which is not saved (the periodic ones are
// tried again), and the last one, at the end of the input, fails the run.
func TestCheckpointSyncsSourcesBeforeSave(t *testing.T) {
	errSync := errors.New("sync failed")
	for _, tc := range []struct {
		name string
		err  error
	}{{"synced", nil}, {"sync fails", errSync}} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			src := &syncingSource{replaySource: &replaySource{mem: mem, n: 2000, batch: 10}, err: tc.err}
			st := &syncCheckStore{src: src}
			g := engine.NewGraph("sync", nil)
			s := g.AddSource("src", src, nil)
			o := g.AddOperator("sum", &sumOp{mem: mem}, nil)
			k := g.AddSink("out", &commitSink{d: &durable{}}, nil)
			if err := g.Connect(s, 0, o); err != nil {
				t.Fatal(err)
			}
			if err := g.Connect(o, 0, k); err != nil {
				t.Fatal(err)
			}
			// The sources are never held after failed checkpoints
			// (HoldAfter < 0): held, a source whose every Sync fails
			// would never reach the end of its input, and whether it
			// did before the fifth failure depended on the machine's
			// speed (TestCheckpointFailuresKeepTheGraphRunning covers
			// the hold).
			if err := g.Checkpoints(engine.CheckpointOptions{Store: st, Interval: time.Millisecond, HoldAfter: -1}); err != nil {
				t.Fatal(err)
			}
			err := g.Run(context.Background())
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Run returned %v, want the sync's error", err)
				}
				if st.saves != 1 {
					t.Errorf("%d checkpoints saved, want only the one before the failing sync", st.saves)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.saves < 2 || src.syncs < st.saves {
				t.Errorf("%d checkpoints saved, %d syncs", st.saves, src.syncs)
			}
			if got := binary.BigEndian.Uint64(st.cp.Sources["src"]); got != 2000 {
				t.Errorf("the last checkpoint names position %d, want 2000", got)
			}
		})
	}
}
