package spec

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// SchemaDialect is the JSON Schema dialect of the schemas built here.
const SchemaDialect = "https://json-schema.org/draft/2020-12/schema"

// InterpolationPattern matches a ${VAR} or ${VAR:-default} reference (a
// variable name without spaces or "$", and a default without "}").
// Pipeline files may use such references in any scalar value, so the JSON
// Schema of a number, boolean, duration or enum field also accepts a string
// containing one. The pattern is valid both as a Go regexp and as an
// ECMA-262 regular expression.
const InterpolationPattern = `\$\{[^}\s$]+(?::-[^}]*)?\}`

// DurationPattern matches the text forms ParseDuration accepts: Go
// durations with an optional "d" unit ("500ms", "1m30s", "1.5d", "1d12h")
// and a bare 0.
const DurationPattern = `^[-+]?(?:0|(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h|d))+)$`

// boolWordsPattern matches the strings Parse accepts for a Bool field
// besides YAML's own booleans (case-insensitive yes, no, on, off, true,
// false).
const boolWordsPattern = `^(?:[Yy][Ee][Ss]|[Nn][Oo]|[Oo][Nn]|[Oo][Ff][Ff]|[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$`

// JSONSchema returns a JSON Schema (draft 2020-12) for the component's
// configuration mapping: one property per field with its type,
// description, default, examples and enum; the required fields; and
// additionalProperties false, recursively for nested objects. Numbers,
// booleans, durations and enum values also accept a string holding a
// ${VAR} reference (see InterpolationPattern). The result is a tree of
// maps and slices that encoding/json renders deterministically.
func (s *Spec) JSONSchema() map[string]any {
	out := objectSchema(s.Fields)
	out["$schema"] = SchemaDialect
	addTitle(out, s)
	return out
}

// Component returns the schema of one entry of a pipeline's list of
// sources, steps or sinks: the spec's JSONSchema without "$schema", with a
// required "type" property whose value must be the spec's name, plus the
// extra properties (property name to schema; for example the "input" and
// "inputs" wiring of steps and sinks). An extra property replaces a field
// of the same name. The names in required are added to the required list.
func Component(s *Spec, extra map[string]any, required ...string) map[string]any {
	out := objectSchema(s.Fields)
	addTitle(out, s)
	props := out["properties"].(map[string]any)
	typ := map[string]any{"const": s.Name}
	if s.Kind != "" {
		typ["description"] = fmt.Sprintf("The %s type.", s.Kind)
	}
	props["type"] = typ
	for k, v := range extra {
		props[k] = v
	}
	req := []string{"type"}
	for _, r := range required {
		if !slices.Contains(req, r) {
			req = append(req, r)
		}
	}
	if old, ok := out["required"].([]string); ok {
		for _, r := range old {
			if _, replaced := extra[r]; !replaced && !slices.Contains(req, r) {
				req = append(req, r)
			}
		}
	}
	out["required"] = req
	out["type"] = "object"
	return out
}

// Union returns a schema accepting any one of the specs as a pipeline
// entry: a oneOf of their Component schemas (discriminated by the "type"
// property, which also lists every type name as an enum so that editors
// can complete it). extra and required apply to every branch as in
// Component. Branches are ordered by spec name.
func Union(specs []*Spec, extra map[string]any, required ...string) map[string]any {
	sorted := slices.Clone(specs)
	slices.SortStableFunc(sorted, func(a, b *Spec) int { return strings.Compare(a.Name, b.Name) })
	if len(sorted) == 0 {
		return map[string]any{"not": map[string]any{}, "description": "No component types are available."}
	}
	names := make([]any, len(sorted))
	branches := make([]any, len(sorted))
	for i, s := range sorted {
		names[i] = s.Name
		branches[i] = Component(s, extra, required...)
	}
	return map[string]any{
		"type":       "object",
		"properties": map[string]any{"type": map[string]any{"enum": names}},
		"required":   []string{"type"},
		"oneOf":      branches,
	}
}

func addTitle(out map[string]any, s *Spec) {
	if s.Name != "" {
		out["title"] = s.Name
	}
	desc := strings.TrimSpace(s.Summary)
	if d := strings.TrimSpace(s.Description); d != "" {
		if desc != "" {
			desc += "\n\n"
		}
		desc += d
	}
	if desc != "" {
		out["description"] = desc
	}
}

// objectSchema is the schema of a mapping with the declared fields.
func objectSchema(fields []Field) map[string]any {
	props := map[string]any{}
	var req []string
	for _, f := range fields {
		props[f.Name] = fieldSchema(f)
		if f.Required() {
			req = append(req, f.Name)
		}
	}
	out := map[string]any{
		"type":                 "object",
		"properties":           props,
		"additionalProperties": false,
	}
	if len(req) > 0 {
		out["required"] = req
	} else {
		// Parse reads a null value as an empty mapping.
		out["type"] = []string{"object", "null"}
	}
	return out
}

func fieldSchema(f Field) map[string]any {
	var sch map[string]any
	switch f.Type {
	case Object:
		sch = objectSchema(f.Children)
	case List:
		items := itemSchema(f)
		array := map[string]any{"type": "array", "items": items}
		if f.Elem == Object {
			sch = array
			break
		}
		// A single scalar is read as a one-item list.
		single := items
		if f.Elem == 0 || f.Elem == Any {
			single = map[string]any{"type": []string{"string", "number", "boolean"}}
		}
		sch = map[string]any{"anyOf": []any{array, single}}
	case Map:
		sch = map[string]any{"type": "object", "additionalProperties": itemSchema(f)}
	default:
		sch = scalarSchema(f.Type, f.Enum)
	}
	if f.Description != "" {
		sch["description"] = f.Description
	}
	if f.Default != nil {
		sch["default"] = jsonValue(f.Default)
	}
	if f.Example != nil {
		sch["examples"] = []any{jsonValue(f.Example)}
	}
	return sch
}

// itemSchema is the schema of the items of a List or the values of a Map.
func itemSchema(f Field) map[string]any {
	switch f.Elem {
	case Object:
		return objectSchema(f.Children)
	case 0, Any:
		return map[string]any{}
	}
	return scalarSchema(f.Elem, f.Enum)
}

func interpolated() map[string]any {
	return map[string]any{"type": "string", "pattern": InterpolationPattern}
}

func scalarSchema(t Type, enum []string) map[string]any {
	switch t {
	case String:
		if len(enum) > 0 {
			vals := make([]any, len(enum))
			for i, e := range enum {
				vals[i] = e
			}
			return map[string]any{"anyOf": []any{map[string]any{"enum": vals}, interpolated()}}
		}
		// Numbers and booleans are read as their text.
		return map[string]any{"type": []string{"string", "number", "boolean"}}
	case Int:
		return map[string]any{"type": []string{"integer", "string"}, "pattern": InterpolationPattern}
	case Float:
		return map[string]any{"type": []string{"number", "string"}, "pattern": InterpolationPattern}
	case Bool:
		return map[string]any{"type": []string{"boolean", "string"}, "pattern": boolWordsPattern + "|" + InterpolationPattern}
	case Duration:
		return map[string]any{"anyOf": []any{
			map[string]any{"type": "string", "pattern": DurationPattern + "|" + InterpolationPattern},
			map[string]any{"const": 0},
		}}
	}
	return map[string]any{}
}

// jsonValue converts a declared default or example to plain JSON values;
// durations become their text form.
func jsonValue(v any) any {
	switch v := v.(type) {
	case nil:
		return nil
	case time.Duration:
		return FormatDuration(v)
	case string, bool, int, int64, float64:
		return v
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = jsonValue(rv.Index(i).Interface())
		}
		return out
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return v
		}
		out := make(map[string]any, rv.Len())
		for _, k := range rv.MapKeys() {
			out[k.String()] = jsonValue(rv.MapIndex(k).Interface())
		}
		return out
	}
	return v
}

// FormatDuration renders a duration in the shortest form ParseDuration
// reads back: "30s", "1m30s", "2h", "1d" rather than "2h0m0s" or "24h0m0s".
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d != 0 && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
