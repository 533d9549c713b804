package infer_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/operators/infer"
)

// A LightGBM model of two trees over wind speed and pitch, in the text
// format booster.save_model writes.
const powerCurve = `tree
version=v3
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=regression
feature_names=wind_speed pitch
tree_sizes=1 1

Tree=0
num_leaves=3
num_cat=0
split_feature=0 0
threshold=4 12
decision_type=2 2
left_child=-1 -2
right_child=1 -3
leaf_value=0 900 2000
shrinkage=1

Tree=1
num_leaves=2
num_cat=0
split_feature=1
threshold=10
decision_type=2
left_child=-1
right_child=-2
leaf_value=50 -400
shrinkage=1

end of trees
`

// Example scores three rows with a tree ensemble: the expected power
// column and a flag for low expected power are added, and the row with a
// NaN feature goes to the errors port.
func Example() {
	dir, _ := os.MkdirTemp("", "infer-example")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "power.txt"), []byte(powerCurve), 0o644)

	var node yaml.Node
	_ = yaml.Unmarshal([]byte(`
model: power.txt
version: v1
outputs: [expected_power]
thresholds: [{column: low, below: 500}]
`), &node)
	cfg, errs := infer.Spec.Parse("pipeline.yaml", &node)
	if errs != nil {
		fmt.Println(errs)
		return
	}
	in := engine.MustSchema([]engine.Field{
		{Name: "turbine", Type: engine.String},
		{Name: "wind_speed", Type: engine.Float64},
		{Name: "pitch", Type: engine.Float64},
	}, "", "turbine")
	step, err := infer.New(cfg, in, engine.BuildContext{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer step.Close()
	rec := enginetest.Record(memory.DefaultAllocator, in,
		enginetest.Row{"wt-1", 3.0, 2.0},
		enginetest.Row{"wt-2", 9.0, 14.0},
		enginetest.Row{"wt-3", nan(), 2.0},
	)
	_ = step.Process(engine.Batch{Rec: rec}, func(port int, b engine.Batch) error {
		defer b.Release()
		for _, row := range enginetest.Rows(b.Rec) {
			fmt.Println(step.Outputs()[port].Name, row)
		}
		return nil
	})
	// Output:
	//  [wt-1 3 2 50 true v1]
	//  [wt-2 9 14 500 false v1]
	// errors [wt-3 NaN 2 feature wind_speed is NaN]
}

func nan() float64 { return math.NaN() }
