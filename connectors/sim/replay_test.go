package sim_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// buildCk builds a sim source of a pipeline that takes checkpoints.
func buildCk(t *testing.T, conf string, bc engine.BuildContext) (engine.Source, engine.Replayable) {
	t.Helper()
	bc.Checkpoints = true
	src, err := build(t, conf, bc)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := src.(engine.Replayable)
	if !ok {
		t.Fatal("the sim source is not replayable")
	}
	return src, r
}

// runCk runs src until it ends or, when stop > 0, until it has emitted
// stop records, keeping every record and the position after it.
func runCk(t *testing.T, src engine.Source, r engine.Replayable, stop int) (recs []arrow.RecordBatch, pos [][]byte) {
	t.Helper()
	t.Cleanup(func() {
		for _, r := range recs {
			r.Release()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := src.Run(ctx, func(rec arrow.RecordBatch, _ *engine.Ack) error {
		recs = append(recs, rec)
		pos = append(pos, bytes.Clone(r.Position()))
		if len(recs) == stop {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs, pos
}

// TestCheckpointResume emits a farm's rows once, taking the position after
// every record; a new source resumed at the position after k records
// emits exactly what followed, for every k: the same Arrow records (the
// same rows, when paced by the wall clock) and the same positions.
func TestCheckpointResume(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		batch      int
		stop       int  // records of an unbounded run
		paced      bool // batches depend on the wall clock: compare rows
	}{
		{"batch 1", "turbines: 3\nrows: 4\nseed: 9\nfaults: 50", 1, 0, false},
		{"batch 7", "turbines: 5\nrows: 40\nseed: 4\ninterval: 10m\nfaults: 20", 7, 0, false},
		{"one batch", "turbines: 5\nrows: 40\nseed: 4", 1000, 0, false},
		{"unbounded", "turbines: 11\nseed: 2\nfaults: 5", 13, 20, false},
		{"paced", "turbines: 5\nrows: 10\nseed: 3\nrate: 100000", 6, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			t.Cleanup(func() { mem.AssertSize(t, 0) })
			bc := engine.BuildContext{Mem: mem, Batch: engine.BatchPolicy{Size: tc.batch, Linger: time.Millisecond}, DataDir: t.TempDir(), Pipeline: "p", Name: "sim"}
			src, r := buildCk(t, tc.conf, bc)
			start := r.Position()
			all, pos := runCk(t, src, r, tc.stop)
			var allRows []enginetest.Row
			for _, rec := range all {
				allRows = append(allRows, enginetest.Rows(rec)...)
			}
			for k := 0; k <= len(all); k++ {
				at := start
				if k > 0 {
					at = pos[k-1]
				}
				src, r := buildCk(t, tc.conf, bc)
				if err := r.ResumeAt(at); err != nil {
					t.Fatalf("after %d records: %v", k, err)
				}
				if !bytes.Equal(r.Position(), at) {
					t.Fatalf("after %d records: Position before Run is not where it starts", k)
				}
				stop := 0
				if tc.stop > 0 {
					if stop = tc.stop - k; stop == 0 {
						continue
					}
				}
				recs, p := runCk(t, src, r, stop)
				if k == len(all) {
					if len(recs) != 0 {
						t.Fatalf("%d records after the end", len(recs))
					}
					continue
				}
				if tc.paced {
					var rows []enginetest.Row
					for _, rec := range recs {
						rows = append(rows, enginetest.Rows(rec)...)
					}
					done := 0
					for _, rec := range all[:k] {
						done += int(rec.NumRows())
					}
					if !reflect.DeepEqual(rows, allRows[done:]) {
						t.Fatalf("after %d records: the rows differ", k)
					}
					if !bytes.Equal(p[len(p)-1], pos[len(pos)-1]) {
						t.Fatalf("after %d records: the last position differs", k)
					}
					continue
				}
				if len(recs) != len(all)-k {
					t.Fatalf("after %d records: %d records, want %d", k, len(recs), len(all)-k)
				}
				for i := range recs {
					if !array.RecordEqual(recs[i], all[k+i]) {
						t.Fatalf("after %d records: record %d differs", k, k+i)
					}
					if !bytes.Equal(p[i], pos[k+i]) {
						t.Fatalf("after %d records: position after record %d differs", k, k+i)
					}
				}
			}
			if _, err := os.Stat(filepath.Join(bc.DataDir, "p", "sim")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a checkpointing source used its position directory: %v", err)
			}
		})
	}
}

// TestCheckpointIgnoresPositionFile: a sim source of a pipeline that
// takes checkpoints does not go on from the position file an earlier run
// without checkpoints left.
func TestCheckpointIgnoresPositionFile(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	conf := "turbines: 5\nrows: 4\nseed: 4"
	bc := engine.BuildContext{Mem: mem, Batch: engine.BatchPolicy{Size: 7}, DataDir: t.TempDir(), Pipeline: "p", Name: "sim"}
	src, err := build(t, conf, bc)
	if err != nil {
		t.Fatal(err)
	}
	err = src.Run(context.Background(), func(rec arrow.RecordBatch, ack *engine.Ack) error {
		rec.Release()
		ack.Done()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	src, r := buildCk(t, conf, bc)
	recs, _ := runCk(t, src, r, 0)
	n := int64(0)
	for _, rec := range recs {
		n += rec.NumRows()
	}
	if n != 20 {
		t.Fatalf("%d rows, want all 20", n)
	}
}

// TestCheckpointRefusesPosition: a position is refused, with an error
// saying why, when it is not one of a sim source, is damaged, is of
// another farm, or is past the rows to produce.
func TestCheckpointRefusesPosition(t *testing.T) {
	const conf = "turbines: 5\nrows: 4\nseed: 4\ninterval: 1s\nfaults: 0.5\nstart: 2025-01-01T00:00:00Z"
	bc := engine.BuildContext{Batch: engine.BatchPolicy{Size: 3}, Mem: memory.NewGoAllocator()}
	src, r := buildCk(t, conf, bc)
	_, pos := runCk(t, src, r, 0)
	end := pos[len(pos)-1]
	for _, tc := range []struct {
		name, conf string
		pos        []byte
		want       string
	}{
		{"empty", conf, nil, "sim: unreadable checkpoint position: too short"},
		{"a file position", conf, []byte("F\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), "not the position of a sim source"},
		{"a later version", conf, append([]byte{'S', 2}, end[2:]...), "version 2"},
		{"garbled", conf, append(append([]byte{}, end[:5]...), append([]byte{end[5] ^ 1}, end[6:]...)...), "checksum mismatch"},
		{"truncated", conf, end[:len(end)-1], "unreadable checkpoint position"},
		{"another seed", strings.Replace(conf, "seed: 4", "seed: 5", 1), end, "of another farm"},
		{"more turbines", strings.Replace(conf, "turbines: 5", "turbines: 6", 1), end, "of another farm"},
		{"another interval", strings.Replace(conf, "1s", "2s", 1), end, "of another farm"},
		{"another start", strings.Replace(conf, "2025", "2026", 1), end, "of another farm"},
		{"other faults", strings.Replace(conf, "0.5", "0.6", 1), end, "of another farm"},
		{"fewer rows", strings.Replace(conf, "rows: 4", "rows: 3", 1), end, "after 20 rows, more than the 15 to produce"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r := buildCk(t, tc.conf, bc)
			if err := r.ResumeAt(tc.pos); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	// The rate and more rows do not change the farm.
	_, r = buildCk(t, strings.Replace(conf, "rows: 4", "rows: 9\nrate: 10", 1), bc)
	if err := r.ResumeAt(end); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointAtTheEnd: a source resumed after its last row produces
// nothing.
func TestCheckpointAtTheEnd(t *testing.T) {
	bc := engine.BuildContext{Batch: engine.BatchPolicy{Size: 3}, Mem: memory.NewGoAllocator()}
	src, r := buildCk(t, "turbines: 2\nrows: 3", bc)
	_, pos := runCk(t, src, r, 0)
	src, r = buildCk(t, "turbines: 2\nrows: 3", bc)
	if err := r.ResumeAt(pos[len(pos)-1]); err != nil {
		t.Fatal(err)
	}
	if recs, _ := runCk(t, src, r, 0); len(recs) != 0 {
		t.Fatalf("%d records after the end", len(recs))
	}
}
