package alert_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/alert"
)

// edgeAlerts runs the same rows through an alert step of pipeline
// "site", step "alerts" on edge and returns the ids of its alert rows.
func edgeAlerts(t *testing.T, edge string) []string {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	op, err := alert.New(parse(t, "rules: [{name: hot, expr: temp_max > 90}]"), in,
		engine.BuildContext{Pipeline: "site", Name: "alerts", Edge: edge, Mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	col := enginetest.NewCollector()
	rec := enginetest.Record(mem, in, row(0, "T01", 95.0, 1.0), row(1, "T01", 70.0, 1.0), row(2, "T02", 99.0, 1.0))
	if err := op.Process(engine.Batch{Rec: rec}, col.Emit); err != nil {
		t.Fatal(err)
	}
	if err := op.Flush(col.Emit); err != nil {
		t.Fatal(err)
	}
	if err := op.Close(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range alerts(col.Port(0)) {
		ids = append(ids, a.id)
	}
	if len(ids) != 3 || ids[0] != ids[1] || ids[0] == ids[2] {
		t.Fatalf("edge %q: ids %q: want a raise and clear of T01 with one id, a raise of T02 with another", edge, ids)
	}
	return ids
}

// TestAlertIDsUniqueAcrossEdges: two edges running the same pipeline on
// assets of the same names raise alerts with different ids (a consumer
// of the whole fleet keys alerts by id), while one edge gives the same
// ids for the same input every time.
func TestAlertIDsUniqueAcrossEdges(t *testing.T) {
	a, again, b := edgeAlerts(t, "site-a"), edgeAlerts(t, "site-a"), edgeAlerts(t, "site-b")
	for i := range a {
		if a[i] != again[i] {
			t.Errorf("alert %d: id %s, then %s for the same input on the same edge", i, a[i], again[i])
		}
		if a[i] == b[i] {
			t.Errorf("alert %d: id %s on edge site-a and on edge site-b", i, a[i])
		}
	}
}

// TestAlertIDFormula: the id is the documented hash (docs/alert.md) of
// edge, pipeline, step, rule, asset and occur time; consumers may compute
// it.
func TestAlertIDFormula(t *testing.T) {
	ids := edgeAlerts(t, "site-a")
	for i, c := range []struct {
		asset string
		occur int64
	}{{"T01", minute(0)}, {"T01", minute(0)}, {"T02", minute(2)}} {
		h := sha256.New()
		for _, s := range []string{"site-a", "site", "alerts", "hot", c.asset} {
			fmt.Fprintf(h, "%d:%s", len(s), s)
		}
		fmt.Fprintf(h, "%d", c.occur)
		if want := hex.EncodeToString(h.Sum(nil)[:16]); ids[i] != want {
			t.Errorf("alert %d: id %s, want %s", i, ids[i], want)
		}
	}
}

// TestAlertIDKeptByRestoreOnEdge: an alert raised on an edge before a
// hand-over (Snapshot, Restore into a new step) clears after it with the
// id of its raise, the id an uninterrupted run gives.
func TestAlertIDKeptByRestoreOnEdge(t *testing.T) {
	want := edgeAlerts(t, "site-a")
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	cfg := parse(t, "rules: [{name: hot, expr: temp_max > 90}]")
	bc := engine.BuildContext{Pipeline: "site", Name: "alerts", Edge: "site-a", Mem: mem}
	col := enginetest.NewCollector()
	first, err := alert.New(cfg, in, bc)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Process(engine.Batch{Rec: enginetest.Record(mem, in, row(0, "T01", 95.0, 1.0))}, col.Emit); err != nil {
		t.Fatal(err)
	}
	st, err := first.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := alert.New(cfg, in, bc)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.Restore(st); err != nil {
		t.Fatal(err)
	}
	if err := second.Process(engine.Batch{Rec: enginetest.Record(mem, in, row(1, "T01", 70.0, 1.0), row(2, "T02", 99.0, 1.0))}, col.Emit); err != nil {
		t.Fatal(err)
	}
	if err := second.Flush(col.Emit); err != nil {
		t.Fatal(err)
	}
	as := alerts(col.Port(0))
	if len(as) != 3 {
		t.Fatalf("alerts %v", as)
	}
	for i, a := range as {
		if a.id != want[i] {
			t.Errorf("alert %d (%s): id %s, uninterrupted run %s", i, a, a.id, want[i])
		}
	}
}
