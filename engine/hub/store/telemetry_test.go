package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/store"
)

func rowsOf(edge, stream string, first, n int, t0 time.Time) []store.Row {
	out := make([]store.Row, n)
	for i := range out {
		seq := uint64(first + i)
		out[i] = store.Row{
			MsgID: fmt.Sprintf("%s/%s/%d", edge, stream, seq), Edge: edge, Stream: stream, Seq: seq,
			Asset: fmt.Sprintf("turbine-%d", i%10), Time: t0.Add(time.Duration(i) * time.Millisecond),
			Values: map[string]any{"power": float64(i), "temp": 21.5, "state": "run"},
		}
	}
	return out
}

func query(t *testing.T, schema, q string, dest ...any) {
	t.Helper()
	db, err := sql.Open("pgx", testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(strings.ReplaceAll(q, "$schema", schema)).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestInsertRowsExactlyOnce(t *testing.T) {
	schema := schemaFor(t)
	s := open(t, store.Options{Schema: schema, BatchRows: 7000})
	ctx := context.Background()
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	const n = 100_000
	var all []store.Row
	for e := range 3 {
		all = append(all, rowsOf(fmt.Sprintf("e%d", e), "data", 1, n/3+e/2, t0)...) // 33333+33333+33334
	}
	if len(all) != n {
		t.Fatalf("built %d rows", len(all))
	}
	// Every other row goes twice: once in the first pass, again in the
	// second, from two writers at once (two hub instances), with a
	// different batching.
	var first, second []store.Row
	for i, r := range all {
		first = append(first, r)
		if i%2 == 0 {
			second = append(second, r)
		}
	}
	got, err := s.InsertRows(ctx, first[:n/2])
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg sync.WaitGroup
		ns [2]int64
		es [2]error
	)
	wg.Go(func() { ns[0], es[0] = s.InsertRows(ctx, first[n/2:]) })
	s2 := open(t, store.Options{Schema: schema, BatchRows: 3000})
	wg.Go(func() { ns[1], es[1] = s2.InsertRows(ctx, second) })
	wg.Wait()
	if err := errors.Join(es[:]...); err != nil {
		t.Fatal(err)
	}
	if total := got + ns[0] + ns[1]; total != n {
		t.Errorf("inserted %d, want %d", total, n)
	}
	var count, distinct int64
	query(t, schema, `SELECT count(*), count(DISTINCT (edge, stream, seq)) FROM $schema.telemetry`, &count, &distinct)
	if count != n || distinct != n {
		t.Errorf("%d rows (%d distinct), want %d", count, distinct, n)
	}
	// Everything again: nothing new.
	if again, err := s.InsertRows(ctx, all); err != nil || again != 0 {
		t.Errorf("again: %d, %v", again, err)
	}
}

func TestInsertRowsValues(t *testing.T) {
	schema := schemaFor(t)
	s := open(t, store.Options{Schema: schema, MaxValueBytes: 4096})
	ctx := context.Background()
	year1 := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	year9999 := time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)
	rows := []store.Row{
		{MsgID: "e/s/1", Edge: "e", Stream: "s", Seq: 1, Asset: "a", Time: year1, Backfill: true, Values: map[string]any{"v": 1.0}},
		{MsgID: "e/s/2", Edge: "e", Stream: "s", Seq: 2, Asset: "a", Time: year9999, Values: map[string]any{"v": 2.0}},
		{MsgID: "e/s/3", Edge: "e", Stream: "s", Seq: 3, Asset: "a", Time: time.Unix(0, 0),
			Values: map[string]any{"nan": math.NaN(), "inf": math.Inf(-1), "f32": float32(math.Inf(1)),
				"nul": "a\x00b", "k\x00ey": 1.0, "nested": map[string]any{"x": []any{math.NaN(), "ok"}}}},
		{MsgID: "e/s/4", Edge: "e", Stream: "s", Seq: 4, Asset: "a", Time: time.Unix(0, 0)},
		{MsgID: "e/s/5", Edge: "e", Stream: "s", Seq: math.MaxInt64, Asset: "a", Time: time.Unix(0, 0)},
	}
	n, err := s.InsertRows(ctx, rows)
	if err != nil || n != int64(len(rows)) {
		t.Fatalf("inserted %d, %v", n, err)
	}
	var (
		first, last time.Time
		backfill    bool
		values      string
	)
	query(t, schema, `SELECT min(time), max(time), bool_or(backfill) FROM $schema.telemetry`, &first, &last, &backfill)
	if !first.Equal(year1) || !last.Equal(year9999) || !backfill {
		t.Errorf("times %v..%v, backfill %v", first, last, backfill)
	}
	query(t, schema, `SELECT "values"::text FROM $schema.telemetry WHERE seq = 3`, &values)
	want := `{"f32": null, "inf": null, "nan": null, "nul": "a�b", "k�ey": 1, "nested": {"x": [null, "ok"]}}`
	if values != want {
		t.Errorf("values %s, want %s", values, want)
	}
	query(t, schema, `SELECT "values"::text FROM $schema.telemetry WHERE seq = 4`, &values)
	if values != "{}" {
		t.Errorf("nil values stored as %s", values)
	}

	// A hostile row fails the whole call, names the row and stores nothing.
	ok := rowsOf("h", "s", 1, 3, time.Unix(0, 0))
	tests := []struct {
		name string
		edit func(*store.Row)
	}{
		{"NUL in asset", func(r *store.Row) { r.Asset = "a\x00" }},
		{"NUL in edge", func(r *store.Row) { r.Edge = "\x00" }},
		{"invalid UTF-8 stream", func(r *store.Row) { r.Stream = "\xc3\x28" }},
		{"huge asset", func(r *store.Row) { r.Asset = strings.Repeat("x", store.DefaultMaxTextBytes+1) }},
		{"huge values", func(r *store.Row) { r.Values = map[string]any{"s": strings.Repeat("x", 5000)} }},
		{"seq beyond int64", func(r *store.Row) { r.Seq = math.MaxInt64 + 1 }},
		{"unencodable value", func(r *store.Row) { r.Values = map[string]any{"c": make(chan int)} }},
	}
	for _, tc := range tests {
		rs := append([]store.Row(nil), ok...)
		tc.edit(&rs[1])
		n, err := s.InsertRows(ctx, rs)
		var re *store.RowError
		if !errors.As(err, &re) || re.Index != 1 || n != 0 {
			t.Errorf("%s: %d, %v; want a RowError for row 1", tc.name, n, err)
		}
	}
	var count int64
	query(t, schema, `SELECT count(*) FROM $schema.telemetry WHERE edge = 'h'`, &count)
	if count != 0 {
		t.Errorf("%d rows of refused calls stored", count)
	}
}

// BenchmarkInsertRows measures new rows per second, in calls of 10,000.
func BenchmarkInsertRows(b *testing.B) {
	s := open(b, store.Options{})
	ctx := context.Background()
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	const per = 10_000
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		rows := rowsOf("bench", "data", i*per, per, t0)
		b.StartTimer()
		if _, err := s.InsertRows(ctx, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "rows/s")
}
