package codec_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/connectors/codec"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
)

const turbineModels = `models:
  - id: turbine
    points:
      power: {type: float64, min: 0, max: 3000}
      wind_speed: {type: float64, min: 0}
      status: {type: string}
      errors: {type: int64, max: 10}
`

func TestParseMappingModel(t *testing.T) {
	cat, err := assets.Parse("models/farm.yaml", []byte(turbineModels))
	if err != nil {
		t.Fatal(err)
	}
	release := engine.BuildContext{Catalog: cat}
	tests := []struct {
		name   string
		decl   string
		bc     engine.BuildContext
		schema string // Schema.String(); empty: want err
		ranges string // fmt of the ranges
		err    string
	}{
		{
			name:   "points become columns after time and key",
			decl:   "schema: {key: asset, model: turbine}",
			bc:     release,
			schema: "time:timestamp(time), asset:string(key), power:float64, wind_speed:float64, status:string, errors:int64",
		},
		{
			name:   "extra fields after the points, ranges routed",
			decl:   "schema: {key: asset, model: turbine, ranges: route, fields: {site: string}}",
			bc:     release,
			schema: "time:timestamp(time), asset:string(key), power:float64, wind_speed:float64, status:string, errors:int64, site:string",
			ranges: "[{power turbine.power 0 3000} {wind_speed turbine.wind_speed 0 +Inf} {errors turbine.errors -Inf 10}]",
		},
		{name: "outside a release", decl: "schema: {model: turbine}", err: `test.yaml:1:17: model: thing models come with a release`},
		{name: "unknown model", decl: "schema: {model: turbin}", bc: release, err: `test.yaml:1:17: model: the release has no model "turbin" (models: turbine)`},
		{name: "field that is a point", decl: "schema: {model: turbine, fields: {power: int64}}", bc: release, err: `test.yaml:1:35: column "power" is also a point of model "turbine"`},
		{name: "ranges without a model", decl: "schema: {ranges: route, fields: {a: int64}}", bc: release, err: `test.yaml:1:18: ranges applies to the points of a model`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := codec.ParseMappingFor(parseConfig(t, tt.decl), tt.bc)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Schema.String(); got != tt.schema {
				t.Errorf("schema %q, want %q", got, tt.schema)
			}
			got := ""
			if m.Ranges != nil {
				got = fmt.Sprint(m.Ranges)
			}
			if got != tt.ranges {
				t.Errorf("ranges %s, want %s", got, tt.ranges)
			}
		})
	}
}
