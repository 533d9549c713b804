package alert_test

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/alert"
)

// Offline history (EnOS resume) feeds the cloud but raises no alerts unless
// alert_on_history is set.
func TestHistoryRowsRaiseNoAlerts(t *testing.T) {
	hin := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "asset", Type: engine.String},
		{Name: "temp", Type: engine.Float64},
		{Name: "history", Type: engine.Bool},
	}, "time", "asset")
	rows := []enginetest.Row{
		{minute(0), "T1", 99.0, true},  // history: hot, but old
		{minute(1), "T2", 99.0, false}, // live: hot
	}
	tests := []struct {
		config      string
		wantRaised  int64
		wantSkipped int64
	}{
		{"rules: [{name: hot, expr: temp > 90, severity: major}]", 1, 1},
		{"alert_on_history: true\nrules: [{name: hot, expr: temp > 90, severity: major}]", 2, 0},
	}
	for _, tt := range tests {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		counters := engine.NewCounters()
		op, err := alert.New(parse(t, tt.config), hin, engine.BuildContext{Pipeline: "p", Name: "a", Mem: mem, Counters: counters})
		if err != nil {
			t.Fatal(err)
		}
		col := enginetest.NewCollector()
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, hin, rows...)}, col.Emit); err != nil {
			t.Fatal(err)
		}
		if err := op.Flush(col.Emit); err != nil {
			t.Fatal(err)
		}
		_ = op.Close()
		snap := counters.Snapshot()
		if snap["raised"] != tt.wantRaised || snap["history_rows_skipped"] != tt.wantSkipped {
			t.Errorf("%q: raised %d skipped %d, want %d and %d", tt.config, snap["raised"], snap["history_rows_skipped"], tt.wantRaised, tt.wantSkipped)
		}
		mem.AssertSize(t, 0)
	}
}
