package window_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/window"
)

// TestHostileEventTimes feeds event times at and beyond the limits of int64
// among normal rows. Times outside engine.MinEventTime..MaxEventTime go to
// the late port, counted as out_of_range_rows; they neither move the
// watermark nor open windows (an int64-max time used to make a hopping
// window allocate until the process ran out of memory); times at the
// limits give exact window bounds.
func TestHostileEventTimes(t *testing.T) {
	row := func(ts int64, key string) enginetest.Row { return enginetest.Row{ts, key, 1.0, nil, nil, nil} }
	hostile := []int64{math.MaxInt64, math.MinInt64, engine.MaxEventTime + 1, engine.MinEventTime - 1, math.MaxInt64 - 1000}
	for _, cfg := range []string{
		"size: 10s",
		"kind: hopping\nsize: 10s\nstep: 5s",
		"kind: hopping\nsize: 1h\nstep: 10s\nlateness: 1m",
		"kind: session\ngap: 10s",
	} {
		t.Run(cfg, func(t *testing.T) {
			var rows []enginetest.Row
			for i, h := range hostile {
				rows = append(rows, row(int64(i)*1000, "a"), row(h, "evil"))
			}
			rows = append(rows, row(20000, "a"))
			col, counters := runMem(t, false, cfg+"\naggregates: {power: [sum]}", testSchema, []batchIn{{rows: rows}})
			late := col.Port(window.LatePort)
			if len(late) != len(hostile) {
				t.Fatalf("late port has %d rows, want the %d hostile ones: %v", len(late), len(hostile), late)
			}
			for i, r := range late {
				if r[0].(int64) != hostile[i] {
					t.Errorf("late row %d has time %v, want %d", i, r[0], hostile[i])
				}
			}
			if got := counters.Snapshot()["out_of_range_rows"]; got != int64(len(hostile)) {
				t.Errorf("out_of_range_rows = %d, want %d", got, len(hostile))
			}
			var n int64
			for _, r := range col.Port(0) {
				if r[2] != "a" {
					t.Errorf("window of key %v", r[2])
				}
				if r[1].(int64) <= r[0].(int64) {
					t.Errorf("window end %v <= start %v", r[1], r[0])
				}
				if cfg == "size: 10s" {
					n += r[3].(int64)
				}
			}
			if cfg == "size: 10s" && n != int64(len(hostile)+1) {
				t.Errorf("%d rows in windows, want %d", n, len(hostile)+1)
			}
		})
	}
}

// TestEventTimeLimits checks windows of rows at the very limits of the
// accepted range: their bounds are exact, with no wrap-around.
func TestEventTimeLimits(t *testing.T) {
	for _, tc := range []struct {
		cfg        string
		ts         int64
		start, end int64
	}{
		{"size: 10s", engine.MaxEventTime, engine.MaxEventTime - 9999, engine.MaxEventTime + 1},
		{"size: 10s", engine.MinEventTime, engine.MinEventTime, engine.MinEventTime + 10000},
		{"kind: session\ngap: 1h", engine.MaxEventTime, engine.MaxEventTime, engine.MaxEventTime + 3600000},
	} {
		col, _ := run(t, tc.cfg+"\naggregates: {power: [sum]}", testSchema, []batchIn{{rows: []enginetest.Row{{tc.ts, "a", 1.0, nil, nil, nil}}}})
		out := col.Port(0)
		if len(out) != 1 || out[0][0] != tc.start || out[0][1] != tc.end {
			t.Errorf("%s at %d: windows %v, want [%d, %d)", tc.cfg, tc.ts, out, tc.start, tc.end)
		}
	}
}

// TestOneKeyCannotDragWatermark checks that a key whose event times run far
// ahead (a device with a wrong clock) makes no row of the other keys late:
// their windows close as their own times advance, and once the runaway key
// has been silent for watermark_idle_rows rows it no longer counts.
func TestOneKeyCannotDragWatermark(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	counters := engine.NewCounters()
	op := newOp(t, "size: 10s\nwatermark_idle_rows: 50\naggregates: {power: [sum]}", testSchema, mem, counters)
	defer op.Close()
	col := enginetest.NewCollector()
	feed := func(rows ...enginetest.Row) {
		t.Helper()
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, testSchema, rows...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
	}
	const future = int64(253402214400000) // 9999-12-31
	// Three devices report every second; in the middle, one post dated
	// 9999-12-31 arrives from a device nobody knows.
	for sec := int64(0); sec < 120; sec++ {
		ts := sec * 1000
		var rows []enginetest.Row
		for _, k := range []string{"t1", "t2", "t3"} {
			rows = append(rows, enginetest.Row{ts, k, 1.0, nil, nil, nil})
		}
		if sec == 30 {
			rows = append(rows, enginetest.Row{future, "evil", 1.0, nil, nil, nil})
		}
		feed(rows...)
	}
	if n := counters.Snapshot()["late_rows"]; n != 0 {
		t.Fatalf("%d rows of the punctual devices went late after one post from the future", n)
	}
	wm, _ := op.Watermark()
	if wm != 119000 {
		t.Errorf("watermark %d, want 119000 (the devices' own progress)", wm)
	}
	// Windows up to the watermark closed: 11 full windows of 3 devices.
	if n := len(col.Port(0)); n != 33 {
		t.Errorf("%d windows closed, want 33", n)
	}
	// With watermark_keys 1 the same input silences everyone.
	col2, c2 := runMem(t, false, "size: 10s\nwatermark_keys: 1\naggregates: {power: [sum]}", testSchema, []batchIn{
		{rows: []enginetest.Row{{int64(0), "t1", 1.0, nil, nil, nil}, {future, "evil", 1.0, nil, nil, nil}}},
		{rows: []enginetest.Row{{int64(1000), "t1", 1.0, nil, nil, nil}}},
	})
	if c2.Snapshot()["late_rows"] != 1 || len(col2.Port(window.LatePort)) != 1 {
		t.Errorf("watermark_keys 1: late rows %v, want the row after the runaway post", c2.Snapshot())
	}
}

// TestSilentKeyHoldsNoWindow checks that a key that stops reporting stops
// holding the watermark back once watermark_idle_rows rows of its source
// passed without it.
func TestSilentKeyHoldsNoWindow(t *testing.T) {
	var batches []batchIn
	for sec := int64(0); sec < 100; sec++ {
		rows := []enginetest.Row{{sec * 1000, "t1", 1.0, nil, nil, nil}}
		if sec < 5 {
			rows = append(rows, enginetest.Row{sec * 1000, "t2", 1.0, nil, nil, nil})
		}
		batches = append(batches, batchIn{rows: rows})
	}
	mem := memory.NewGoAllocator()
	op := newOp(t, "size: 10s\nwatermark_idle_rows: 20\naggregates: {power: [sum]}", testSchema, mem, nil)
	defer op.Close()
	col := enginetest.NewCollector()
	for _, b := range batches {
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, testSchema, b.rows...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
	}
	// t2 went silent at 4s; 20 rows later only t1 counts, and t1's
	// windows close as it advances.
	if wm, _ := op.Watermark(); wm != 99000 {
		t.Errorf("watermark %d, want 99000", wm)
	}
	if n := len(col.Port(0)); n != 10 { // t1: 9 windows before 90s, t2: 1
		t.Errorf("%d windows, want 10", n)
	}
}

// TestKeyFlood checks that the step's per-key state is bounded: keys beyond
// max_keys and keys longer than max_key_bytes go to the late port with their
// own counters, keys that went idle are forgotten, and a new device is
// admitted again once the flood's keys have been forgotten.
func TestKeyFlood(t *testing.T) {
	mem := memory.NewGoAllocator()
	counters := engine.NewCounters()
	op := newOp(t, "size: 10s\nmax_keys: 100\nmax_key_bytes: 16\nwatermark_idle_rows: 20\naggregates: {power: [sum]}", testSchema, mem, counters)
	defer op.Close()
	col := enginetest.NewCollector()
	feed := func(rows ...enginetest.Row) {
		t.Helper()
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, testSchema, rows...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
	}
	var flood []enginetest.Row
	for i := range 1000 {
		flood = append(flood, enginetest.Row{int64(1000), fmt.Sprintf("junk%06d", i), 1.0, nil, nil, nil})
	}
	flood = append(flood, enginetest.Row{int64(1000), strings.Repeat("k", 32000), 1.0, nil, nil, nil})
	feed(flood...)
	snap := counters.Snapshot()
	if snap["key_limit_rows"] != 900 || snap["long_key_rows"] != 1 || snap["late_rows"] != 0 {
		t.Fatalf("counters %v, want key_limit_rows=900 long_key_rows=1 late_rows=0", snap)
	}
	if n := len(col.Port(window.LatePort)); n != 901 {
		t.Fatalf("late port has %d rows, want 901", n)
	}
	// A device reports on. Its rows are refused while the table is full,
	// but they move the watermark: the flood's windows close, its keys go
	// idle and are forgotten (two window lengths later), and the device is
	// admitted; so is a new one.
	for sec := int64(2); sec < 60; sec++ {
		feed(enginetest.Row{sec * 1000, "t1", 1.0, nil, nil, nil})
	}
	refused := counters.Snapshot()["key_limit_rows"]
	if refused <= 900 || refused > 900+40 {
		t.Fatalf("key_limit_rows %d: t1 should be refused only until the flood's keys are forgotten (about 30 rows)", refused)
	}
	feed(enginetest.Row{int64(60000), "t1", 1.0, nil, nil, nil}, enginetest.Row{int64(60000), "t2", 1.0, nil, nil, nil})
	if n := counters.Snapshot()["key_limit_rows"]; n != refused {
		t.Errorf("key_limit_rows %d, want %d: t1 or t2 was refused after the flood went idle", n, refused)
	}
}
