package buffer_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/buffer"
	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testSchema has every column type.
var testSchema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "asset", Type: engine.String},
	{Name: "value", Type: engine.Float64},
	{Name: "id", Type: engine.Int64},
	{Name: "ok", Type: engine.Bool},
}, "time", "asset")

// t0 is the event time of row 0.
var t0 = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// rows builds a record of n rows whose ids run from id; every value is a
// function of the id, so that a row read back can be checked alone.
func rows(mem memory.Allocator, s *engine.Schema, id int64, n int) arrow.RecordBatch {
	rb := engine.NewRecordBuilder(mem, s)
	defer rb.Release()
	for k := id; k < id+int64(n); k++ {
		for i, f := range s.Fields {
			switch f.Type {
			case engine.Timestamp:
				rb.Timestamp(i).Append(arrow.Timestamp(t0 + k*1000))
			case engine.String:
				rb.String(i).Append(fmt.Sprintf("turbine-%d", k%7))
			case engine.Float64:
				if k%11 == 5 {
					rb.Float64(i).AppendNull()
				} else {
					rb.Float64(i).Append(float64(k) * 0.25)
				}
			case engine.Int64:
				rb.Int64(i).Append(k)
			case engine.Bool:
				rb.Bool(i).Append(k%2 == 0)
			}
		}
		rb.RowDone()
	}
	return rb.NewRecord()
}

// idsOf returns the id column of a record of testSchema and checks that
// every other column holds what rows wrote for that id.
func idsOf(t testing.TB, rec arrow.RecordBatch) []int64 {
	t.Helper()
	ids := rec.Column(3).(*array.Int64)
	ts := rec.Column(0).(*array.Timestamp)
	asset := rec.Column(1).(*array.String)
	val := rec.Column(2).(*array.Float64)
	ok := rec.Column(4).(*array.Boolean)
	out := make([]int64, rec.NumRows())
	for r := range out {
		k := ids.Value(r)
		out[r] = k
		switch {
		case int64(ts.Value(r)) != t0+k*1000,
			asset.Value(r) != fmt.Sprintf("turbine-%d", k%7),
			ok.Value(r) != (k%2 == 0),
			k%11 == 5 && !val.IsNull(r),
			k%11 != 5 && val.Value(r) != float64(k)*0.25:
			t.Fatalf("row %d (id %d) holds wrong values", r, k)
		}
	}
	return out
}

// read is one row read back: its sequence and id.
type read struct {
	seq uint64
	id  int64
}

// drain reads everything Next has now and releases the records.
func drain(t testing.TB, b *buffer.Buffer) []read {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out []read
	for {
		e, err := b.Next(ctx)
		if err == context.Canceled {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		for i, id := range idsOf(t, e.Rec) {
			out = append(out, read{e.First + uint64(i), id})
		}
		e.Rec.Release()
	}
}

var quiet = slog.New(slog.DiscardHandler)

// opts returns options for tests: deterministic (no background work).
func opts(fs buffer.FS, mem memory.Allocator) buffer.Options {
	return buffer.Options{Schema: testSchema, FS: fs, Mem: mem, ManualSeal: true, Log: quiet}
}

func checkedMem(t *testing.T) *memory.CheckedAllocator {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

func mustOpen(t testing.TB, dir string, o buffer.Options) *buffer.Buffer {
	t.Helper()
	b, err := buffer.Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return b
}

// appendN appends count batches of n rows with ids from id and returns the
// next id.
func appendN(t testing.TB, b *buffer.Buffer, mem memory.Allocator, id int64, count, n int) int64 {
	t.Helper()
	for range count {
		rec := rows(mem, testSchema, id, n)
		_, err := b.Append(rec)
		rec.Release()
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		id += int64(n)
	}
	return id
}

// wantContiguous checks that rs holds ids lo..hi-1 at sequences seq0.. in
// order.
func wantContiguous(t testing.TB, rs []read, seq0 uint64, lo, hi int64) {
	t.Helper()
	if int64(len(rs)) != hi-lo {
		t.Fatalf("read %d rows, want %d", len(rs), hi-lo)
	}
	for i, r := range rs {
		if r.seq != seq0+uint64(i) || r.id != lo+int64(i) {
			t.Fatalf("row %d: seq %d id %d, want seq %d id %d", i, r.seq, r.id, seq0+uint64(i), lo+int64(i))
		}
	}
}

var _ = faultfs.New

// contextDone returns a context that is already done, for polling Next.
func contextDone() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx, cancel
}
