package assets_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const farm = `models:
  - id: turbine
    name: Wind turbine
    points:
      temp: {type: float64, unit: "°C", min: -40, max: 120}
      state: {type: string}
    attributes:
      max_temp: {type: float64, default: 85}
      rated_kw: {type: int64}
      site: {type: string, default: north}
      monitored: {type: bool, default: true}
  - id: transformer
    attributes:
      max_oil_temp: {type: float64, default: 95.5}
assets:
  - id: WT-001
    name: Turbine 1
    model: turbine
    attributes: {max_temp: 90, rated_kw: 2000}
  - id: WT-002
    model: turbine
  - id: TR-1
    model: transformer
    attributes:
      max_oil_temp: 100
`

func TestParse(t *testing.T) {
	c, err := assets.Parse("farm.yaml", []byte(farm))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Models) != 2 || len(c.Assets) != 3 {
		t.Fatalf("%d models, %d assets", len(c.Models), len(c.Assets))
	}
	m, ok := c.Model("turbine")
	if !ok || m.Name != "Wind turbine" {
		t.Fatalf("model %+v", m)
	}
	p, ok := m.Point("temp")
	if !ok || p.Type != engine.Float64 || p.Unit != "°C" || p.Min != -40 || p.Max != 120 {
		t.Errorf("point %+v", p)
	}
	if p, _ := m.Point("state"); p.Type != engine.String {
		t.Errorf("state point %+v", p)
	}
	cases := []struct {
		asset string
		attrs string
	}{
		{"WT-001", "map[max_temp:90 monitored:true rated_kw:2000 site:north]"},
		{"WT-002", "map[max_temp:85 monitored:true site:north]"},
		{"TR-1", "map[max_oil_temp:100]"},
	}
	for _, tc := range cases {
		a, ok := c.Asset(tc.asset)
		if !ok {
			t.Fatalf("asset %s missing", tc.asset)
		}
		if got := fmt.Sprint(a.Attrs); got != tc.attrs {
			t.Errorf("%s: attrs %s, want %s", tc.asset, got, tc.attrs)
		}
	}
	a, _ := c.Asset("WT-001")
	if _, isFloat := a.Attrs["max_temp"].(float64); !isFloat {
		t.Errorf("max_temp is %T, want float64", a.Attrs["max_temp"])
	}
	if _, isInt := a.Attrs["rated_kw"].(int64); !isInt {
		t.Errorf("rated_kw is %T, want int64", a.Attrs["rated_kw"])
	}
	if a.Model != m {
		t.Error("asset model")
	}
	if got := len(c.AssetsOf("turbine")); got != 2 {
		t.Errorf("AssetsOf: %d", got)
	}
}

func TestParseJSON(t *testing.T) {
	src := `{"models": [{"id": "pump", "attributes": {"max_bar": {"type": "float64", "default": 6}}}],
	 "assets": [{"id": "P-1", "model": "pump", "attributes": {"max_bar": 7.5}}]}`
	c, err := assets.Parse("plant.json", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Asset("P-1")
	if a.Attrs["max_bar"] != 7.5 {
		t.Errorf("attrs %v", a.Attrs)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string
	}{
		{"unknown model", "models: [{id: turbine}]\nassets:\n  - id: A\n    model: turbne\n",
			[]string{`x.yaml:4:12: asset "A": unknown model "turbne" (did you mean "turbine"?)`}},
		{"attribute type", "models:\n  - id: m\n    attributes: {lim: {type: float64}, tag: {type: string}, n: {type: int64}, on: {type: bool}}\nassets:\n  - id: A\n    model: m\n    attributes: {lim: high, tag: 3, n: 2.5, on: 1}\n",
			[]string{
				`x.yaml:7:23: asset "A": attribute "lim": expected a number, got "high"`,
				`x.yaml:7:34: asset "A": attribute "tag": expected a string, got 3 (quote it)`,
				`x.yaml:7:40: asset "A": attribute "n": expected an integer, got 2.5`,
				`x.yaml:7:49: asset "A": attribute "on": expected true or false, got 1`,
			}},
		{"unknown attribute", "models: [{id: m, attributes: {max_temp: {type: float64}}}]\nassets: [{id: A, model: m, attributes: {max_tmp: 1}}]\n",
			[]string{`x.yaml:2:41: asset "A": model "m" has no attribute "max_tmp" (did you mean "max_temp"?)`}},
		{"bad default", "models:\n  - id: m\n    attributes:\n      lim: {type: float64, default: [1]}\n",
			[]string{`x.yaml:4:37: attribute "lim": default: expected a number, got a list`}},
		{"duplicates", "models: [{id: m}, {id: m}]\nassets: [{id: A, model: m}, {id: A, model: m}]\n",
			[]string{`x.yaml:1:24: model "m" declared twice (also at x.yaml:1:15)`, `x.yaml:2:34: asset "A" declared twice (also at x.yaml:2:15)`}},
		{"unknown type", "models: [{id: m, attributes: {a: {type: float}}}]\n",
			[]string{`x.yaml:1:41: field "type": "float" is not one of float64, int64, string, bool`}},
		{"unknown field", "models: [{id: m, atributes: {}}]\n",
			[]string{`x.yaml:1:18: unknown field "atributes" (did you mean "attributes"?)`}},
		{"missing fields", "assets: [{id: A}]\n",
			[]string{`x.yaml:1:10: missing required field "model"`}},
		{"min above max", "models: [{id: m, points: {t: {min: 5, max: 1}}}]\n",
			[]string{`x.yaml:1:36: point "t": min 5 is above max 1`}},
		{"syntax", "models: [\n", []string{"x.yaml:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := assets.Parse("x.yaml", []byte(c.src))
			var es spec.Errors
			if !errors.As(err, &es) {
				t.Fatalf("got %v (%T), want spec.Errors", err, err)
			}
			if len(es) != len(c.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(es), len(c.want), err)
			}
			for i, e := range es {
				if !strings.HasPrefix(e.Error(), c.want[i]) {
					t.Errorf("got  %s\nwant %s", e, c.want[i])
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "farm.yaml")
	if err := os.WriteFile(path, []byte(farm), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := assets.Load(path); err != nil {
		t.Fatal(err)
	}
	if _, err := assets.Load(path + ".missing"); err == nil {
		t.Error("missing file loaded")
	}
}

func ExampleParse() {
	c, err := assets.Parse("farm.yaml", []byte(farm))
	if err != nil {
		panic(err)
	}
	for _, a := range c.AssetsOf("turbine") {
		fmt.Println(a.ID, a.Model.ID, a.Attrs["max_temp"])
	}
	// Output:
	// WT-001 turbine 90
	// WT-002 turbine 85
}

// TestLoadRefusesSpecialFiles: `assets: /dev/zero` used to grow without
// bound; what is not a regular file is refused at once.
func TestLoadRefusesSpecialFiles(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero here")
	}
	_, err := assets.Load("/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("Load(/dev/zero) = %v, want a refusal", err)
	}
}

func TestParseFiles(t *testing.T) {
	models := "models:\n  - id: turbine\n    points: {temp: {type: float64, min: -40, max: 120}}\n"
	cases := []struct {
		name  string
		files []assets.File
		want  []string // error prefixes; none: the catalog loads
	}{
		{"asset of a model of another file", []assets.File{
			{Name: "models/a.yaml", Data: []byte(models)},
			{Name: "models/b.yaml", Data: []byte("assets: [{id: WT-1, model: turbine}]\n")},
		}, nil},
		{"model in two files", []assets.File{
			{Name: "models/a.yaml", Data: []byte(models)},
			{Name: "models/b.yaml", Data: []byte("models: [{id: turbine}]\n")},
		}, []string{`models/b.yaml:1:15: model "turbine" declared twice (also at models/a.yaml:2:9)`}},
		{"asset in two files", []assets.File{
			{Name: "models/a.yaml", Data: []byte(models + "assets: [{id: WT-1, model: turbine}]\n")},
			{Name: "models/b.yaml", Data: []byte("assets: [{id: WT-1, model: turbine}]\n")},
		}, []string{`models/b.yaml:1:15: asset "WT-1" declared twice (also at models/a.yaml:4:15)`}},
		{"bad YAML in one file", []assets.File{
			{Name: "models/a.yaml", Data: []byte(models)},
			{Name: "models/b.yaml", Data: []byte("models: [\n")},
		}, []string{`models/b.yaml:`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cat, err := assets.ParseFiles(c.files...)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if a, ok := cat.Asset("WT-1"); !ok || a.Model.ID != "turbine" {
					t.Fatalf("asset WT-1 = %+v, %v", a, ok)
				}
				if got := cat.ModelIDs(); !slices.Equal(got, []string{"turbine"}) {
					t.Fatalf("ModelIDs = %v", got)
				}
				return
			}
			var es spec.Errors
			if !errors.As(err, &es) || len(es) != len(c.want) {
				t.Fatalf("got %v, want %d errors", err, len(c.want))
			}
			for i, e := range es {
				if !strings.HasPrefix(e.Error(), c.want[i]) {
					t.Errorf("got  %s\nwant %s", e, c.want[i])
				}
			}
		})
	}
}

// TestThingModel: the catalog gives the command arbiter each asset's
// model with its points' types, units and ranges (open ends as ±Inf);
// an unknown asset, or a nil catalog, has none.
func TestThingModel(t *testing.T) {
	c, err := assets.Parse("m.yaml", []byte(`
models:
  - id: turbine
    points:
      power_limit: {type: float64, unit: kW, min: 0, max: 2000}
      stages: {type: int64, max: 4}
      mode: {type: string}
      temp: {}
assets:
  - {id: WT-001, model: turbine}
`))
	if err != nil {
		t.Fatal(err)
	}
	tm, ok := c.ThingModel("WT-001")
	if !ok || tm.ID != "turbine" || len(tm.Points) != 4 {
		t.Fatalf("%v %+v", ok, tm)
	}
	want := map[string]control.PointSpec{
		"power_limit": {Type: control.PointFloat, Unit: "kW", Min: 0, Max: 2000},
		"stages":      {Type: control.PointInt, Min: math.Inf(-1), Max: 4},
		"mode":        {Type: control.PointString, Min: math.Inf(-1), Max: math.Inf(1)},
		"temp":        {Type: control.PointFloat, Min: math.Inf(-1), Max: math.Inf(1)},
	}
	for id, w := range want {
		if got := tm.Points[id]; got != w {
			t.Errorf("point %s: %+v, want %+v", id, got, w)
		}
	}
	if _, ok := c.ThingModel("WT-999"); ok {
		t.Error("an unknown asset has a model")
	}
	var none *assets.Catalog
	if _, ok := none.ThingModel("WT-001"); ok {
		t.Error("a nil catalog has a model")
	}
}
