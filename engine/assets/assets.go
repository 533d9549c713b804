// Package assets loads thing models and assets.
//
// A thing model describes a kind of equipment: its measure points (typed,
// with unit and range) and its attributes (typed, with an optional
// default). An asset is one piece of equipment: an instance of a model with
// its own attribute values. Operators use assets to apply a rule to the
// assets of one model and to read per-asset thresholds (attr.max_temp).
//
// The file is YAML or JSON:
//
//	models:
//	  - id: turbine
//	    name: Wind turbine
//	    points:
//	      temp: {type: float64, unit: "°C", min: -40, max: 120}
//	    attributes:
//	      max_temp: {type: float64, default: 85}
//	assets:
//	  - id: WT-001
//	    name: Turbine 1
//	    model: turbine
//	    attributes: {max_temp: 90}
//
// Loading validates the file (unknown fields, duplicate ids, unknown models,
// unknown attributes, values of the wrong type) and reports every problem
// with its file:line:col. A loaded Catalog is immutable and safe for
// concurrent use.
package assets

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/spec"
)

// AttributeTypes lists the types an attribute or measure point may have.
var AttributeTypes = []string{"float64", "int64", "string", "bool"}

// FileSpec declares the format of a models and assets file.
var FileSpec = spec.Spec{
	Name:    "assets",
	Summary: "Thing models and the assets that instantiate them.",
	Fields: []spec.Field{
		{Name: "models", Type: spec.List, Elem: spec.Object, Optional: true,
			Description: "Thing models.",
			Children: []spec.Field{
				{Name: "id", Type: spec.String, Description: "Model id, unique in the file.", Example: "turbine"},
				{Name: "name", Type: spec.String, Optional: true, Description: "Display name.", Example: "Wind turbine"},
				{Name: "description", Type: spec.String, Optional: true, Description: "Free text."},
				{Name: "points", Type: spec.Map, Elem: spec.Object, Optional: true,
					Description: "Measure points by id.",
					Children: []spec.Field{
						{Name: "type", Type: spec.String, Enum: AttributeTypes, Default: "float64", Description: "Value type."},
						{Name: "unit", Type: spec.String, Optional: true, Description: "Unit of measure.", Example: "°C"},
						{Name: "min", Type: spec.Float, Optional: true, Description: "Lowest valid value."},
						{Name: "max", Type: spec.Float, Optional: true, Description: "Highest valid value."},
						{Name: "description", Type: spec.String, Optional: true, Description: "Free text."},
					}},
				{Name: "attributes", Type: spec.Map, Elem: spec.Object, Optional: true,
					Description: "Attributes by id; assets set their values.",
					Children: []spec.Field{
						{Name: "type", Type: spec.String, Enum: AttributeTypes, Description: "Value type."},
						{Name: "default", Type: spec.Any, Optional: true, Description: "Value of assets that do not set the attribute."},
						{Name: "unit", Type: spec.String, Optional: true, Description: "Unit of measure."},
						{Name: "description", Type: spec.String, Optional: true, Description: "Free text."},
					}},
			}},
		{Name: "assets", Type: spec.List, Elem: spec.Object, Optional: true,
			Description: "Assets.",
			Children: []spec.Field{
				{Name: "id", Type: spec.String, Description: "Asset id, unique in the file; the key of the asset's rows.", Example: "WT-001"},
				{Name: "name", Type: spec.String, Optional: true, Description: "Display name."},
				{Name: "model", Type: spec.String, Description: "Id of the asset's model.", Example: "turbine"},
				{Name: "attributes", Type: spec.Map, Elem: spec.Any, Optional: true,
					Description: "Attribute values by attribute id.", Example: map[string]any{"max_temp": 90}},
			}},
	},
}

// Catalog holds the models and assets of one file, or of several read
// together (ParseFiles).
type Catalog struct {
	Models []*Model
	Assets []*Asset

	models map[string]*Model
	assets map[string]*Asset
	things map[string]*control.ThingModel // by model id
}

// Model is a thing model.
type Model struct {
	ID          string
	Name        string
	Description string
	Points      []Point
	Attributes  []Attribute
}

// Point is a measure point of a model.
type Point struct {
	ID          string
	Type        engine.Type
	Unit        string
	Min, Max    float64 // -Inf and +Inf when not declared
	Description string
}

// Attribute is an attribute of a model.
type Attribute struct {
	ID   string
	Type engine.Type
	// Default is the value of assets that do not set the attribute (nil
	// when there is none): float64, int64, string or bool.
	Default     any
	Unit        string
	Description string
}

// Asset is an instance of a model.
type Asset struct {
	ID    string
	Name  string
	Model *Model
	// Attrs maps every attribute with a value (set on the asset, or the
	// model's default) to that value: float64, int64, string or bool. It is
	// built once at load and shared: callers must not modify it.
	Attrs map[string]any
}

// MaxFileBytes bounds a models and assets file (a site's thousands of
// assets take a few megabytes).
const MaxFileBytes = 64 << 20

// Load reads and validates a models and assets file of at most
// MaxFileBytes; what is not a regular file is refused.
func Load(path string) (*Catalog, error) {
	return LoadFiles(path)
}

// LoadFiles reads several models and assets files, each of at most
// MaxFileBytes, as one catalog (see ParseFiles).
func LoadFiles(paths ...string) (*Catalog, error) {
	files := make([]File, 0, len(paths))
	var errs []error
	for _, p := range paths {
		data, err := spec.ReadConfigFile(p, MaxFileBytes)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, File{Name: p, Data: data})
	}
	switch len(errs) {
	case 0:
	case 1:
		return nil, errs[0]
	default:
		return nil, errors.Join(errs...)
	}
	return ParseFiles(files...)
}

// File is the contents of one models and assets file; Name names it in
// errors.
type File struct {
	Name string
	Data []byte
}

// Parse validates the contents of a models and assets file; file names it
// in errors. The error, if any, is a spec.Errors listing every problem.
func Parse(file string, data []byte) (*Catalog, error) {
	return ParseFiles(File{Name: file, Data: data})
}

// ParseFiles validates several models and assets files as one catalog:
// an asset may instantiate a model of another file, and a model or asset
// id declared twice, in one file or in two, is an error naming both
// places. Models and assets keep the order of the files, then of each
// file. The error, if any, is a spec.Errors listing every problem.
func ParseFiles(files ...File) (*Catalog, error) {
	c := &Catalog{models: map[string]*Model{}, assets: map[string]*Asset{}}
	var errs spec.Errors
	cfgs := make([]*spec.Config, 0, len(files))
	for _, f := range files {
		var doc yaml.Node
		if err := yaml.Unmarshal(f.Data, &doc); err != nil {
			errs = append(errs, yamlError(f.Name, err))
			continue
		}
		cfg, es := FileSpec.Parse(f.Name, &doc)
		errs = append(errs, es...)
		cfgs = append(cfgs, cfg)
	}
	modelAt := map[string]spec.Pos{}
	for _, cfg := range cfgs {
		for _, mc := range cfg.Objects("models") {
			m, es := parseModel(mc)
			errs = append(errs, es...)
			if m.ID == "" {
				continue
			}
			if prev, dup := modelAt[m.ID]; dup {
				errs = append(errs, mc.Errorf("id", "model %q declared twice (also at %s)", m.ID, prev))
				continue
			}
			modelAt[m.ID] = mc.Pos("id")
			c.models[m.ID] = m
			c.Models = append(c.Models, m)
		}
	}
	assetAt := map[string]spec.Pos{}
	for _, cfg := range cfgs {
		for _, ac := range cfg.Objects("assets") {
			a, es := c.parseAsset(ac)
			errs = append(errs, es...)
			if a == nil {
				continue
			}
			if prev, dup := assetAt[a.ID]; dup {
				errs = append(errs, ac.Errorf("id", "asset %q declared twice (also at %s)", a.ID, prev))
				continue
			}
			assetAt[a.ID] = ac.Pos("id")
			c.assets[a.ID] = a
			c.Assets = append(c.Assets, a)
		}
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	c.things = make(map[string]*control.ThingModel, len(c.Models))
	for _, m := range c.Models {
		tm := &control.ThingModel{ID: m.ID, Points: make(map[string]control.PointSpec, len(m.Points))}
		for _, p := range m.Points {
			tm.Points[p.ID] = control.PointSpec{Type: p.Type.String(), Unit: p.Unit, Min: p.Min, Max: p.Max}
		}
		c.things[m.ID] = tm
	}
	return c, nil
}

// ThingModel returns the model of an asset as the command arbiter checks
// set-point commands against it (control.Models): a command setting a
// point the model does not declare, or a value of another type or
// outside the point's min and max, is rejected. A nil catalog knows no
// asset.
func (c *Catalog) ThingModel(asset string) (*control.ThingModel, bool) {
	if c == nil {
		return nil, false
	}
	a, ok := c.assets[asset]
	if !ok || a.Model == nil {
		return nil, false
	}
	tm, ok := c.things[a.Model.ID]
	return tm, ok
}

var _ control.Models = (*Catalog)(nil)

// FromContext returns the catalog of the release a component is built
// for (engine.BuildContext.Catalog), or nil outside a release.
func FromContext(bc engine.BuildContext) *Catalog {
	c, _ := bc.Catalog.(*Catalog)
	return c
}

var _ engine.Catalog = (*Catalog)(nil)

func yamlError(file string, err error) *spec.Error {
	var line int
	if _, scanErr := fmt.Sscanf(err.Error(), "yaml: line %d:", &line); scanErr == nil {
		return spec.Errorf(spec.Pos{File: file, Line: line, Col: 1}, "%v", err)
	}
	return spec.Errorf(spec.Pos{File: file}, "%v", err)
}

func parseModel(mc *spec.Config) (*Model, spec.Errors) {
	var errs spec.Errors
	m := &Model{ID: mc.String("id"), Name: mc.String("name"), Description: mc.String("description")}
	for _, e := range mc.Entries("points") {
		pc, ok := e.Value.(*spec.Config)
		if !ok {
			continue
		}
		typ, _ := engine.ParseType(pc.String("type"))
		p := Point{ID: e.Key, Type: typ, Unit: pc.String("unit"), Min: math.Inf(-1), Max: math.Inf(1), Description: pc.String("description")}
		if pc.Has("min") {
			p.Min = pc.Float("min")
		}
		if pc.Has("max") {
			p.Max = pc.Float("max")
		}
		if p.Min > p.Max {
			errs = append(errs, pc.Errorf("min", "point %q: min %g is above max %g", e.Key, p.Min, p.Max))
		}
		m.Points = append(m.Points, p)
	}
	for _, e := range mc.Entries("attributes") {
		ac, ok := e.Value.(*spec.Config)
		if !ok {
			continue
		}
		typ, _ := engine.ParseType(ac.String("type"))
		a := Attribute{ID: e.Key, Type: typ, Unit: ac.String("unit"), Description: ac.String("description")}
		if ac.Has("default") && typ != engine.Invalid {
			v, err := convert(ac.Value("default"), typ)
			if err != nil {
				errs = append(errs, ac.Errorf("default", "attribute %q: default: %v", e.Key, err))
			}
			a.Default = v
		}
		m.Attributes = append(m.Attributes, a)
	}
	return m, errs
}

func (c *Catalog) parseAsset(ac *spec.Config) (*Asset, spec.Errors) {
	a := &Asset{ID: ac.String("id"), Name: ac.String("name"), Attrs: map[string]any{}}
	if a.ID == "" {
		return nil, nil
	}
	m, ok := c.models[ac.String("model")]
	if !ok {
		if !ac.Has("model") {
			return nil, nil
		}
		return nil, spec.Errors{ac.Errorf("model", "asset %q: unknown model %q%s", a.ID, ac.String("model"), suggest(ac.String("model"), c.modelIDs()))}
	}
	a.Model = m
	var errs spec.Errors
	for _, attr := range m.Attributes {
		if attr.Default != nil {
			a.Attrs[attr.ID] = attr.Default
		}
	}
	for _, e := range ac.Entries("attributes") {
		def, ok := m.Attribute(e.Key)
		if !ok {
			errs = append(errs, spec.Errorf(e.KeyPos, "asset %q: model %q has no attribute %q%s", a.ID, m.ID, e.Key, suggest(e.Key, m.attributeIDs())))
			continue
		}
		v, err := convert(e.Value, def.Type)
		if err != nil {
			errs = append(errs, spec.Errorf(e.ValuePos, "asset %q: attribute %q: %v", a.ID, e.Key, err))
			continue
		}
		a.Attrs[e.Key] = v
	}
	return a, errs
}

// convert checks a decoded YAML value against an attribute type and
// returns it in the attribute's Go type.
func convert(v any, t engine.Type) (any, error) {
	switch t {
	case engine.Float64:
		switch x := v.(type) {
		case float64:
			return x, nil
		case int:
			return float64(x), nil
		case int64:
			return float64(x), nil
		}
		return nil, fmt.Errorf("expected a number, got %s", describe(v))
	case engine.Int64:
		switch x := v.(type) {
		case int:
			return int64(x), nil
		case int64:
			return x, nil
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
				return int64(x), nil
			}
		}
		return nil, fmt.Errorf("expected an integer, got %s", describe(v))
	case engine.String:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return nil, fmt.Errorf("expected a string, got %s (quote it)", describe(v))
	case engine.Bool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, fmt.Errorf("expected true or false, got %s", describe(v))
	}
	return nil, fmt.Errorf("attribute type %s is not supported", t)
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%v", v)
}

// Model returns the model with that id.
func (c *Catalog) Model(id string) (*Model, bool) {
	m, ok := c.models[id]
	return m, ok
}

// Asset returns the asset with that id.
func (c *Catalog) Asset(id string) (*Asset, bool) {
	a, ok := c.assets[id]
	return a, ok
}

// AssetsOf returns the assets of a model, in file order.
func (c *Catalog) AssetsOf(model string) []*Asset {
	var out []*Asset
	for _, a := range c.Assets {
		if a.Model.ID == model {
			out = append(out, a)
		}
	}
	return out
}

// ModelIDs lists the ids of the models, in file order.
func (c *Catalog) ModelIDs() []string { return c.modelIDs() }

func (c *Catalog) modelIDs() []string {
	out := make([]string, len(c.Models))
	for i, m := range c.Models {
		out[i] = m.ID
	}
	return out
}

// Attribute returns the model's attribute with that id.
func (m *Model) Attribute(id string) (Attribute, bool) {
	i := slices.IndexFunc(m.Attributes, func(a Attribute) bool { return a.ID == id })
	if i < 0 {
		return Attribute{}, false
	}
	return m.Attributes[i], true
}

// Point returns the model's measure point with that id.
func (m *Model) Point(id string) (Point, bool) {
	i := slices.IndexFunc(m.Points, func(p Point) bool { return p.ID == id })
	if i < 0 {
		return Point{}, false
	}
	return m.Points[i], true
}

func (m *Model) attributeIDs() []string {
	out := make([]string, len(m.Attributes))
	for i, a := range m.Attributes {
		out[i] = a.ID
	}
	return out
}

// suggest returns " (did you mean x?)" for the id closest to name, or "".
func suggest(name string, ids []string) string {
	best, bestD := "", 3
	for _, id := range ids {
		if d := spec.EditDistance(name, id); d < bestD {
			best, bestD = id, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}
