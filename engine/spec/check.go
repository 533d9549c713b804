package spec

import (
	"errors"
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"
)

// Check reports mistakes in the declaration itself: a missing name, an
// unknown kind, empty or duplicate field names, unknown types, a default or
// enum that does not fit its field, and Children or Elem on a field that
// cannot have them. It returns nil for a sound declaration. Calling it when
// a component is registered (or from a test over all registered components)
// makes a bad declaration fail early instead of when a pipeline is loaded.
func (s *Spec) Check() error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("spec has no name"))
	}
	switch s.Kind {
	case "", KindSource, KindStep, KindSink:
	default:
		errs = append(errs, fmt.Errorf("spec %q: unknown kind %q", s.Name, s.Kind))
	}
	checkFields(s.Name, s.Fields, &errs)
	if s.Kind != "" {
		for _, f := range s.Fields {
			if slices.Contains(ReservedFields, f.Name) {
				errs = append(errs, fmt.Errorf("spec %q: field %q is reserved for the pipeline's wiring (%v)", s.Name, f.Name, ReservedFields))
			}
		}
	}
	if s.Example != "" {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(s.Example), &n); err != nil {
			errs = append(errs, fmt.Errorf("spec %q: example is not valid YAML: %v", s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ReservedFields are the keys every component mapping may hold besides its
// type's fields: a component type cannot declare fields of these names.
var ReservedFields = []string{"type", "input", "inputs"}

func validType(t Type) bool { _, ok := typeNames[t]; return ok }

func checkFields(path string, fields []Field, errs *[]error) {
	fail := func(format string, args ...any) { *errs = append(*errs, fmt.Errorf(format, args...)) }
	seen := map[string]bool{}
	for _, f := range fields {
		p := path + "." + f.Name
		if f.Name == "" {
			fail("%s: field with no name", path)
			continue
		}
		if seen[f.Name] {
			fail("%s: field declared twice", p)
		}
		seen[f.Name] = true
		if !validType(f.Type) {
			fail("%s: unknown type %d", p, f.Type)
			continue
		}
		switch f.Type {
		case Object:
			if len(f.Children) == 0 {
				fail("%s: object field has no Children", p)
			}
			if f.Elem != 0 {
				fail("%s: Elem is only for list and map fields", p)
			}
			checkFields(p, f.Children, errs)
		case List, Map:
			sub := p + "[]"
			if f.Type == Map {
				sub = p + ".*"
			}
			switch f.Elem {
			case Object:
				if len(f.Children) == 0 {
					fail("%s: %s of objects has no Children", p, f.Type)
				}
				checkFields(sub, f.Children, errs)
			case 0, String, Int, Float, Bool, Duration, Any:
				if len(f.Children) > 0 {
					fail("%s: Children need Elem: Object", p)
				}
			default:
				fail("%s: item type %s is not supported (use Object or Any)", p, f.Elem)
			}
		default:
			if len(f.Children) > 0 {
				fail("%s: Children are only for object fields", p)
			}
			if f.Elem != 0 {
				fail("%s: Elem is only for list and map fields", p)
			}
		}
		if len(f.Enum) > 0 {
			if f.Type != String && !((f.Type == List || f.Type == Map) && f.Elem == String) {
				fail("%s: Enum is only for string fields (or lists and maps of strings)", p)
			}
			for i, v := range f.Enum {
				if slices.Contains(f.Enum[:i], v) {
					fail("%s: enum value %q listed twice", p, v)
				}
			}
		}
		if f.Default != nil {
			v, err := convertDefault(f.Type, f.Elem, f.Default)
			if err != nil {
				fail("%s: %v", p, err)
				continue
			}
			if len(f.Enum) > 0 {
				for _, s := range defaultStrings(v) {
					if !slices.Contains(f.Enum, s) {
						fail("%s: default %q is not one of the enum values", p, s)
					}
				}
			}
		}
	}
}

// defaultStrings returns the string values of a normalized default.
func defaultStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, item := range v {
			out = append(out, defaultStrings(item)...)
		}
		return out
	case []MapEntry:
		var out []string
		for _, e := range v {
			out = append(out, defaultStrings(e.Value)...)
		}
		return out
	}
	return nil
}
