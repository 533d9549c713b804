package engine_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

var errCrash = errors.New("crash")

// replaySource emits v = 0 .. n-1 in batches of batch rows, from the
// position it is resumed at. With crashAt > 0 it fails once it reaches
// crashAt (the process dies there); with stopAt > 0 it cancels the run
// there (a graceful stop).
type replaySource struct {
	mem     memory.Allocator
	n       int
	batch   int
	crashAt int
	stopAt  int
	stop    context.CancelFunc

	mu        sync.Mutex
	next      int
	committed []int
}

func (s *replaySource) Schema() *engine.Schema { return testSchema }

func (s *replaySource) Position() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return binary.BigEndian.AppendUint64(nil, uint64(s.next))
}

func (s *replaySource) ResumeAt(pos []byte) error {
	if len(pos) != 8 {
		return fmt.Errorf("position of %d bytes", len(pos))
	}
	s.mu.Lock()
	s.next = int(binary.BigEndian.Uint64(pos))
	s.mu.Unlock()
	return nil
}

func (s *replaySource) Committed(pos []byte) {
	s.mu.Lock()
	s.committed = append(s.committed, int(binary.BigEndian.Uint64(pos)))
	s.mu.Unlock()
}

func (s *replaySource) Run(ctx context.Context, emit engine.Emit) error {
	for {
		s.mu.Lock()
		v := s.next
		s.mu.Unlock()
		if v >= s.n || ctx.Err() != nil {
			return nil
		}
		if s.crashAt > 0 && v >= s.crashAt {
			return errCrash
		}
		if s.stopAt > 0 && v >= s.stopAt {
			s.stop()
			<-ctx.Done()
			return nil
		}
		var rows []enginetest.Row
		for ; len(rows) < s.batch && v < s.n; v++ {
			rows = append(rows, enginetest.Row{int64(v), float64(v)})
		}
		s.mu.Lock()
		s.next = v
		s.mu.Unlock()
		if err := emit(enginetest.Record(s.mem, testSchema, rows...), nil); err != nil {
			return err
		}
	}
}

// sumOp keeps a running sum and emits it at every tenth row and on Flush:
// its output depends on its state, not on the batches.
type sumOp struct {
	mem  memory.Allocator
	sum  float64
	rows int64
}

func (o *sumOp) Outputs() []engine.Port { return []engine.Port{{Schema: testSchema}} }

func (o *sumOp) Process(b engine.Batch, emit engine.PortEmit) error {
	defer b.Release()
	var out []enginetest.Row
	for _, r := range enginetest.Rows(b.Rec) {
		o.sum += r[1].(float64)
		o.rows++
		if o.rows%10 == 0 {
			out = append(out, enginetest.Row{r[0], o.sum})
		}
	}
	if len(out) == 0 {
		return nil
	}
	return emit(0, engine.Batch{Rec: enginetest.Record(o.mem, testSchema, out...)})
}

func (o *sumOp) Flush(emit engine.PortEmit) error {
	return emit(0, engine.Batch{Rec: enginetest.Record(o.mem, testSchema, enginetest.Row{int64(-1), o.sum})})
}

func (o *sumOp) Close() error { return nil }

func (o *sumOp) Snapshot() (*engine.State, error) {
	data := binary.BigEndian.AppendUint64(nil, uint64(o.rows))
	data = binary.BigEndian.AppendUint64(data, uint64(int64(o.sum)))
	return &engine.State{Kind: "sum", Version: 1, Data: data}, nil
}

func (o *sumOp) Restore(s *engine.State) error {
	if err := engine.CheckState(s, "sum", 1); err != nil {
		return err
	}
	o.rows = int64(binary.BigEndian.Uint64(s.Data))
	o.sum = float64(int64(binary.BigEndian.Uint64(s.Data[8:])))
	return nil
}

// durable is what a committing sink keeps across runs: every row written,
// and how many of them are committed (may leave).
type durable struct {
	mu        sync.Mutex
	rows      []enginetest.Row
	committed int
}

func (d *durable) delivered() []enginetest.Row {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.rows[:d.committed])
}

type commitSink struct {
	d *durable
	// failAt > 0 fails the write of that many rows and more (a disk
	// that breaks).
	failAt int
}

func (s *commitSink) Write(_ context.Context, b engine.Batch) error {
	defer b.Release()
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.failAt > 0 && len(s.d.rows)+int(b.Rec.NumRows()) >= s.failAt {
		return errCrash
	}
	s.d.rows = append(s.d.rows, enginetest.Rows(b.Rec)...)
	return nil
}

func (s *commitSink) Close(context.Context) error { return nil }

func (s *commitSink) Prepare(context.Context) ([]byte, error) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	return binary.BigEndian.AppendUint64(nil, uint64(len(s.d.rows))), nil
}

func (s *commitSink) Commit(mark []byte) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	m := int(binary.BigEndian.Uint64(mark))
	if m < s.d.committed || m > len(s.d.rows) {
		return fmt.Errorf("commit %d: committed %d, written %d", m, s.d.committed, len(s.d.rows))
	}
	s.d.committed = m
	return nil
}

func (s *commitSink) Rollback(mark []byte) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	m := int(binary.BigEndian.Uint64(mark))
	if m < s.d.committed || m > len(s.d.rows) {
		return fmt.Errorf("rollback to %d: committed %d, written %d", m, s.d.committed, len(s.d.rows))
	}
	s.d.rows = s.d.rows[:m]
	return nil
}

// memStore keeps the newest checkpoint.
type memStore struct {
	mu    sync.Mutex
	cp    *engine.Checkpoint
	saves int
}

func (s *memStore) Save(c *engine.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cp != nil && c.Epoch <= s.cp.Epoch {
		return fmt.Errorf("epoch %d after %d", c.Epoch, s.cp.Epoch)
	}
	s.cp = c
	s.saves++
	return nil
}

func (s *memStore) Load() (*engine.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cp, nil
}

// runSum runs source -> sumOp -> commitSink once, with checkpoints into st
// when st is not nil.
func runSum(t *testing.T, src *replaySource, d *durable, st engine.CheckpointStore, interval time.Duration) error {
	return runSumInto(t, src, &commitSink{d: d}, st, interval)
}

func runSumInto(t *testing.T, src *replaySource, sink *commitSink, st engine.CheckpointStore, interval time.Duration) error {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	src.mem = mem
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src.stop = cancel
	g := engine.NewGraph("sum", nil)
	s := g.AddSource("src", src, nil)
	o := g.AddOperator("sum", &sumOp{mem: mem}, nil)
	k := g.AddSink("out", sink, nil)
	if err := g.Connect(s, 0, o); err != nil {
		t.Fatal(err)
	}
	if err := g.Connect(o, 0, k); err != nil {
		t.Fatal(err)
	}
	if st != nil {
		if err := g.Checkpoints(engine.CheckpointOptions{Store: st, Interval: interval}); err != nil {
			t.Fatal(err)
		}
	}
	return g.Run(ctx)
}

// TestCheckpointCrashesDeliverTheUninterruptedOutput crashes a
// checkpointing pipeline at many points — its operator flushes and its
// sink writes what never gets committed — and recovers each time: the
// output that may leave equals, row for row, that of a run that never
// stopped, each row once.
func TestCheckpointCrashesDeliverTheUninterruptedOutput(t *testing.T) {
	const n = 20000
	ref := &durable{}
	if err := runSum(t, &replaySource{n: n, batch: 37}, ref, &memStore{}, time.Hour); err != nil {
		t.Fatal(err)
	}
	want := ref.delivered()
	if len(want) != n/10+1 {
		t.Fatalf("reference delivered %d rows, want %d", len(want), n/10+1)
	}

	d, st := &durable{}, &memStore{}
	for _, at := range []int{1, 500, 2000, 2001, 7777, 7778, 12345, 19950} {
		src := &replaySource{n: n, batch: 37, crashAt: at}
		err := runSum(t, src, d, st, 200*time.Microsecond)
		if !errors.Is(err, errCrash) {
			t.Fatalf("crash at %d: run returned %v", at, err)
		}
	}
	if err := runSum(t, &replaySource{n: n, batch: 37}, d, st, 200*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if got := d.delivered(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("delivered %d rows, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}

	// The sink's disk breaks: a write fails, the run fails.
	d, st = &durable{}, &memStore{}
	for _, rows := range []int{50, 51, 900, 1500, 1999} {
		src := &replaySource{n: n, batch: 37}
		if err := runSumInto(t, src, &commitSink{d: d, failAt: rows}, st, 200*time.Microsecond); !errors.Is(err, errCrash) {
			t.Fatalf("sink failing at row %d: run returned %v", rows, err)
		}
	}
	if err := runSum(t, &replaySource{n: n, batch: 37}, d, st, 200*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if got := d.delivered(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("after sink failures delivered %d rows, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	if st.saves < 10 {
		t.Fatalf("%d checkpoints saved; the test did not exercise recovery", st.saves)
	}
}

// TestCheckpointGracefulStopContinuesOpenState stops a checkpointing
// pipeline on a cancelled context several times: its operator is not
// flushed, its state goes into the last checkpoint, and the runs together
// deliver exactly the output of one run that never stopped.
func TestCheckpointGracefulStopContinuesOpenState(t *testing.T) {
	const n = 5000
	ref := &durable{}
	if err := runSum(t, &replaySource{n: n, batch: 10}, ref, nil, 0); err != nil {
		t.Fatal(err)
	}
	want := ref.delivered()
	if len(want) == 0 {
		// Without checkpoints the sink commits nothing: take all rows.
		want = ref.rows
	}

	d, st := &durable{}, &memStore{}
	for _, at := range []int{100, 101, 1000, 3333} {
		src := &replaySource{n: n, batch: 10, stopAt: at}
		if err := runSum(t, src, d, st, time.Hour); err != nil {
			t.Fatalf("stop at %d: %v", at, err)
		}
		if got := d.delivered(); len(got) == 0 || got[len(got)-1][0] == int64(-1) {
			t.Fatalf("stop at %d: the stopped run flushed its operator (%d rows delivered)", at, len(got))
		}
	}
	if err := runSum(t, &replaySource{n: n, batch: 10}, d, st, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := d.delivered(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("delivered %d rows, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
}

// TestCheckpointsNeedReplayableSources refuses checkpoints for a graph
// whose source cannot produce its input again.
func TestCheckpointsNeedReplayableSources(t *testing.T) {
	g := engine.NewGraph("p", nil)
	g.AddSource("live", &countSource{n: 1, batch: 1}, nil)
	err := g.Checkpoints(engine.CheckpointOptions{Store: &memStore{}})
	if err == nil || !strings.Contains(err.Error(), "live") {
		t.Fatalf("err = %v, want a refusal naming the source", err)
	}
}

func firstDiff(a, b []enginetest.Row) int {
	for i := range min(len(a), len(b)) {
		if !slices.Equal(a[i], b[i]) {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestCheckpointDiamondCrashes runs a fan-out and a merge — one source
// feeding two stateful steps whose outputs meet in one sink — through
// crashes: the cut must hold both branches at the same point, so the rows
// delivered are those of an uninterrupted run, each once (in another
// interleaving of the two branches).
func TestCheckpointDiamondCrashes(t *testing.T) {
	const n = 10000
	run := func(src *replaySource, d *durable, st engine.CheckpointStore) error {
		mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
		defer mem.AssertSize(t, 0)
		src.mem = mem
		g := engine.NewGraph("diamond", nil)
		s := g.AddSource("src", src, nil)
		a := g.AddOperator("a", &sumOp{mem: mem}, nil)
		b := g.AddOperator("b", &sumOp{mem: mem, sum: 1e9}, nil)
		k := g.AddSink("out", &commitSink{d: d}, nil)
		for _, c := range [][2]*engine.Node{{s, a}, {s, b}, {a, k}, {b, k}} {
			if err := g.Connect(c[0], 0, c[1]); err != nil {
				t.Fatal(err)
			}
		}
		if err := g.Checkpoints(engine.CheckpointOptions{Store: st, Interval: 300 * time.Microsecond}); err != nil {
			t.Fatal(err)
		}
		return g.Run(context.Background())
	}
	sorted := func(rows []enginetest.Row) []string {
		out := make([]string, len(rows))
		for i, r := range rows {
			out[i] = fmt.Sprint(r...)
		}
		slices.Sort(out)
		return out
	}
	ref := &durable{}
	if err := run(&replaySource{n: n, batch: 13}, ref, &memStore{}); err != nil {
		t.Fatal(err)
	}
	want := sorted(ref.delivered())
	d, st := &durable{}, &memStore{}
	for _, at := range []int{13, 2000, 2001, 5555, 9990} {
		if err := run(&replaySource{n: n, batch: 13, crashAt: at}, d, st); !errors.Is(err, errCrash) {
			t.Fatalf("crash at %d: %v", at, err)
		}
	}
	if err := run(&replaySource{n: n, batch: 13}, d, st); err != nil {
		t.Fatal(err)
	}
	if got := sorted(d.delivered()); !slices.Equal(got, want) {
		t.Fatalf("delivered %d rows, want %d", len(got), len(want))
	}
}

// failStore refuses every save.
type failStore struct{}

func (failStore) Save(*engine.Checkpoint) error     { return errCrash }
func (failStore) Load() (*engine.Checkpoint, error) { return nil, nil }

// TestCheckpointFirstSaveFails fails the first checkpoint, taken before
// anything runs: Run says why and leaves nothing running (goleak).
func TestCheckpointFirstSaveFails(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	g := engine.NewGraph("p", nil)
	s := g.AddSource("src", &replaySource{mem: mem, n: 10, batch: 1}, nil)
	o := g.AddOperator("sum", &sumOp{mem: mem}, nil)
	k := g.AddSink("out", &commitSink{d: &durable{}}, nil)
	if err := g.Connect(s, 0, o); err != nil {
		t.Fatal(err)
	}
	if err := g.Connect(o, 0, k); err != nil {
		t.Fatal(err)
	}
	if err := g.Checkpoints(engine.CheckpointOptions{Store: failStore{}}); err != nil {
		t.Fatal(err)
	}
	if err := g.Run(context.Background()); !errors.Is(err, errCrash) {
		t.Fatalf("Run = %v, want the save's error", err)
	}
}
