package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// fullStore is a memStore whose disk can be full: while full is set every
// save fails with ENOSPC.
type fullStore struct {
	memStore
	full atomic.Bool
}

func (s *fullStore) Save(c *engine.Checkpoint) error {
	if s.full.Load() {
		return fmt.Errorf("write checkpoint %d: %w", c.Epoch, syscall.ENOSPC)
	}
	return s.memStore.Save(c)
}

// fillingSource is a replaySource that fills the store's disk once it has
// emitted fillAt rows and then waits until filled is closed (the
// checkpoints have failed enough); with crash set it then dies instead of
// going on.
type fillingSource struct {
	*replaySource
	st     *fullStore
	fillAt int
	filled chan struct{}
	crash  bool
}

func (s *fillingSource) Run(ctx context.Context, emit engine.Emit) error {
	done := false
	return s.replaySource.Run(ctx, func(rec arrow.RecordBatch, ack *engine.Ack) error {
		if err := emit(rec, ack); err != nil {
			return err
		}
		if s.Next() < s.fillAt || done {
			return nil
		}
		done = true
		s.st.full.Store(true)
		select {
		case <-s.filled:
		case <-ctx.Done():
			return ctx.Err()
		}
		if s.crash {
			return errCrash
		}
		return nil
	})
}

// Next is the first row the source has not emitted.
func (s *replaySource) Next() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// failureLog records what the graph looked like at every failed checkpoint.
type failureLog struct {
	mu sync.Mutex
	// next and delivered are the source's next row and the rows allowed to
	// leave the sink at each failure; committed, how many positions the
	// source had been told were committed.
	next, delivered, committed []int
	errs                       []error
}

// runFilling runs fillingSource -> sumOp -> commitSink with a checkpoint
// every millisecond, sources held after holdAfter failed ones. onFailure
// is called with the number of failures so far.
func runFilling(t *testing.T, ctx context.Context, src *fillingSource, d *durable, holdAfter int, fl *failureLog, onFailure func(n int)) error {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	src.mem = mem
	g := engine.NewGraph("sum", nil)
	s := g.AddSource("src", src, nil)
	o := g.AddOperator("sum", &sumOp{mem: mem}, nil)
	k := g.AddSink("out", &commitSink{d: d}, nil)
	if err := g.Connect(s, 0, o); err != nil {
		t.Fatal(err)
	}
	if err := g.Connect(o, 0, k); err != nil {
		t.Fatal(err)
	}
	err := g.Checkpoints(engine.CheckpointOptions{
		Store: src.st, Interval: time.Millisecond, RetryMax: 4 * time.Millisecond, HoldAfter: holdAfter,
		OnFailure: func(err error) {
			fl.mu.Lock()
			fl.errs = append(fl.errs, err)
			fl.next = append(fl.next, src.Next())
			fl.delivered = append(fl.delivered, len(d.delivered()))
			src.mu.Lock()
			fl.committed = append(fl.committed, len(src.committed))
			src.mu.Unlock()
			n := len(fl.errs)
			fl.mu.Unlock()
			onFailure(n)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return g.Run(ctx)
}

// TestCheckpointFailuresKeepTheGraphRunning fills the checkpoints' disk
// while a pipeline runs: every failed checkpoint is reported (ENOSPC), the
// graph goes on without committing anything (no output allowed to leave,
// no source told its input may be forgotten), after HoldAfter failures in
// a row the source is held (it emits nothing between two failures), and
// once space returns a checkpoint succeeds, the source goes on and the
// output is exactly that of a run whose disk never filled.
func TestCheckpointFailuresKeepTheGraphRunning(t *testing.T) {
	const n, holdAfter = 20000, 3
	want := fullDiskReference(t, n)

	st := &fullStore{}
	src := &fillingSource{replaySource: &replaySource{n: n, batch: 37}, st: st, fillAt: 5000, filled: make(chan struct{})}
	d, fl := &durable{}, &failureLog{}
	err := runFilling(t, context.Background(), src, d, holdAfter, fl, func(n int) {
		switch n {
		case holdAfter:
			close(src.filled)
		case holdAfter + 3:
			st.full.Store(false)
		}
	})
	if err != nil {
		t.Fatalf("Run = %v, want the run to survive the full disk", err)
	}
	if len(fl.errs) != holdAfter+3 {
		t.Fatalf("%d failures reported, want %d", len(fl.errs), holdAfter+3)
	}
	for i, err := range fl.errs {
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("failure %d: %v, want ENOSPC", i, err)
		}
		if fl.delivered[i] != fl.delivered[0] || fl.committed[i] != fl.committed[0] {
			t.Fatalf("failure %d: %d rows may leave and %d positions committed, at the first failure %d and %d: a failed checkpoint committed something",
				i, fl.delivered[i], fl.committed[i], fl.delivered[0], fl.committed[0])
		}
	}
	// From the failure after the one that held the source on, the
	// source stands still.
	for i := holdAfter; i < len(fl.next); i++ {
		if fl.next[i] != fl.next[holdAfter] {
			t.Fatalf("source at row %d at failure %d and at %d at failure %d: not held", fl.next[holdAfter], holdAfter+1, fl.next[i], i+1)
		}
	}
	if fl.next[holdAfter] >= n {
		t.Fatalf("source at its end (%d) while held", fl.next[holdAfter])
	}
	assertDelivered(t, d, want)
}

// TestCheckpointFailuresThenCrash fills the checkpoints' disk, lets
// checkpoints fail until the source is held, and crashes the pipeline
// then (the sink keeps what it wrote, uncommitted): the next run, on a disk
// with room again, recovers from the last good checkpoint and the output
// is exactly that of a run whose disk never filled, each row once.
func TestCheckpointFailuresThenCrash(t *testing.T) {
	const n, holdAfter = 20000, 3
	want := fullDiskReference(t, n)

	st := &fullStore{}
	d := &durable{}
	for _, at := range []int{3000, 11111} {
		src := &fillingSource{replaySource: &replaySource{n: n, batch: 37}, st: st, fillAt: at, filled: make(chan struct{}), crash: true}
		fl := &failureLog{}
		err := runFilling(t, context.Background(), src, d, holdAfter, fl, func(n int) {
			if n == holdAfter {
				close(src.filled)
			}
		})
		if !errors.Is(err, errCrash) {
			t.Fatalf("crash after filling at %d: Run = %v", at, err)
		}
		if len(fl.errs) < holdAfter {
			t.Fatalf("%d failures before the crash", len(fl.errs))
		}
		d.mu.Lock()
		written, committed := len(d.rows), d.committed
		d.mu.Unlock()
		if written <= committed {
			t.Fatalf("the sink wrote nothing after its last commit (%d rows): the crash tests nothing", committed)
		}
		st.full.Store(false)
	}
	if err := runSum(t, &replaySource{n: n, batch: 37}, d, st, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	assertDelivered(t, d, want)
}

// TestCheckpointFailuresGracefulStop stops a pipeline gracefully while its
// source is held for failed checkpoints: the source is let go so that it
// sees the stop, the run ends, and as the last checkpoint fails too the
// run says so; the next run, with room again, recovers the last good
// checkpoint and the output is that of a run whose disk never filled.
func TestCheckpointFailuresGracefulStop(t *testing.T) {
	const n, holdAfter = 20000, 3
	want := fullDiskReference(t, n)

	st := &fullStore{}
	d := &durable{}
	src := &fillingSource{replaySource: &replaySource{n: n, batch: 37}, st: st, fillAt: 4000, filled: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := runFilling(t, ctx, src, d, holdAfter, &failureLog{}, func(n int) {
		switch n {
		case holdAfter:
			close(src.filled)
		case holdAfter + 2:
			cancel()
		}
	})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Run = %v, want the last checkpoint's ENOSPC", err)
	}
	if next := src.Next(); next >= n {
		t.Fatalf("the source reached its end (%d) although held and stopped", next)
	}
	st.full.Store(false)
	if err := runSum(t, &replaySource{n: n, batch: 37}, d, st, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	assertDelivered(t, d, want)
}

// fullDiskReference returns the output of a run of n rows whose disk
// never fills, which the runs of a full disk must deliver.
func fullDiskReference(t *testing.T, n int) []enginetest.Row {
	t.Helper()
	ref := &durable{}
	if err := runSum(t, &replaySource{n: n, batch: 37}, ref, &memStore{}, time.Hour); err != nil {
		t.Fatal(err)
	}
	return ref.delivered()
}

// assertDelivered fails the test unless d delivered exactly want.
func assertDelivered(t *testing.T, d *durable, want []enginetest.Row) {
	t.Helper()
	if got := d.delivered(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("delivered %d rows, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
}
