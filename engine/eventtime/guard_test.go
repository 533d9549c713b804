package eventtime_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/eventtime"
)

var schema = engine.MustSchema([]engine.Field{
	{Name: "time", Type: engine.Timestamp},
	{Name: "device", Type: engine.String},
	{Name: "history", Type: engine.Bool},
}, "time", "device")

// now is the engine clock of the tests: 2026-06-01T00:00:00Z.
var now = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

func TestGuard(t *testing.T) {
	ms := now.UnixMilli()
	min := int64(60_000)
	day := 24 * 60 * min
	tests := []struct {
		name     string
		policy   eventtime.Policy
		rows     []enginetest.Row
		wantKept []int64
		wantErrs []string
		counters map[string]int64
	}{
		{
			name:     "all within bounds pass untouched",
			policy:   eventtime.Policy{MaxFuture: 10 * time.Minute, MaxPast: 30 * 24 * time.Hour},
			rows:     []enginetest.Row{{ms, "a", false}, {ms + 9*min, "b", false}, {ms - 29*day, "c", false}, {nil, "d", false}},
			wantKept: []int64{ms, ms + 9*min, ms - 29*day, -1},
		},
		{
			name:   "far future, past and out of range",
			policy: eventtime.Policy{MaxFuture: 10 * time.Minute, MaxPast: 30 * 24 * time.Hour, HistoryColumn: "history"},
			rows: []enginetest.Row{
				{ms, "a", false},
				{int64(253402214400000), "evil", false}, // 9999-12-31
				{ms + 11*min, "fast", false},
				{ms - 31*day, "old", false},
				{ms - 31*day, "resumed", true}, // history: exempt from max_past
				{int64(math.MaxInt64), "evil", true},
				{ms + 1, "b", false},
			},
			wantKept: []int64{ms, ms - 31*day, ms + 1},
			wantErrs: []string{
				"event time 9999-12-31T00:00:00.000Z is 2912291 days ahead of the engine clock (event_time.max_future 10m0s)",
				"event time 2026-06-01T00:11:00.000Z is 11m0s ahead of the engine clock (event_time.max_future 10m0s)",
				"event time 2026-05-01T00:00:00.000Z is 31 days behind the engine clock (event_time.max_past 720h0m0s)",
				"event time 9223372036854775807 is outside years 0001-9999",
			},
			counters: map[string]int64{"future_time_rows": 2, "past_time_rows": 1, "out_of_range_rows": 1},
		},
		{
			name:     "no bounds still rejects what no window can hold",
			policy:   eventtime.Policy{},
			rows:     []enginetest.Row{{int64(math.MinInt64), "evil", false}, {ms + 1000*day, "a", false}},
			wantKept: []int64{ms + 1000*day},
			wantErrs: []string{"event time -9223372036854775808 is outside years 0001-9999"},
			counters: map[string]int64{"out_of_range_rows": 1},
		},
		{
			name:     "every row rejected",
			policy:   eventtime.Policy{MaxFuture: time.Minute},
			rows:     []enginetest.Row{{ms + 2*min, "a", false}},
			wantErrs: []string{"event time 2026-06-01T00:02:00.000Z is 2m0s ahead of the engine clock (event_time.max_future 1m0s)"},
			counters: map[string]int64{"future_time_rows": 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			counters := engine.NewCounters()
			tc.policy.Now = func() time.Time { return now }
			g, err := eventtime.New(tc.policy, schema, engine.BuildContext{Mem: mem, Counters: counters})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			col := enginetest.NewCollector()
			rec := enginetest.Record(mem, schema, tc.rows...)
			if err := g.Process(engine.Batch{Rec: rec}, col.Emit); err != nil {
				t.Fatal(err)
			}
			var kept []int64
			for _, r := range col.Port(0) {
				if r[0] == nil {
					kept = append(kept, -1)
					continue
				}
				kept = append(kept, r[0].(int64))
			}
			if !equal(kept, tc.wantKept) {
				t.Errorf("kept %v, want %v", kept, tc.wantKept)
			}
			var reasons []string
			for _, r := range col.Port(eventtime.ErrorsPort) {
				reasons = append(reasons, r[len(r)-1].(string))
			}
			if strings.Join(reasons, "\n") != strings.Join(tc.wantErrs, "\n") {
				t.Errorf("errors port:\n%s\nwant\n%s", strings.Join(reasons, "\n"), strings.Join(tc.wantErrs, "\n"))
			}
			snap := counters.Snapshot()
			for _, name := range []string{"future_time_rows", "past_time_rows", "out_of_range_rows"} {
				if snap[name] != tc.counters[name] {
					t.Errorf("%s = %d, want %d", name, snap[name], tc.counters[name])
				}
			}
		})
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNegativeBounds(t *testing.T) {
	if _, err := eventtime.New(eventtime.Policy{MaxFuture: -time.Second}, schema, engine.BuildContext{}); err == nil {
		t.Fatal("a negative bound was accepted")
	}
}

func BenchmarkGuard(b *testing.B) {
	mem := memory.NewGoAllocator()
	g, _ := eventtime.New(eventtime.Policy{MaxFuture: time.Minute, MaxPast: time.Hour, Now: func() time.Time { return now }}, schema, engine.BuildContext{Mem: mem})
	defer g.Close()
	rows := make([]enginetest.Row, 1024)
	for i := range rows {
		rows[i] = enginetest.Row{now.UnixMilli() - int64(i), "a", false}
	}
	rec := enginetest.Record(mem, schema, rows...)
	defer rec.Release()
	emit := func(_ int, b engine.Batch) error { b.Release(); return nil }
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rec.Retain()
		if err := g.Process(engine.Batch{Rec: rec}, emit); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}

func TestGuardRanges(t *testing.T) {
	measures := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "device", Type: engine.String},
		{Name: "power", Type: engine.Float64},
		{Name: "errors", Type: engine.Int64},
	}, "time", "device")
	ms := now.UnixMilli()
	ranges := []engine.ValueRange{
		{Column: "power", Point: "turbine.power", Min: 0, Max: 3000},
		{Column: "errors", Point: "turbine.errors", Min: math.Inf(-1), Max: 10},
	}
	tests := []struct {
		name     string
		policy   eventtime.Policy
		rows     []enginetest.Row
		kept     []string
		errs     []string
		counters map[string]int64
	}{
		{
			name:   "values in range pass, nulls too",
			policy: eventtime.Policy{Ranges: ranges},
			rows:   []enginetest.Row{{ms, "a", 0.0, int64(10)}, {ms, "b", 3000.0, nil}, {ms, "c", nil, int64(-5)}},
			kept:   []string{"a", "b", "c"},
		},
		{
			name:   "out of range, NaN and a bad time share the errors port",
			policy: eventtime.Policy{MaxFuture: time.Minute, Ranges: ranges},
			rows: []enginetest.Row{
				{ms, "ok", 1.0, int64(1)},
				{ms, "high", 3000.5, int64(1)},
				{ms + 2*60_000, "future", 99999.0, int64(1)},
				{ms, "nan", math.NaN(), int64(1)},
				{ms, "errors", -1.0, int64(11)},
				{ms, "ok2", 2.0, int64(0)},
			},
			kept: []string{"ok", "ok2"},
			errs: []string{
				"power: value 3000.5 is outside the range [0, 3000] of point turbine.power",
				"event time 2026-06-01T00:02:00.000Z is 2m0s ahead of the engine clock (event_time.max_future 1m0s)",
				"power: value NaN is not a number (range [0, 3000] of point turbine.power)",
				"power: value -1 is outside the range [0, 3000] of point turbine.power",
			},
			counters: map[string]int64{"value_range_rows": 3, "future_time_rows": 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			counters := engine.NewCounters()
			tc.policy.Now = func() time.Time { return now }
			g, err := eventtime.New(tc.policy, measures, engine.BuildContext{Mem: mem, Counters: counters})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			col := enginetest.NewCollector()
			if err := g.Process(engine.Batch{Rec: enginetest.Record(mem, measures, tc.rows...)}, col.Emit); err != nil {
				t.Fatal(err)
			}
			var kept, reasons []string
			for _, r := range col.Port(0) {
				kept = append(kept, r[1].(string))
			}
			for _, r := range col.Port(eventtime.ErrorsPort) {
				reasons = append(reasons, r[len(r)-1].(string))
			}
			if strings.Join(kept, " ") != strings.Join(tc.kept, " ") {
				t.Errorf("kept %v, want %v", kept, tc.kept)
			}
			if strings.Join(reasons, "\n") != strings.Join(tc.errs, "\n") {
				t.Errorf("errors port:\n%s\nwant\n%s", strings.Join(reasons, "\n"), strings.Join(tc.errs, "\n"))
			}
			snap := counters.Snapshot()
			for _, name := range eventtime.Counters {
				if snap[name] != tc.counters[name] {
					t.Errorf("%s = %d, want %d", name, snap[name], tc.counters[name])
				}
			}
		})
	}
}

func TestGuardRangeErrors(t *testing.T) {
	for _, r := range []engine.ValueRange{
		{Column: "nope", Point: "m.nope", Max: 1},
		{Column: "device", Point: "m.device", Max: 1},
		{Column: "time", Point: "m.time", Min: 2, Max: 1},
	} {
		if _, err := eventtime.New(eventtime.Policy{Ranges: []engine.ValueRange{r}}, schema, engine.BuildContext{}); err == nil {
			t.Errorf("range %+v accepted", r)
		}
	}
}

// BenchmarkGuardRanges measures the guard with two value ranges on rows
// that all pass.
func BenchmarkGuardRanges(b *testing.B) {
	measures := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "device", Type: engine.String},
		{Name: "power", Type: engine.Float64},
		{Name: "errors", Type: engine.Int64},
	}, "time", "device")
	mem := memory.NewGoAllocator()
	p := eventtime.Policy{MaxFuture: time.Minute, MaxPast: time.Hour, Now: func() time.Time { return now },
		Ranges: []engine.ValueRange{{Column: "power", Point: "t.power", Min: 0, Max: 3000}, {Column: "errors", Point: "t.errors", Min: 0, Max: 10}}}
	g, _ := eventtime.New(p, measures, engine.BuildContext{Mem: mem})
	defer g.Close()
	rows := make([]enginetest.Row, 1024)
	for i := range rows {
		rows[i] = enginetest.Row{now.UnixMilli() - int64(i), "a", float64(i), int64(i % 10)}
	}
	rec := enginetest.Record(mem, measures, rows...)
	defer rec.Release()
	emit := func(_ int, b engine.Batch) error { b.Release(); return nil }
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rec.Retain()
		if err := g.Process(engine.Batch{Rec: rec}, emit); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}
