package window_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/window"
)

// alertRoute collects the engine alerts raised in a run.
type alertRoute struct {
	mu   sync.Mutex
	rows []enginetest.Row
}

func (r *alertRoute) Raise(rec arrow.RecordBatch) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, enginetest.Rows(rec)...)
	return 1
}

// TestLateRowsSpikeRaisesAlert: when a large share of rows arrives after
// their windows closed, the step raises a late_rows engine alert and clears
// it once rows are on time again; the alert carries the share and names the
// step.
func TestLateRowsSpikeRaisesAlert(t *testing.T) {
	sh := engine.NewShared()
	route := &alertRoute{}
	engine.AlertRouteOf(sh, func() engine.AlertRoute { return route })
	cfg, err := parseCfg(t, "size: 10s\nwatermark_keys: 1\naggregates: {power: [sum]}")
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewGoAllocator()
	op, err := window.New(cfg, testSchema, engine.BuildContext{Pipeline: "farm", Name: "stats", Mem: mem, Shared: sh})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	col := enginetest.NewCollector()
	feed := func(rows []enginetest.Row) {
		t.Helper()
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, testSchema, rows...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
	}
	ts := int64(1_000_000)
	// A block where one row in four is a minute behind: late (but the
	// first, which comes before any watermark).
	for i := range 1000 {
		ts += 10
		r := enginetest.Row{ts, "a", 1.0, nil, nil, nil}
		if i%4 == 0 {
			r[0] = ts - 60_000
		}
		feed([]enginetest.Row{r})
	}
	if len(route.rows) != 1 {
		t.Fatalf("%d alerts after a block with 25%% late rows, want 1 raised", len(route.rows))
	}
	raised := route.rows[0]
	// AlertSchema: time id asset rule severity type content value occur recover state
	if raised[3] != window.LateAlertRule || raised[2] != "farm/stats" || raised[10] != engine.AlertRaised ||
		!strings.Contains(raised[6].(string), "25% of the rows of farm/stats arrived after their windows closed (249 of 1000); the watermark follows \"a\" at") {
		t.Fatalf("raised alert %v", raised)
	}
	// On time again: cleared, with the same id.
	var rows []enginetest.Row
	for range 1000 {
		ts += 10
		rows = append(rows, enginetest.Row{ts, "a", 1.0, nil, nil, nil})
	}
	feed(rows)
	if len(route.rows) != 2 || route.rows[1][10] != engine.AlertCleared || route.rows[1][1] != raised[1] {
		t.Fatalf("alerts %v, want the raise then its clear", route.rows)
	}
}
