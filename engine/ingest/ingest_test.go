package ingest_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/ingest"
)

// The wrapper is a replayable source that passes the optional interfaces
// through.
var (
	_ engine.Source       = (*ingest.Source)(nil)
	_ engine.Replayable   = (*ingest.Source)(nil)
	_ engine.LiveSource   = (*ingest.Source)(nil)
	_ engine.RangedSource = (*ingest.Source)(nil)
	_ engine.Resumer      = (*ingest.Source)(nil)
	_ engine.Syncer       = (*ingest.Source)(nil)
)

// TestLoggedBeforeAcknowledged: every record is in the log before it goes
// into the graph (with a nil Ack) with the position of its last row, and
// before the wrapped source's Ack completes: under fsync interval (and
// none) the Ack completes before the record is emitted, under fsync always
// once the log is durable up to it (TestAckOnlyOnceDurable), by the end of
// the run at the latest.
func TestLoggedBeforeAcknowledged(t *testing.T) {
	for _, fsync := range []buffer.FsyncPolicy{buffer.FsyncAlways, buffer.FsyncInterval} {
		t.Run(fsync.String(), func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			dir := t.TempDir()
			f := &fake{mem: mem, batches: [][]int{{0, 1, 2}, {3, 4}}}
			o := ingest.Options{Mem: mem, Buffer: buffer.Options{Fsync: fsync}}
			s := wrap(t, f, dir, o)
			if got := string(s.Position()); got != "0" {
				t.Fatalf("position of an empty log %q, want 0", got)
			}
			if src, ok := s.Unwrap().(*fake); !ok || src != f {
				t.Fatalf("Unwrap returned %v", s.Unwrap())
			}
			if live, _ := s.Live(); !live {
				t.Error("Live not passed through")
			}
			batch := 0
			k := &sink{t: t, src: s}
			k.check = func(rows []enginetest.Row, _ *engine.Ack) {
				if fsync != buffer.FsyncAlways && !f.ackedBatches()[batch] {
					t.Errorf("batch %d emitted before its input was acknowledged", batch)
				}
				if last := s.Buffer().NextSeq() - 1; last < uint64(ids(rows)[len(rows)-1]+1) {
					t.Errorf("batch %d emitted before it was logged (log ends at %d)", batch, last)
				}
				batch++
			}
			if err := s.Run(context.Background(), k.emit); err != nil {
				t.Fatal(err)
			}
			if got := k.ids(); !slices.Equal(got, seq(0, 5)) {
				t.Errorf("emitted %v", got)
			}
			if !slices.Equal(k.positions, []string{"3", "5"}) {
				t.Errorf("positions %v, want [3 5]", k.positions)
			}
			if got := f.ackedBatches(); !slices.Equal(got, []bool{true, true}) {
				t.Errorf("acknowledged after the run: %v", got)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// Reopened, the position is the end of the log: nothing to replay.
			s2 := wrap(t, &fake{mem: mem}, dir, o)
			defer s2.Close()
			if got := string(s2.Position()); got != "5" {
				t.Errorf("position after reopen %q, want 5", got)
			}
			if got := run(t, s2).ids(); len(got) != 0 {
				t.Errorf("a run without ResumeAt replayed %v", got)
			}
		})
	}
}

// TestResumeReplaysAfterPosition: Run replays the rows logged after the
// position ResumeAt names, in log order with the position advancing, then
// goes live.
func TestResumeReplaysAfterPosition(t *testing.T) {
	for _, tc := range []struct {
		name string
		pos  string
		want []int
	}{
		{"from the start", "0", seq(0, 7)},
		{"inside a batch", "2", seq(2, 7)},
		{"at a batch boundary", "3", seq(3, 7)},
		{"at the end", "5", seq(5, 7)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			dir := t.TempDir()
			s := wrap(t, &fake{mem: mem, batches: [][]int{{0, 1, 2}, {3, 4}}}, dir, ingest.Options{Mem: mem})
			run(t, s)
			s.Close()

			ctr := engine.NewCounters()
			s2 := wrap(t, &fake{mem: mem, batches: [][]int{{5, 6}}}, dir, ingest.Options{Mem: mem, Counters: ctr})
			defer s2.Close()
			if err := s2.ResumeAt([]byte(tc.pos)); err != nil {
				t.Fatal(err)
			}
			if got := string(s2.Position()); got != tc.pos {
				t.Errorf("position before Run %q, want %q", got, tc.pos)
			}
			k := run(t, s2)
			if got := k.ids(); !slices.Equal(got, tc.want) {
				t.Errorf("emitted %v, want %v", got, tc.want)
			}
			if got := string(s2.Position()); got != "7" {
				t.Errorf("position after Run %q, want 7", got)
			}
			if got, want := ctr.Counter("ingest_rows_replayed").Load(), int64(len(tc.want)-2); got != want {
				t.Errorf("replayed %d rows, want %d", got, want)
			}
			if ctr.Counter("redeliveries").Load() != 0 {
				t.Error("new rows taken for redeliveries")
			}
		})
	}
}

func TestResumeAtRejectsBadPositions(t *testing.T) {
	s := wrap(t, &fake{mem: memory.DefaultAllocator}, t.TempDir(), ingest.Options{})
	defer s.Close()
	for _, p := range []string{"", "x", "-1", "1.5", "99999999999999999999999"} {
		if err := s.ResumeAt([]byte(p)); err == nil {
			t.Errorf("ResumeAt(%q) accepted", p)
		}
	}
	s.Committed([]byte("garbage")) // ignored, logged
	run(t, s)
	if err := s.ResumeAt([]byte("0")); err == nil {
		t.Error("ResumeAt after Run accepted")
	}
}

// TestRedeliveriesDropped: rows the log holds that come in again while the
// horizon is open are dropped, once per logged copy; batches all of whose
// rows are redeliveries are acknowledged and not emitted.
func TestRedeliveriesDropped(t *testing.T) {
	logged := [][]int{{0, 1, 2}, {3, 4, 5}} // the first run
	for _, tc := range []struct {
		name        string
		horizon     int
		horizonTime time.Duration
		batches     [][]int
		// late is the batch before which the clock jumps by an hour.
		late int
		want []int
		dups int64
	}{
		{name: "whole batch", batches: [][]int{{3, 4, 5}, {6}}, want: []int{6}, dups: 3},
		{name: "head of a batch", batches: [][]int{{4, 5, 6, 7}}, want: []int{6, 7}, dups: 2},
		{name: "interleaved", batches: [][]int{{4, 6, 5, 7}}, want: []int{6, 7}, dups: 2},
		{name: "each logged copy once", batches: [][]int{{5, 5}}, want: []int{5}, dups: 1},
		{name: "closed once all came back", batches: [][]int{{0, 1, 2, 3, 4, 5}, {5}}, want: []int{5}, dups: 6},
		{name: "only the newest rows", horizon: 4, batches: [][]int{{0, 1, 2}}, want: []int{0, 1}, dups: 1},
		{name: "closed after horizon rows", horizon: 4, batches: [][]int{{6, 7, 8, 9}, {5}}, want: []int{6, 7, 8, 9, 5}},
		{name: "closed after horizon time", horizonTime: time.Minute, late: 1, batches: [][]int{{6}, {5}}, want: []int{6, 5}},
		{name: "check off", horizon: -1, batches: [][]int{{5}}, want: []int{5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			dir := t.TempDir()
			s := wrap(t, &fake{mem: mem, batches: logged}, dir, ingest.Options{Mem: mem})
			run(t, s)
			s.Close()

			var mu sync.Mutex
			now := time.Unix(1_700_000_000, 0)
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			f := &fake{mem: mem, batches: tc.batches}
			if tc.late > 0 {
				f.before = func(k int) {
					if k == tc.late {
						mu.Lock()
						now = now.Add(time.Hour)
						mu.Unlock()
					}
				}
			}
			ctr := engine.NewCounters()
			s2 := wrap(t, f, dir, ingest.Options{Mem: mem, Counters: ctr, Horizon: tc.horizon, HorizonTime: tc.horizonTime, Now: clock})
			defer s2.Close()
			k := run(t, s2)
			if got := k.ids(); !slices.Equal(got, tc.want) {
				t.Errorf("emitted %v, want %v", got, tc.want)
			}
			if got := ctr.Counter("redeliveries").Load(); got != tc.dups {
				t.Errorf("%d redeliveries counted, want %d", got, tc.dups)
			}
			for i, a := range f.ackedBatches() {
				if !a {
					t.Errorf("batch %d not acknowledged", i)
				}
			}
			// Only the new rows were logged.
			if got, want := s2.Buffer().NextSeq()-1, uint64(6+len(tc.want)); got != want {
				t.Errorf("log ends at %d, want %d", got, want)
			}
		})
	}
}

// TestCommittedKeepsHorizon: Committed deletes what the checkpoint covers
// but the newest Horizon rows, which the next run checks redeliveries
// against.
func TestCommittedKeepsHorizon(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	o := ingest.Options{Mem: mem, Horizon: 2}
	s := wrap(t, &fake{mem: mem, batches: [][]int{{0, 1, 2, 3, 4}, {5, 6, 7, 8, 9}}}, dir, o)
	run(t, s)
	for _, tc := range []struct {
		pos    string
		cursor uint64
	}{{"7", 7}, {"3", 7}, {"10", 8}, {"bad", 8}} {
		s.Committed([]byte(tc.pos))
		if got := s.Buffer().Cursor(); got != tc.cursor {
			t.Errorf("after Committed(%s) the log starts after %d, want %d", tc.pos, got, tc.cursor)
		}
	}
	s.Close()
	s.Committed([]byte("10")) // after Close: nothing

	// Rows 8 and 9 (sequences 9 and 10) are still checked.
	ctr := engine.NewCounters()
	s2 := wrap(t, &fake{mem: mem, batches: [][]int{{7, 8, 9, 10}}}, dir, ingest.Options{Mem: mem, Counters: ctr, Horizon: 2})
	defer s2.Close()
	if err := s2.ResumeAt([]byte("10")); err != nil {
		t.Fatal(err)
	}
	if got := run(t, s2).ids(); !slices.Equal(got, []int{7, 10}) {
		t.Errorf("emitted %v, want [7 10]", got)
	}
	if got := ctr.Counter("redeliveries").Load(); got != 2 {
		t.Errorf("%d redeliveries, want 2", got)
	}
}

// TestResumeBeforeLogStartReportsLoss: a checkpoint older than what the log
// holds (the newest one was damaged) replays what is left and counts the
// rest as lost.
func TestResumeBeforeLogStartReportsLoss(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	s := wrap(t, &fake{mem: mem, batches: [][]int{{0, 1, 2}, {3, 4, 5}}}, dir, ingest.Options{Mem: mem, Horizon: -1})
	run(t, s)
	s.Committed([]byte("4"))
	s.Close()
	for _, tc := range []struct {
		pos  string
		want []int
		lost int64
	}{{"1", []int{4, 5}, 3}, {"9", nil, 3}} {
		ctr := engine.NewCounters()
		s2 := wrap(t, &fake{mem: mem}, dir, ingest.Options{Mem: mem, Counters: ctr})
		if err := s2.ResumeAt([]byte(tc.pos)); err != nil {
			t.Fatal(err)
		}
		if got := run(t, s2).ids(); !slices.Equal(got, tc.want) {
			t.Errorf("from %s: replayed %v, want %v", tc.pos, got, tc.want)
		}
		if got := ctr.Counter("ingest_rows_lost").Load(); got != tc.lost {
			t.Errorf("from %s: %d rows counted lost, want %d", tc.pos, got, tc.lost)
		}
		s2.Close()
	}
}

// rejectingLog wraps a fake emitting rows 0..1499 in batches of 50 with a
// log in dir of 16 KiB under reject_new, which fills up long before.
func rejectingLog(t *testing.T, mem memory.Allocator, dir string, ctr *engine.Counters) (*ingest.Source, *fake) {
	t.Helper()
	f := &fake{mem: mem, batches: batchesOf(30, 50)}
	return wrap(t, f, dir, ingest.Options{Mem: mem, Counters: ctr,
		Buffer: buffer.Options{MaxBytes: 16 << 10, Policy: buffer.RejectNew, ManualSeal: true}}), f
}

// TestFullLogHoldsSourceBack: under reject_new a full log holds the
// wrapped source inside its emit, its input not acknowledged, until a
// checkpoint frees room; nothing is lost or emitted twice.
func TestFullLogHoldsSourceBack(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ctr := engine.NewCounters()
	s, f := rejectingLog(t, mem, t.TempDir(), ctr)
	defer s.Close()
	k := &sink{t: t, src: s}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), k.emit) }()
	waits := ctr.Counter("ingest_full_waits")
	commits := 0
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
			continue
		default:
		}
		if waits.Load() > int64(commits) {
			// Held back: the batch being appended is not acknowledged.
			acked := f.ackedBatches()
			n := len(k.ids()) / 50
			if n >= len(acked) || acked[n] {
				t.Fatalf("batch %d acknowledged while the log is full (%d emitted)", n, len(k.ids()))
			}
			s.Committed(s.Position()) // the checkpoint the engine would take
			commits++
		}
		time.Sleep(time.Millisecond)
	}
	if commits == 0 {
		t.Fatal("the log never filled up")
	}
	if got := k.ids(); !slices.Equal(got, seq(0, 1500)) {
		t.Errorf("emitted %d rows, want 0..1499 once each", len(got))
	}
	if d := ctr.Counter("ingest_rows_dropped").Load(); d != 0 {
		t.Errorf("%d rows dropped under reject_new", d)
	}
	t.Logf("held back %d times", commits)
}

// TestDropPolicyReportsDrops: under drop_oldest a full log deletes its
// oldest rows, reported and counted, and the source is not held back.
func TestDropPolicyReportsDrops(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var mu sync.Mutex
	var drops []buffer.Drop
	ctr := engine.NewCounters()
	s := wrap(t, &fake{mem: mem, batches: batchesOf(30, 50)}, t.TempDir(), ingest.Options{Mem: mem, Counters: ctr,
		Buffer: buffer.Options{MaxBytes: 16 << 10, Policy: buffer.DropOldest, SegmentBytes: 4 << 10, ManualSeal: true,
			OnDrop: func(d buffer.Drop) { mu.Lock(); drops = append(drops, d); mu.Unlock() }}})
	defer s.Close()
	if got := run(t, s).ids(); !slices.Equal(got, seq(0, 1500)) {
		t.Errorf("emitted %d rows, want 0..1499 once each", len(got))
	}
	var rows int64
	for _, d := range drops {
		rows += d.Rows
	}
	if rows == 0 || ctr.Counter("ingest_rows_dropped").Load() != rows {
		t.Errorf("drops reported %d rows, counted %d", rows, ctr.Counter("ingest_rows_dropped").Load())
	}
	if ctr.Counter("ingest_full_waits").Load() != 0 {
		t.Error("held back under drop_oldest")
	}
}

// TestStopWhileFull: a run stopped while the log is full returns, the
// record is released and its input is not acknowledged.
func TestStopWhileFull(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ctr := engine.NewCounters()
	s, f := rejectingLog(t, mem, filepath.Join(t.TempDir(), "x"), ctr)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	k := &sink{t: t, src: s}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, k.emit) }()
	within(t, "the log is full", func() bool { return ctr.Counter("ingest_full_waits").Load() > 0 })
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	n := len(k.ids()) / 50
	if acked := f.ackedBatches(); acked[n] {
		t.Errorf("batch %d acknowledged although it was never logged", n)
	}
}
