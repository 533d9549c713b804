package transform_test

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/operators/transform"
)

// bench runs one step over 1,024-row batches and reports ns/row; allocs/op
// are per batch.
func bench(b *testing.B, s spec.Spec, nf build, config string) {
	mem := memory.NewGoAllocator()
	var rows []enginetest.Row
	status := []string{"run", "run", "run", "stop"}
	for i := range 1024 {
		rows = append(rows, row(i, fmt.Sprintf("wt-%04d", i%1000), float64(40+i%60), float64(i), status[i%4], int64(i)))
	}
	rec := enginetest.Record(mem, in, rows...)
	defer rec.Release()
	op, err := nf(parse(b, s, config), in, engine.BuildContext{Mem: mem})
	if err != nil {
		b.Fatal(err)
	}
	defer op.Close()
	sink := func(port int, bt engine.Batch) error { bt.Release(); return nil }
	b.ReportAllocs()
	for b.Loop() {
		rec.Retain()
		if err := op.Process(engine.Batch{Rec: rec}, sink); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}

func BenchmarkFilter(b *testing.B) {
	b.Run("native", func(b *testing.B) { bench(b, transform.FilterSpec, newFilter, `expr: temp > 80 && status == "run"`) })
	b.Run("all-pass", func(b *testing.B) { bench(b, transform.FilterSpec, newFilter, `expr: power >= 0`) })
	b.Run("vm", func(b *testing.B) {
		bench(b, transform.FilterSpec, newFilter, `expr: upper(status) == "RUN" && temp > 80`)
	})
}

func BenchmarkMap(b *testing.B) {
	b.Run("native", func(b *testing.B) {
		bench(b, transform.MapSpec, newMap, "fields: {temp_f: temp * 1.8 + 32, hot: temp > 80, power: power / 1000}")
	})
	b.Run("vm", func(b *testing.B) {
		bench(b, transform.MapSpec, newMap, "fields: {label: turbine + \"/\" + status}")
	})
}
