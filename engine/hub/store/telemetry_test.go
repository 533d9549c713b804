package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
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
		ns [2]store.Inserted
		es [2]error
	)
	wg.Go(func() { ns[0], es[0] = s.InsertRows(ctx, first[n/2:]) })
	s2 := open(t, store.Options{Schema: schema, BatchRows: 3000})
	wg.Go(func() { ns[1], es[1] = s2.InsertRows(ctx, second) })
	wg.Wait()
	if err := errors.Join(es[:]...); err != nil {
		t.Fatal(err)
	}
	if c := got.Conflicts + ns[0].Conflicts + ns[1].Conflicts; c != 0 {
		t.Errorf("%d conflicts among redelivered rows", c)
	}
	if total := got.New + ns[0].New + ns[1].New; total != n {
		t.Errorf("inserted %d, want %d", total, n)
	}
	var count, distinct int64
	query(t, schema, `SELECT count(*), count(DISTINCT (edge, stream, seq)) FROM $schema.telemetry`, &count, &distinct)
	if count != n || distinct != n {
		t.Errorf("%d rows (%d distinct), want %d", count, distinct, n)
	}
	// Everything again: nothing new.
	if again, err := s.InsertRows(ctx, all); err != nil || again.New != 0 || again.Conflicts != 0 {
		t.Errorf("again: %+v, %v", again, err)
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
	if err != nil || n.New != int64(len(rows)) {
		t.Fatalf("inserted %+v, %v", n, err)
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
		if !errors.As(err, &re) || re.Index != 1 || n.New != 0 {
			t.Errorf("%s: %+v, %v; want a RowError for row 1", tc.name, n, err)
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
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/row")
}

// conflictRows returns the rows of telemetry_conflicts as
// "edge/stream/seq msg_id stored_msg_id asset time values", in key order.
func conflictRows(t *testing.T, schema string) []string {
	t.Helper()
	var out []string
	query(t, schema, `SELECT coalesce(array_agg(format('%s/%s/%s %s %s %s %s %s', edge, stream, seq, msg_id, stored_msg_id,
  asset, to_char(time AT TIME ZONE 'UTC', 'HH24:MI:SS.US'), "values") ORDER BY edge, stream, seq, time), '{}')::text
FROM $schema.telemetry_conflicts`, pgArray{&out})
	return out
}

// pgArray scans a text[] written as text.
type pgArray struct{ out *[]string }

func (a pgArray) Scan(src any) error {
	s, ok := src.(string)
	if !ok {
		return fmt.Errorf("array: %T", src)
	}
	var r []string
	// Elements are quoted by PostgreSQL; each holds no backslash here.
	for _, e := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}"), "\",") {
		if e = strings.Trim(e, "\""); e != "" {
			r = append(r, e)
		}
	}
	*a.out = r
	return nil
}

// telemetrySum is a digest of everything telemetry holds.
func telemetrySum(t *testing.T, schema string) string {
	t.Helper()
	var sum string
	query(t, schema, `SELECT md5(coalesce(string_agg(format('%s %s %s %s %s %s %s %s', edge, stream, seq, msg_id, asset,
  extract(epoch FROM time), backfill, "values"), ';' ORDER BY edge, stream, seq), ''))
FROM $schema.telemetry`, &sum)
	return sum
}

// TestInsertRowsRedeliveryNoConflict: the same rows again, re-batched
// (other message ids), backfilled or twice in one call, are no conflict.
func TestInsertRowsRedeliveryNoConflict(t *testing.T) {
	schema := schemaFor(t)
	s := open(t, store.Options{Schema: schema, BatchRows: 40})
	ctx := context.Background()
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC).Add(123456789 * time.Nanosecond)
	rows := rowsOf("e", "data", 1, 100, t0)
	rows[7].Values = map[string]any{"nan": math.NaN(), "nul": "a\x00b", "n": 1.5, "nested": []any{1.0, "x"}}
	if got, err := s.InsertRows(ctx, rows); err != nil || got.New != 100 || got.Conflicts != 0 {
		t.Fatalf("first: %+v, %v", got, err)
	}
	before := telemetrySum(t, schema)
	again := append([]store.Row(nil), rows...)
	for i := range again {
		again[i].MsgID = "e/data/1-100"
		again[i].Backfill = true
		again[i].Values = maps.Clone(again[i].Values)
	}
	again = append(again, rows[3:60]...) // twice in one call, across batches
	got, err := s.InsertRows(ctx, again)
	if err != nil || got.New != 0 || got.Conflicts != 0 || len(got.ConflictRanges) != 0 {
		t.Fatalf("again: %+v, %v", got, err)
	}
	if c := conflictRows(t, schema); len(c) != 0 {
		t.Errorf("conflicts stored: %q", c)
	}
	if after := telemetrySum(t, schema); after != before {
		t.Errorf("telemetry changed by a redelivery")
	}
}

// TestInsertRowsConflictKept: an edge whose buffer was reset sends the
// keys of stored rows again with other content; every such row is kept in
// telemetry_conflicts and counted, the stored rows stay as they are, and
// a redelivery of the conflicting rows is stored and counted once.
func TestInsertRowsConflictKept(t *testing.T) {
	schema := schemaFor(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := open(t, store.Options{Schema: schema, BatchRows: 30, Now: func() time.Time { return now }})
	ctx := context.Background()
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.InsertRows(ctx, rowsOf("e", "data", 1, 100, t0)); err != nil {
		t.Fatal(err)
	}
	before := telemetrySum(t, schema)

	// The edge's second life: the same sequences an hour later.
	fresh := rowsOf("e", "data", 1, 100, t0.Add(time.Hour))
	got, err := s.InsertRows(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Inserted{Conflicts: 100, ConflictRanges: []store.ConflictRange{{Edge: "e", Stream: "data", First: 1, Last: 100, Rows: 100}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("inserted %+v, want %+v", got, want)
	}
	if after := telemetrySum(t, schema); after != before {
		t.Errorf("stored rows changed by conflicting rows")
	}
	c := conflictRows(t, schema)
	if len(c) != 100 || c[0] != `e/data/1 e/data/1 e/data/1 turbine-0 01:00:00.000000 {\"temp\": 21.5, \"power\": 0, \"state\": \"run\"}` {
		t.Fatalf("%d conflicts, first %q", len(c), c[0:min(1, len(c))])
	}
	var received time.Time
	query(t, schema, `SELECT min(received_at) FROM $schema.telemetry_conflicts`, &received)
	if !received.Equal(now) {
		t.Errorf("received at %v, want %v", received, now)
	}

	// Redelivered (re-batched, backfilled): stored and counted once.
	for i := range fresh {
		fresh[i].MsgID, fresh[i].Backfill = "e/data/1-100", true
	}
	if got, err := s.InsertRows(ctx, fresh); err != nil || got.Conflicts != 0 || got.New != 0 {
		t.Errorf("conflicts redelivered: %+v, %v", got, err)
	}
	// Another content of a key in conflict already: kept too. Each field
	// of the content counts: event time, asset, values.
	third := rowsOf("e", "data", 1, 3, t0.Add(time.Hour))
	third[0].Time = third[0].Time.Add(time.Microsecond)
	third[1].Asset = "pump"
	third[2].Values["power"] = 99.0
	if got, err := s.InsertRows(ctx, third); err != nil || got.Conflicts != 3 {
		t.Errorf("third content: %+v, %v", got, err)
	}
	if c := conflictRows(t, schema); len(c) != 103 {
		t.Errorf("%d conflicts, want 103", len(c))
	}
	if after := telemetrySum(t, schema); after != before {
		t.Errorf("stored rows changed by conflicting rows")
	}
}

// TestInsertRowsMixedBatch: one call of new rows, redeliveries and
// conflicts of two edges, and two contents of one new key: every row is
// stored or kept, each in its place, in one range per edge and stream.
func TestInsertRowsMixedBatch(t *testing.T) {
	schema := schemaFor(t)
	s := open(t, store.Options{Schema: schema, BatchRows: 25})
	ctx := context.Background()
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.InsertRows(ctx, append(rowsOf("a", "data", 1, 50, t0), rowsOf("b", "data", 1, 50, t0)...)); err != nil {
		t.Fatal(err)
	}
	var mixed []store.Row
	mixed = append(mixed, rowsOf("a", "data", 11, 20, t0)...)                 // a 11-30 redelivered (rowsOf varies by index: changed content)
	mixed = append(mixed, rowsOf("a", "data", 1, 10, t0)...)                  // a 1-10 redelivered as they were
	mixed = append(mixed, rowsOf("b", "data", 51, 30, t0)...)                 // b 51-80 new
	mixed = append(mixed, rowsOf("b", "data", 40, 1, t0)...)                  // b 40 changed
	mixed = append(mixed, rowsOf("b", "data", 81, 1, t0)...)                  // b 81 new ...
	mixed = append(mixed, rowsOf("b", "data", 81, 1, t0.Add(time.Second))...) // ... and another content of it
	got, err := s.InsertRows(ctx, mixed)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Inserted{New: 31, Conflicts: 22, ConflictRanges: []store.ConflictRange{
		{Edge: "a", Stream: "data", First: 11, Last: 30, Rows: 20},
		{Edge: "b", Stream: "data", First: 40, Last: 81, Rows: 2},
	}}
	slices.SortFunc(got.ConflictRanges, func(x, y store.ConflictRange) int { return strings.Compare(x.Edge, y.Edge) })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("inserted %+v, want %+v", got, want)
	}
	var stored, kept int64
	query(t, schema, `SELECT count(*) FROM $schema.telemetry WHERE edge = 'b' AND seq > 50`, &stored)
	query(t, schema, `SELECT count(*) FROM $schema.telemetry_conflicts`, &kept)
	if stored != 31 || kept != 22 {
		t.Errorf("%d new rows stored, %d conflicts kept; want 31, 22", stored, kept)
	}
	var unchanged int64
	query(t, schema, `SELECT count(*) FROM $schema.telemetry WHERE edge = 'a' AND seq BETWEEN 11 AND 30 AND time = '2026-02-01T00:00:00Z'::timestamptz + (seq - 1) * interval '1 millisecond'`, &unchanged)
	if unchanged != 20 {
		t.Errorf("%d of 20 stored rows of a kept their content", unchanged)
	}
}

// BenchmarkInsertRowsRedelivered measures rows per second of calls of
// 10,000 rows the store already holds, as a redelivery sends them.
func BenchmarkInsertRowsRedelivered(b *testing.B) {
	s := open(b, store.Options{})
	ctx := context.Background()
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	const per = 10_000
	rows := rowsOf("bench", "data", 1, per, t0)
	if _, err := s.InsertRows(ctx, rows); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.InsertRows(ctx, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/row")
}
