package window_test

import (
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/window"
)

// A one-minute tumbling window per turbine.
func Example() {
	in := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "asset", Type: engine.String},
		{Name: "power", Type: engine.Float64},
	}, "time", "asset")

	var doc yaml.Node
	_ = yaml.Unmarshal([]byte(`
kind: tumbling
size: 1m
aggregates:
  power: [avg, max, p95]
`), &doc)
	cfg, errs := window.Spec.Parse("site.yaml", &doc)
	if errs != nil {
		fmt.Println(errs)
		return
	}
	op, err := window.New(cfg, in, engine.BuildContext{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer op.Close()

	print := func(port int, b engine.Batch) error {
		defer b.Release()
		for _, r := range enginetest.Rows(b.Rec) {
			start := time.UnixMilli(r[0].(int64)).UTC().Format("15:04:05")
			end := time.UnixMilli(r[1].(int64)).UTC().Format("15:04:05")
			fmt.Println(start, end, r[2], "count", r[3], "avg", r[4], "max", r[5], "p95", r[6])
		}
		return nil
	}
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	rec := enginetest.Record(memory.DefaultAllocator, in,
		enginetest.Row{at(5), "wtg-01", 1000.0},
		enginetest.Row{at(20), "wtg-02", 1500.0},
		enginetest.Row{at(35), "wtg-01", 1200.0},
		enginetest.Row{at(70), "wtg-01", 900.0},
	)
	// The row at 12:01:10 moves the watermark past 12:01:00: the first
	// window closes during Process; Flush emits the rest.
	if err := op.Process(engine.Batch{Rec: rec}, print); err != nil {
		fmt.Println(err)
	}
	if err := op.Flush(print); err != nil {
		fmt.Println(err)
	}
	// Output:
	// 12:00:00 12:01:00 wtg-01 count 2 avg 1100 max 1200 p95 1200
	// 12:00:00 12:01:00 wtg-02 count 1 avg 1500 max 1500 p95 1500
	// 12:01:00 12:02:00 wtg-01 count 1 avg 900 max 900 p95 900
}
