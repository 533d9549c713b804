package window

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// TestStateBounded checks that state is O(keys x open windows): slots are
// reused window after window, and keys that stop reporting are forgotten.
func TestStateBounded(t *testing.T) {
	in := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "asset", Type: engine.String},
		{Name: "v", Type: engine.Float64},
	}, "time", "asset")
	for _, cfgText := range []string{
		"size: 1m\naggregates: {v: [avg, p95, first]}",
		"kind: hopping\nsize: 1m\nstep: 20s\naggregates: {v: [avg, p95, first]}",
		"kind: session\ngap: 30s\naggregates: {v: [avg, p95, first]}",
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(cfgText), &doc); err != nil {
			t.Fatal(err)
		}
		cfg, errs := Spec.Parse("t.yaml", &doc)
		if errs != nil {
			t.Fatal(errs)
		}
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		op, err := New(cfg, in, engine.BuildContext{Mem: mem})
		if err != nil {
			t.Fatal(err)
		}
		emit := func(port int, b engine.Batch) error { b.Release(); return nil }
		maxSlots := 0
		for sec := range 3600 {
			var rows []enginetest.Row
			for k := range 10 {
				// 40 keys report during the first 10 minutes only.
				if sec < 600 {
					rows = append(rows, enginetest.Row{int64(sec * 1000), fmt.Sprintf("gone-%d", k), float64(sec)})
					rows = append(rows, enginetest.Row{int64(sec * 1000), fmt.Sprintf("gone-%d", k+10), float64(sec)})
				}
				rows = append(rows, enginetest.Row{int64(sec*1000 + k), fmt.Sprintf("stay-%d", k), float64(k)})
			}
			if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, emit); err != nil {
				t.Fatal(err)
			}
			maxSlots = max(maxSlots, len(op.slotCount)-len(op.freeSlots))
		}
		if len(op.keyIdx) != 10 {
			t.Errorf("%q: %d keys remembered, want the 10 that still report", cfgText, len(op.keyIdx))
		}
		if len(op.slotCount) > 200 {
			t.Errorf("%q: %d slots allocated for 30 keys", cfgText, len(op.slotCount))
		}
		t.Logf("%q: at most %d slots in use, %d allocated", cfgText, maxSlots, len(op.slotCount))
		if err := op.Flush(emit); err != nil {
			t.Fatal(err)
		}
		op.Close()
		mem.AssertSize(t, 0)
	}
}

// TestFreeSlotsTrimmed checks that the buffers of slots left free by keys
// that went away are dropped once the watermark has moved on, while the
// slots of keys that still report keep theirs.
func TestFreeSlotsTrimmed(t *testing.T) {
	in := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "asset", Type: engine.String},
		{Name: "v", Type: engine.Float64},
	}, "time", "asset")
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("size: 1m\naggregates: {v: [avg, stddev, p95]}"), &doc); err != nil {
		t.Fatal(err)
	}
	cfg, errs := Spec.Parse("t.yaml", &doc)
	if errs != nil {
		t.Fatal(errs)
	}
	defer SetLogRows(20)() // some windows turn dense
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	op, err := New(cfg, in, engine.BuildContext{Mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	emit := func(port int, b engine.Batch) error { b.Release(); return nil }
	held := func() (n int) {
		for _, s := range op.freeSlots {
			if op.skLog[s] != nil || op.dense[s] != nil || op.cold[s] != nil {
				n++
			}
		}
		return n
	}
	for sec := range 1800 {
		var rows []enginetest.Row
		if sec < 300 { // a burst of 200 keys for five minutes
			for k := range 200 {
				rows = append(rows, enginetest.Row{int64(sec * 1000), fmt.Sprintf("burst-%d", k), float64(k) * 1e-30 * float64(1+sec%7)})
			}
		}
		for k := range 5 {
			rows = append(rows, enginetest.Row{int64(sec*1000 + k), fmt.Sprintf("stay-%d", k), float64(sec)})
		}
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, emit); err != nil {
			t.Fatal(err)
		}
	}
	if n := held(); n > 10 {
		t.Errorf("%d of %d free slots still hold buffers 25 minutes after the burst", n, len(op.freeSlots))
	}
	if len(op.freeSlots) < 150 {
		t.Errorf("only %d free slots: the burst should have left some", len(op.freeSlots))
	}
	if err := op.Flush(emit); err != nil {
		t.Fatal(err)
	}
	op.Close()
	mem.AssertSize(t, 0)
}
