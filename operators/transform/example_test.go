package transform_test

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/transform"
)

func Example() {
	s := engine.MustSchema([]engine.Field{
		{Name: "time", Type: engine.Timestamp},
		{Name: "turbine", Type: engine.String},
		{Name: "temp", Type: engine.Float64},
	}, "time", "turbine")

	var node yaml.Node
	_ = yaml.Unmarshal([]byte("type: map\nfields:\n  temp_f: temp * 1.8 + 32\n  hot: temp > 80\n"), &node)
	cfg, errs := transform.MapSpec.Parse("site.yaml", &node, "type", "input")
	if len(errs) > 0 {
		panic(errs)
	}
	m, err := transform.NewMap(cfg, s, engine.BuildContext{})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	fmt.Println(m.Outputs()[0].Schema)

	rec := enginetest.Record(memory.DefaultAllocator, s,
		enginetest.Row{int64(0), "wt-1", 85.0},
		enginetest.Row{int64(0), "wt-2", nil},
	)
	col := enginetest.NewCollector()
	if err := m.Process(engine.Batch{Rec: rec}, col.Emit); err != nil {
		panic(err)
	}
	fmt.Println("rows:", col.Port(0))
	fmt.Println("errors:", col.Port(transform.ErrorsPort))
	// Output:
	// time:timestamp(time), turbine:string(key), temp:float64, temp_f:float64, hot:bool
	// rows: [[0 wt-1 85 185 true]]
	// errors: [[0 wt-2 <nil> temp_f: field temp is null]]
}
