package buffer_test

import (
	"context"
	"errors"
	"io/fs"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

func TestCursorDurableAcrossReopen(t *testing.T) {
	for _, tc := range []struct {
		name string
		seal bool
		ack  uint64
	}{
		{"wal, record boundary", false, 20},
		{"wal, inside a record", false, 25},
		{"segments, inside a segment", true, 25},
		{"everything", true, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			fs := faultfs.New()
			o := opts(fs, mem)
			b := mustOpen(t, "/buf", o)
			appendN(t, b, mem, 0, 4, 10)
			if tc.seal {
				b.Roll()
				if err := b.Seal(); err != nil {
					t.Fatal(err)
				}
			}
			wantContiguous(t, drain(t, b), 1, 0, 40)
			if err := b.Ack(tc.ack); err != nil {
				t.Fatal(err)
			}
			// Crash without Close: the cursor was made durable by Ack.
			crashed := fs.Crash(faultfs.PowerLoss)
			b.Close()
			o.FS = crashed
			b = mustOpen(t, "/buf", o)
			defer b.Close()
			if c := b.Cursor(); c != tc.ack {
				t.Fatalf("cursor %d after reopen, want %d", c, tc.ack)
			}
			wantContiguous(t, drain(t, b), tc.ack+1, int64(tc.ack), 40)
			if st := b.Status(); st.BacklogRows != int64(40-tc.ack) {
				t.Fatalf("backlog %d rows, want %d", st.BacklogRows, 40-tc.ack)
			}
		})
	}
}

func TestReclaimAfterAck(t *testing.T) {
	mem := checkedMem(t)
	fs := faultfs.New()
	o := opts(fs, mem)
	b := mustOpen(t, "/buf", o)
	defer b.Close()
	id := int64(0)
	for range 3 {
		id = appendN(t, b, mem, id, 2, 10)
		b.Roll()
	}
	if err := b.Seal(); err != nil {
		t.Fatal(err)
	}
	id = appendN(t, b, mem, id, 1, 10) // stays in the WAL
	segs := b.Segments()
	if len(segs) != 3 {
		t.Fatalf("%d segments", len(segs))
	}
	used := b.Status().QuotaUsed
	drain(t, b)
	for i, ack := range []uint64{15, 20, 60} {
		if err := b.Ack(ack); err != nil {
			t.Fatal(err)
		}
		st := b.Status()
		wantSegs := []int{3, 2, 0}[i]
		if st.Segments != wantSegs || st.BacklogRows != int64(70-ack) {
			t.Fatalf("after ack %d: %d segments, backlog %d", ack, st.Segments, st.BacklogRows)
		}
		if st.QuotaUsed >= used && wantSegs < 3 {
			t.Fatalf("after ack %d: %d bytes used, was %d", ack, st.QuotaUsed, used)
		}
		used = st.QuotaUsed
	}
	for _, s := range segs {
		if _, err := fs.ReadFile("/buf/" + s.Path); err == nil {
			t.Fatalf("%s not deleted", s.Path)
		}
	}
	// A rolled WAL file whose rows are all delivered is removed without
	// being sealed.
	b.Roll()
	drain(t, b)
	if err := b.Ack(70); err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st.WALFiles != 1 || st.Segments != 0 || st.BacklogRows != 0 {
		t.Fatalf("status %+v", st)
	}
	if err := b.Ack(71); err == nil {
		t.Fatal("ack beyond the last appended row accepted")
	}
}

func TestNextWaitsForDurableRows(t *testing.T) {
	mem := checkedMem(t)
	b := mustOpen(t, "/buf", opts(faultfs.New(), mem))
	got := make(chan buffer.Entry)
	go func() {
		e, err := b.Next(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- e
	}()
	appendN(t, b, mem, 0, 1, 5)
	e := <-got
	if e.First != 1 || e.Rec.NumRows() != 5 || e.Sealed {
		t.Fatalf("entry %+v", e)
	}
	e.Rec.Release()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := b.Next(ctx)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", err)
	}
	go func() {
		_, err := b.Next(context.Background())
		errc <- err
	}()
	b.Close()
	if err := <-errc; !errors.Is(err, buffer.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

func TestRewind(t *testing.T) {
	mem := checkedMem(t)
	b := mustOpen(t, "/buf", opts(faultfs.New(), mem))
	defer b.Close()
	appendN(t, b, mem, 0, 3, 10)
	drain(t, b)
	if err := b.Ack(12); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, b); len(got) != 0 {
		t.Fatalf("read %d rows twice", len(got))
	}
	b.Rewind()
	wantContiguous(t, drain(t, b), 13, 12, 30)
}

func TestAppendRejectsOtherSchemas(t *testing.T) {
	mem := checkedMem(t)
	b := mustOpen(t, "/buf", opts(faultfs.New(), mem))
	defer b.Close()
	rec := enginetest.Record(mem, engine.AlertSchema, enginetest.Row{int64(1), "a", "x", "r", "minor", "t", "c", 1.0, nil, nil, "raised"})
	defer rec.Release()
	if _, err := b.Append(rec); !errors.Is(err, buffer.ErrSchema) {
		t.Fatalf("Append of another schema: %v", err)
	}
	empty := enginetest.Record(mem, testSchema)
	defer empty.Release()
	if first, err := b.Append(empty); first != 0 || err != nil {
		t.Fatalf("Append of no rows: %d, %v", first, err)
	}
	if _, err := buffer.Open("/other", buffer.Options{FS: faultfs.New()}); err == nil {
		t.Fatal("Open without a schema succeeded")
	}
	bad := engine.MustSchema([]engine.Field{{Name: "_seq", Type: engine.Int64}}, "", "")
	if _, err := buffer.Open("/other", buffer.Options{Schema: bad, FS: faultfs.New()}); err == nil {
		t.Fatal("Open with a reserved column name succeeded")
	}
}

// gateFS blocks the first WAL fsync until released.
type gateFS struct {
	*faultfs.FS
	armed   atomic.Bool
	once    sync.Once
	entered chan struct{}
	release chan struct{}
	syncs   atomic.Int64
}

type gateFile struct {
	buffer.File
	g   *gateFS
	wal bool
}

func (g *gateFS) OpenFile(name string, flag int, perm fs.FileMode) (buffer.File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return gateFile{f, g, len(name) > 4 && name[len(name)-4:] == ".wal"}, nil
}

func (f gateFile) Sync() error {
	if f.wal && f.g.armed.Load() {
		f.g.syncs.Add(1)
		f.g.once.Do(func() {
			close(f.g.entered)
			<-f.g.release
		})
	}
	return f.File.Sync()
}

func TestGroupCommit(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	g := &gateFS{FS: faultfs.New(), entered: make(chan struct{}), release: make(chan struct{})}
	o := opts(g, mem)
	b := mustOpen(t, "/buf", o)
	defer b.Close()
	g.armed.Store(true) // the next WAL fsync blocks
	const writers = 8
	var wg sync.WaitGroup
	firsts := make(chan uint64, writers)
	appendOne := func(id int64) {
		defer wg.Done()
		rec := rows(mem, testSchema, id, 10)
		defer rec.Release()
		first, err := b.Append(rec)
		if err != nil {
			t.Error(err)
		}
		firsts <- first
	}
	wg.Add(1)
	go appendOne(0) // the leader: its fsync blocks
	<-g.entered
	for i := 1; i < writers; i++ {
		wg.Add(1)
		go appendOne(int64(i * 10))
	}
	// Wait until the followers have written their records (they then
	// queue for the next fsync).
	for b.Status().NextSeq != writers*10+1 {
		runtime.Gosched()
	}
	close(g.release)
	wg.Wait()
	close(firsts)
	seen := map[uint64]bool{}
	for f := range firsts {
		if seen[f] || (f-1)%10 != 0 {
			t.Fatalf("first sequence %d", f)
		}
		seen[f] = true
	}
	if n := g.syncs.Load(); n != 2 {
		t.Fatalf("%d WAL fsyncs for %d appends, want 2 (one shared by the followers)", n, writers)
	}
	if got := drain(t, b); len(got) != writers*10 {
		t.Fatalf("read %d rows", len(got))
	}
}
