package mqtt

import (
	"fmt"
	"testing"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
)

// TestSchemaFromModel: in a release, the source's columns can come from a
// thing model, and with ranges route it reports the points' ranges so that
// the pipeline's guard routes values out of range.
func TestSchemaFromModel(t *testing.T) {
	cat, err := assets.Parse("models/m.yaml", []byte("models:\n  - id: turbine\n    points:\n      power: {min: 0, max: 3000}\n      status: {type: string}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ranges, schema, want string
	}{
		{"ranges routed", "route", "time:timestamp(time), deviceKey:string(key), power:float64, status:string, history:bool", "[{power turbine.power 0 3000}]"},
		{"ranges ignored by default", "", "time:timestamp(time), deviceKey:string(key), power:float64, status:string, history:bool", "[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ranges := ""
			if tc.ranges != "" {
				ranges = ", ranges: " + tc.ranges
			}
			doc := "urls: [tcp://127.0.0.1:1883]\ntopics: [/sys/+/+/thing/measurepoint/post]\nschema: {key: deviceKey, model: turbine" + ranges + "}\n"
			src, err := tryBuildSource(doc, engine.BuildContext{DryRun: true, Catalog: cat})
			if err != nil {
				t.Fatal(err)
			}
			if got := src.Schema().String(); got != tc.schema {
				t.Errorf("schema %s, want %s", got, tc.schema)
			}
			if got := fmt.Sprint(src.Ranges()); got != tc.want {
				t.Errorf("ranges %s, want %s", got, tc.want)
			}
		})
	}
}
