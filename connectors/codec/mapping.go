package codec

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/spec"
)

// SchemaFields returns the configuration fields that declare the rows a
// source produces: "schema" (columns, time and key) and "mapping" (where
// each column is read from). Sources append them to their own fields and
// read them with ParseMapping.
func SchemaFields() []spec.Field {
	return []spec.Field{
		{
			Name: "schema",
			Type: spec.Object,
			Description: "Columns of the rows the source produces. The time column is added as a timestamp " +
				"and the key column as a string when `fields` does not list them. In a release, `model` takes " +
				"the columns from a thing model's measure points instead (see docs/connectors.md).",
			Example: map[string]any{
				"time": "ts", "key": "asset",
				"fields": map[string]any{"power": "float64", "wind_speed": "float64", "status": "string"},
			},
			Children: []spec.Field{
				{Name: "time", Type: spec.String, Default: "time", Description: "Name of the event-time column.", Example: "ts"},
				{Name: "key", Type: spec.String, Optional: true, Description: "Name of the key column (the asset or device a row belongs to).", Example: "asset"},
				{
					Name: "fields", Type: spec.Map, Elem: spec.String, Optional: true,
					Description: "Column name -> type (" + strings.Join(engine.TypeNames(), ", ") + "), in output order. Required unless `model` is set; with it, columns added after the model's points.",
					Example:     map[string]any{"power": "float64", "status": "string"},
				},
				{
					Name: "model", Type: spec.String, Optional: true,
					Description: "A thing model of the release (its models/ files): each measure point becomes a column of the point's type, in the model's order, after the time and key columns.",
					Example:     "turbine",
				},
				{
					Name: "ranges", Type: spec.String, Default: RangesIgnore, Enum: []string{RangesIgnore, RangesRoute},
					Description: "With `model`: `route` sends rows with a value outside its point's `min`/`max` (or NaN) to the source's `errors` port (`<source>.errors`) with the point, value and bounds, counted as `" + RangeRowsCounter + "`; `ignore` passes them on.",
				},
			},
		},
		{
			Name: "mapping",
			Type: spec.Map, Elem: spec.String, Optional: true,
			Description: "Column name -> where its value is read from: an EnOS measure point (`Power`, or " +
				"`Power.quality` for its quality), a dotted JSON path (`data.wind.speed`, `items.0.v`) or a CSV " +
				"column header. A column not listed is read from the value of the same name.",
			Example: map[string]any{"power": "Power", "wind_speed": "Wind Speed (m/s)"},
		},
	}
}

// TimeFields returns the configuration fields that say how time values are
// written in text formats (CSV and JSON lines): "time_layout" and
// "time_zone". Read them with ParseTimeFormatConfig.
func TimeFields() []spec.Field {
	return []spec.Field{
		{
			Name: "time_layout", Type: spec.String, Default: "unix_ms",
			Description: "How the time column (and other timestamp columns) is written: `unix_ms`, `unix_s`, " +
				"`unix_us`, `unix_ns` (numbers or numeric strings), `rfc3339`, or a Go layout such as " +
				"`02 01 2006 15:04`. EnOS payloads always carry milliseconds.",
			Example: "2006-01-02 15:04:05",
		},
		{
			Name: "time_zone", Type: spec.String, Default: "UTC", Advanced: true,
			Description: "Time zone of times written with a Go layout that carries no zone (an IANA name such as " +
				"`Europe/Istanbul`, or `Local`).",
			Example: "Europe/Istanbul",
		},
	}
}

// Mapping is the schema a decoder fills and, for each column, the name of
// the payload value that feeds it.
type Mapping struct {
	Schema *engine.Schema
	// Sources holds one entry per schema column: an EnOS measure point
	// ("Power", or "Power.quality" for its quality), a dotted JSON path
	// ("data.wind.speed") or a CSV column header. It defaults to the
	// column's name. EnOS decoders ignore the entries of the time and key
	// columns, which come from the envelope and the device key.
	Sources []string
	// Ranges are the ranges the source checks (schema.model with ranges
	// route), or nil.
	Ranges []engine.ValueRange
}

// NewMapping returns the mapping of s where sources (column -> source name)
// overrides the default of reading each column from the value of the same
// name. It fails on a source for a column that s does not have.
func NewMapping(s *engine.Schema, sources map[string]string) (*Mapping, error) {
	m := &Mapping{Schema: s, Sources: s.Names()}
	keys := make([]string, 0, len(sources))
	for k := range sources {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		i := s.Index(k)
		if i < 0 {
			return nil, fmt.Errorf("mapping: %q is not a column (columns: %s)", k, strings.Join(s.Names(), ", "))
		}
		if sources[k] == "" {
			return nil, fmt.Errorf("mapping: column %q has an empty source", k)
		}
		m.Sources[i] = sources[k]
	}
	return m, nil
}

// Values of schema.ranges.
const (
	RangesIgnore = "ignore"
	RangesRoute  = "route"
)

// RangeRowsCounter counts the rows a source's errors port receives for a
// value out of its point's range (see engine.RangedSource).
const RangeRowsCounter = "value_range_rows"

// ParseMapping builds the schema and mapping declared by the fields of
// SchemaFields, outside a release (schema.model is refused). See
// ParseMappingFor.
func ParseMapping(cfg *spec.Config) (*Mapping, error) {
	return ParseMappingFor(cfg, engine.BuildContext{})
}

// ParseMappingFor builds the schema and mapping declared by the fields of
// SchemaFields, for a source built with bc: schema.model names a thing
// model of bc's catalog (assets.FromContext), whose measure points become
// columns. Columns appear in the order of the model's points, then of
// schema.fields; the time column, when not listed, comes first and the
// key column second. Errors are located at the offending field.
func ParseMappingFor(cfg *spec.Config, bc engine.BuildContext) (*Mapping, error) {
	sc := cfg.Object("schema")
	if sc == nil {
		return nil, cfg.Errorf("schema", "missing schema")
	}
	var errs spec.Errors
	timeName, keyName := sc.String("time"), sc.String("key")
	if timeName == "" {
		errs = append(errs, sc.Errorf("time", "the time column needs a name"))
	}
	if sc.Has("key") && keyName == "" {
		errs = append(errs, sc.Errorf("key", "the key column needs a name"))
	}
	if keyName != "" && keyName == timeName {
		errs = append(errs, sc.Errorf("key", "the key column %q is also the time column", keyName))
	}
	fields, ranges, es := modelFields(sc, bc)
	errs = append(errs, es...)
	entries := sc.Entries("fields")
	if len(entries) == 0 && !sc.Has("model") {
		errs = append(errs, sc.Errorf("fields", "declare at least one column"))
	}
	if sc.Has("ranges") && !sc.Has("model") {
		errs = append(errs, sc.Errorf("ranges", "ranges applies to the points of a model: set schema.model"))
	}
	for _, e := range entries {
		s, _ := e.Value.(string)
		t, err := engine.ParseType(s)
		if err != nil {
			errs = append(errs, spec.Errorf(e.ValuePos, "column %q: %v", e.Key, err))
			continue
		}
		switch {
		case e.Key == timeName && t != engine.Timestamp:
			errs = append(errs, spec.Errorf(e.ValuePos, "the time column %q must have type timestamp, not %s", e.Key, t))
			continue
		case e.Key == keyName && t != engine.String:
			errs = append(errs, spec.Errorf(e.ValuePos, "the key column %q must have type string, not %s", e.Key, t))
			continue
		}
		if slices.ContainsFunc(fields, func(f engine.Field) bool { return f.Name == e.Key }) {
			errs = append(errs, spec.Errorf(e.KeyPos, "column %q is also a point of model %q: leave it out of fields", e.Key, sc.String("model")))
			continue
		}
		fields = append(fields, engine.Field{Name: e.Key, Type: t})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	has := func(name string) bool {
		return slices.ContainsFunc(fields, func(f engine.Field) bool { return f.Name == name })
	}
	var head []engine.Field
	if !has(timeName) {
		head = append(head, engine.Field{Name: timeName, Type: engine.Timestamp})
	}
	if keyName != "" && !has(keyName) {
		head = append(head, engine.Field{Name: keyName, Type: engine.String})
	}
	fields = append(head, fields...)
	schema, err := engine.NewSchema(fields, timeName, keyName)
	if err != nil {
		return nil, sc.Errorf("fields", "%v", err)
	}
	m := &Mapping{Schema: schema, Sources: schema.Names(), Ranges: ranges}
	for _, e := range cfg.Entries("mapping") {
		s, _ := e.Value.(string)
		i := schema.Index(e.Key)
		switch {
		case i < 0:
			errs = append(errs, spec.Errorf(e.KeyPos, "mapping: %q is not a column (columns: %s)", e.Key, strings.Join(schema.Names(), ", ")))
		case s == "":
			errs = append(errs, spec.Errorf(e.ValuePos, "mapping: column %q has an empty source", e.Key))
		default:
			m.Sources[i] = s
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return m, nil
}

// modelFields returns the columns of schema.model, and the ranges to check
// when schema.ranges is route.
func modelFields(sc *spec.Config, bc engine.BuildContext) ([]engine.Field, []engine.ValueRange, spec.Errors) {
	if !sc.Has("model") {
		return nil, nil, nil
	}
	id := sc.String("model")
	cat := assets.FromContext(bc)
	if cat == nil {
		return nil, nil, spec.Errors{sc.Errorf("model", "model: thing models come with a release (its models/ files); this pipeline is not part of one: declare the columns in schema.fields")}
	}
	m, ok := cat.Model(id)
	if !ok {
		return nil, nil, spec.Errors{sc.Errorf("model", "model: the release has no model %q (models: %s)", id, strings.Join(cat.ModelIDs(), ", "))}
	}
	if len(m.Points) == 0 {
		return nil, nil, spec.Errors{sc.Errorf("model", "model: model %q has no measure points", id)}
	}
	route := sc.String("ranges") == RangesRoute
	var fields []engine.Field
	var ranges []engine.ValueRange
	for _, p := range m.Points {
		if p.ID == sc.String("time") || p.ID == sc.String("key") {
			return nil, nil, spec.Errors{sc.Errorf("model", "model: point %q of model %q has the name of the time or key column", p.ID, id)}
		}
		fields = append(fields, engine.Field{Name: p.ID, Type: p.Type})
		numeric := p.Type == engine.Float64 || p.Type == engine.Int64
		if route && numeric && (!math.IsInf(p.Min, -1) || !math.IsInf(p.Max, 1)) {
			ranges = append(ranges, engine.ValueRange{Column: p.ID, Point: id + "." + p.ID, Min: p.Min, Max: p.Max})
		}
	}
	return fields, ranges, nil
}
