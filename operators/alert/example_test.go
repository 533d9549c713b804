package alert_test

import (
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/alert"
)

func Example() {
	stats := engine.MustSchema([]engine.Field{
		{Name: "window_start", Type: engine.Timestamp},
		{Name: "turbine", Type: engine.String},
		{Name: "gearbox_temp_max", Type: engine.Float64},
	}, "window_start", "turbine")

	var node yaml.Node
	_ = yaml.Unmarshal([]byte(`
type: alert
rules:
  - name: gearbox_hot
    expr: gearbox_temp_max > 85
    clear: gearbox_temp_max < 80
    for: 2m
    severity: major
    content: "gearbox at {{.gearbox_temp_max}} °C"
`), &node)
	cfg, errs := alert.Spec.Parse("site.yaml", &node, "type", "input")
	if len(errs) > 0 {
		panic(errs)
	}
	op, err := alert.New(cfg, stats, engine.BuildContext{Pipeline: "site", Name: "alerts"})
	if err != nil {
		panic(err)
	}
	defer op.Close()

	start := time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)
	var rows []enginetest.Row
	for i, temp := range []float64{80, 86, 88, 90, 84, 79, 70} {
		rows = append(rows, enginetest.Row{start.Add(time.Duration(i) * time.Minute), "WT-1", temp})
	}
	col := enginetest.NewCollector()
	if err := op.Process(engine.Batch{Rec: enginetest.Record(memory.DefaultAllocator, stats, rows...)}, col.Emit); err != nil {
		panic(err)
	}
	for _, r := range col.Port(0) {
		at := func(v any) string {
			if v == nil {
				return "-"
			}
			return time.UnixMilli(v.(int64)).UTC().Format("15:04")
		}
		// time, asset, rule, severity, content, value, occur_time, recover_time, state
		fmt.Println(at(r[0]), r[2], r[3], r[4], r[6], r[7], at(r[8]), at(r[9]), r[10])
	}
	// Output:
	// 08:03 WT-1 gearbox_hot major gearbox at 90 °C 90 08:01 - raised
	// 08:05 WT-1 gearbox_hot major gearbox at 79 °C 79 08:01 08:05 cleared
}
