package ingest_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/ingest"
)

// waitFor bounds every wait of the tests.
const waitFor = 20 * time.Second

// testSchema has a column of every type, so that the redelivery check
// hashes every kind of value.
var testSchema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "dev", Type: engine.String},
	{Name: "v", Type: engine.Float64},
	{Name: "id", Type: engine.Int64},
	{Name: "ok", Type: engine.Bool},
}, "time", "dev")

// row returns the row of id; every fifth has a null value.
func row(id int) enginetest.Row {
	var v any = float64(id) / 2
	if id%5 == 0 {
		v = nil
	}
	return enginetest.Row{int64(1_700_000_000_000 + id), fmt.Sprintf("dev-%d", id%3), v, int64(id), id%2 == 0}
}

func record(mem memory.Allocator, ids ...int) arrow.RecordBatch {
	rows := make([]enginetest.Row, len(ids))
	for i, id := range ids {
		rows[i] = row(id)
	}
	return enginetest.Record(mem, testSchema, rows...)
}

// ids returns the id column of rows.
func ids(rows []enginetest.Row) []int {
	out := make([]int, len(rows))
	for i, r := range rows {
		out[i] = int(r[3].(int64))
	}
	return out
}

// fake is a live source that emits the given batches of row ids, each with
// an Ack, then waits for the end of the run (wait) or returns.
type fake struct {
	mem     memory.Allocator
	batches [][]int
	wait    bool
	// before, when set, runs before batch k is emitted.
	before func(k int)

	mu    sync.Mutex
	acked []bool
}

func (f *fake) Schema() *engine.Schema { return testSchema }

func (f *fake) Live() (bool, string) { return true, "" }

func (f *fake) Run(ctx context.Context, emit engine.Emit) error {
	f.mu.Lock()
	f.acked = make([]bool, len(f.batches))
	f.mu.Unlock()
	for k, b := range f.batches {
		if f.before != nil {
			f.before(k)
		}
		ack := engine.NewAck(func() {
			f.mu.Lock()
			f.acked[k] = true
			f.mu.Unlock()
		})
		if err := emit(record(f.mem, b...), ack); err != nil {
			return err
		}
	}
	if f.wait {
		<-ctx.Done()
	}
	return nil
}

// ackedBatches reports which batches were acknowledged.
func (f *fake) ackedBatches() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.acked)
}

// sink receives what the wrapped source emits into the graph.
type sink struct {
	t   testing.TB
	src *ingest.Source
	// check, when set, runs for every record before it is collected.
	check func(rows []enginetest.Row, ack *engine.Ack)

	mu        sync.Mutex
	rows      []enginetest.Row
	positions []string
}

func (s *sink) emit(rec arrow.RecordBatch, ack *engine.Ack) error {
	rows := enginetest.Rows(rec)
	rec.Release()
	if ack != nil {
		s.t.Errorf("a record went into the graph with an Ack")
	}
	if s.check != nil {
		s.check(rows, ack)
	}
	s.mu.Lock()
	s.rows = append(s.rows, rows...)
	s.positions = append(s.positions, string(s.src.Position()))
	s.mu.Unlock()
	return nil
}

func (s *sink) ids() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ids(s.rows)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// wrap wraps f with the log in dir.
func wrap(t testing.TB, f *fake, dir string, o ingest.Options) *ingest.Source {
	t.Helper()
	o.Dir = dir
	if o.Log == nil {
		o.Log = quiet()
	}
	s, err := ingest.Wrap(f, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs s to the end of its input and returns what it emitted.
func run(t testing.TB, s *ingest.Source) *sink {
	t.Helper()
	k := &sink{t: t, src: s}
	if err := s.Run(context.Background(), k.emit); err != nil {
		t.Fatalf("run: %v", err)
	}
	return k
}

// batchesOf returns n batches of size consecutive row ids, from 0.
func batchesOf(n, size int) [][]int {
	out := make([][]int, n)
	for k := range out {
		out[k] = seq(k*size, k*size+size)
	}
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// within polls cond until it holds, failing the test after waitFor.
func within(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
