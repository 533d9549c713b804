package spec

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Type is the type of a configuration field.
type Type int

// Field types.
const (
	// String is a YAML string (numbers and booleans are accepted as their text).
	String Type = iota + 1
	// Int is a whole number.
	Int
	// Float is a number.
	Float
	// Bool is true or false.
	Bool
	// Duration is a Go duration such as "500ms", "30s", "1m", "2h"; "d" (days) is also accepted.
	Duration
	// Object is a mapping with the declared Children fields.
	Object
	// List is a sequence whose items have the type of Elem.
	List
	// Map is a mapping from free-form keys to values of the type of Elem.
	Map
	// Any accepts any YAML value; the component checks it.
	Any
)

var typeNames = map[Type]string{
	String: "string", Int: "int", Float: "float", Bool: "bool", Duration: "duration",
	Object: "object", List: "list", Map: "map", Any: "any",
}

// String returns the type name used in docs.
func (t Type) String() string { return typeNames[t] }

// Field declares one configuration field.
type Field struct {
	Name        string
	Type        Type
	Description string
	// Default is the value used when the field is absent. A field with no
	// default and Optional false is required.
	Default any
	// Optional marks a field that may be absent and has no default.
	Optional bool
	// Example is shown in docs and in the JSON Schema.
	Example any
	// Enum restricts a String field to these values.
	Enum []string
	// Children declares the fields of an Object (or of the Object items of a
	// List or Map).
	Children []Field
	// Elem is the item type of a List or the value type of a Map; Object
	// items use Children.
	Elem Type
	// Advanced fields are listed after the others in docs.
	Advanced bool
}

// Required reports whether the field must be present.
func (f Field) Required() bool { return f.Default == nil && !f.Optional }

// Kind is the role of a component in a pipeline.
type Kind string

// Component kinds.
const (
	KindSource Kind = "source"
	KindStep   Kind = "step"
	KindSink   Kind = "sink"
)

// Spec declares a component: its type name, role, summary and fields.
type Spec struct {
	Name    string
	Kind    Kind
	Summary string
	// Description is a longer Markdown text for the reference.
	Description string
	Fields      []Field
	// Example is a YAML snippet shown in the reference.
	Example string
}

// Field returns the declared field with that name.
func (s *Spec) Field(name string) (Field, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Parse checks a YAML mapping against the spec's fields and returns the typed
// configuration. Keys listed in skip are left for the caller (for example
// "type" and "input", which the pipeline loader reads itself). All errors are
// returned, each with its location.
func (s *Spec) Parse(file string, node *yaml.Node, skip ...string) (*Config, Errors) {
	return parseObject(file, node, s.Fields, skip)
}

// Config is a parsed, validated component configuration.
type Config struct {
	file   string
	node   *yaml.Node
	fields []Field
	values map[string]any
	pos    map[string]Pos
	set    map[string]bool
}

// Pos returns the position of the named field's value, or of the mapping
// when the field is absent. An empty name gives the mapping's position.
func (c *Config) Pos(name string) Pos {
	if p, ok := c.pos[name]; ok && name != "" {
		return p
	}
	return posOf(c.file, c.node)
}

// File returns the file the configuration came from.
func (c *Config) File() string { return c.file }

// Node returns the YAML mapping the configuration was parsed from.
func (c *Config) Node() *yaml.Node { return c.node }

// Errorf returns an error located at the named field.
func (c *Config) Errorf(name, format string, args ...any) *Error {
	return Errorf(c.Pos(name), format, args...)
}

// Has reports whether the field was set explicitly.
func (c *Config) Has(name string) bool { return c.set[name] }

// Value returns the field's parsed value (nil when absent without default):
// string, int64, float64, bool, time.Duration, *Config, []any or
// []MapEntry.
func (c *Config) Value(name string) any { return c.values[name] }

// String returns a String field ("" when absent).
func (c *Config) String(name string) string { s, _ := c.values[name].(string); return s }

// Int returns an Int field.
func (c *Config) Int(name string) int64 {
	switch v := c.values[name].(type) {
	case int64:
		return v
	case int:
		return int64(v)
	}
	return 0
}

// Float returns a Float field.
func (c *Config) Float(name string) float64 {
	switch v := c.values[name].(type) {
	case float64:
		return v
	case int64:
		return float64(v)
	case int:
		return float64(v)
	}
	return 0
}

// Bool returns a Bool field.
func (c *Config) Bool(name string) bool { b, _ := c.values[name].(bool); return b }

// Duration returns a Duration field.
func (c *Config) Duration(name string) time.Duration {
	d, _ := c.values[name].(time.Duration)
	return d
}

// Object returns an Object field, or nil when absent.
func (c *Config) Object(name string) *Config { o, _ := c.values[name].(*Config); return o }

// List returns the items of a List field.
func (c *Config) List(name string) []any { l, _ := c.values[name].([]any); return l }

// Objects returns the items of a List field of objects.
func (c *Config) Objects(name string) []*Config {
	l := c.List(name)
	out := make([]*Config, 0, len(l))
	for _, v := range l {
		if o, ok := v.(*Config); ok {
			out = append(out, o)
		}
	}
	return out
}

// Strings returns the items of a List field of strings. A single string
// value is accepted as a one-item list.
func (c *Config) Strings(name string) []string {
	l := c.List(name)
	out := make([]string, 0, len(l))
	for _, v := range l {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// MapEntry is one key of a Map field, in file order.
type MapEntry struct {
	Key   string
	Value any
	// KeyPos and ValuePos locate the entry.
	KeyPos, ValuePos Pos
}

// Entries returns the entries of a Map field in file order.
func (c *Config) Entries(name string) []MapEntry { m, _ := c.values[name].([]MapEntry); return m }

// StringMap returns a Map field of strings as a Go map.
func (c *Config) StringMap(name string) map[string]string {
	out := map[string]string{}
	for _, e := range c.Entries(name) {
		if s, ok := e.Value.(string); ok {
			out[e.Key] = s
		}
	}
	return out
}

func posOf(file string, n *yaml.Node) Pos {
	if n == nil {
		return Pos{File: file}
	}
	return Pos{File: file, Line: n.Line, Col: n.Column}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "an empty document"
}

// Resolve follows aliases and unwraps documents.
func Resolve(n *yaml.Node) *yaml.Node {
	for n != nil && (n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode) {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) > 0 {
			n = n.Content[0]
		} else {
			return nil
		}
	}
	return n
}

func parseObject(file string, node *yaml.Node, fields []Field, skip []string) (*Config, Errors) {
	node = Resolve(node)
	c := &Config{file: file, node: node, fields: fields, values: map[string]any{}, pos: map[string]Pos{}, set: map[string]bool{}}
	var errs Errors
	if node == nil || (node.Kind == yaml.ScalarNode && node.Tag == "!!null") {
		node = nil
		c.node = nil
	} else if node.Kind != yaml.MappingNode {
		return c, Errors{Errorf(posOf(file, node), "expected a mapping, got %s", kindName(node))}
	}
	if node != nil {
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			if slices.Contains(skip, k.Value) {
				continue
			}
			f, ok := findField(fields, k.Value)
			if !ok {
				errs = append(errs, Errorf(posOf(file, k), "unknown field %q%s", k.Value, suggest(k.Value, fields)))
				continue
			}
			if c.set[f.Name] {
				errs = append(errs, Errorf(posOf(file, k), "field %q set twice", k.Value))
				continue
			}
			c.set[f.Name] = true
			c.pos[f.Name] = posOf(file, Resolve(v))
			val, es := parseValue(file, v, f)
			errs = append(errs, es...)
			c.values[f.Name] = val
		}
	}
	for _, f := range fields {
		if c.set[f.Name] {
			continue
		}
		if f.Required() {
			errs = append(errs, Errorf(c.Pos(""), "missing required field %q", f.Name))
			continue
		}
		if f.Default != nil {
			c.values[f.Name] = normalizeDefault(f)
		}
	}
	return c, errs
}

func findField(fields []Field, name string) (Field, bool) {
	for _, f := range fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

func normalizeDefault(f Field) any {
	switch v := f.Default.(type) {
	case int:
		if f.Type == Float {
			return float64(v)
		}
		return int64(v)
	case string:
		if f.Type == Duration {
			d, err := ParseDuration(v)
			if err == nil {
				return d
			}
		}
	case []string:
		out := make([]any, len(v))
		for i, s := range v {
			out[i] = s
		}
		return out
	}
	return f.Default
}

func parseValue(file string, n *yaml.Node, f Field) (any, Errors) {
	n = Resolve(n)
	pos := posOf(file, n)
	if n == nil {
		return nil, Errors{Errorf(pos, "field %q: empty value", f.Name)}
	}
	switch f.Type {
	case Object:
		c, errs := parseObject(file, n, f.Children, nil)
		return c, errs
	case List:
		if n.Kind == yaml.ScalarNode && n.Tag != "!!null" && f.Elem != Object {
			// A single scalar is a one-item list.
			v, errs := parseScalar(file, n, f.Name, f.Elem, f.Enum)
			return []any{v}, errs
		}
		if n.Kind != yaml.SequenceNode {
			return nil, Errors{Errorf(pos, "field %q: expected a list, got %s", f.Name, kindName(n))}
		}
		var errs Errors
		out := make([]any, 0, len(n.Content))
		for _, item := range n.Content {
			if f.Elem == Object {
				c, es := parseObject(file, item, f.Children, nil)
				errs = append(errs, es...)
				out = append(out, c)
				continue
			}
			v, es := parseItem(file, item, f)
			errs = append(errs, es...)
			out = append(out, v)
		}
		return out, errs
	case Map:
		if n.Kind != yaml.MappingNode {
			return nil, Errors{Errorf(pos, "field %q: expected a mapping, got %s", f.Name, kindName(n))}
		}
		var errs Errors
		out := make([]MapEntry, 0, len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				errs = append(errs, Errorf(posOf(file, k), "field %q: key %q set twice", f.Name, k.Value))
				continue
			}
			seen[k.Value] = true
			var val any
			var es Errors
			if f.Elem == Object {
				val, es = parseObject(file, v, f.Children, nil)
			} else {
				val, es = parseItem(file, v, f)
			}
			errs = append(errs, es...)
			out = append(out, MapEntry{Key: k.Value, Value: val, KeyPos: posOf(file, k), ValuePos: posOf(file, Resolve(v))})
		}
		return out, errs
	case Any:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, Errors{Errorf(pos, "field %q: %v", f.Name, err)}
		}
		return v, nil
	}
	return parseScalar(file, n, f.Name, f.Type, f.Enum)
}

func parseItem(file string, n *yaml.Node, f Field) (any, Errors) {
	elem := f.Elem
	if elem == 0 {
		elem = Any
	}
	if elem == Any {
		var v any
		if err := Resolve(n).Decode(&v); err != nil {
			return nil, Errors{Errorf(posOf(file, n), "field %q: %v", f.Name, err)}
		}
		return v, nil
	}
	return parseScalar(file, n, f.Name, elem, f.Enum)
}

func parseScalar(file string, n *yaml.Node, name string, t Type, enum []string) (any, Errors) {
	n = Resolve(n)
	pos := posOf(file, n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return nil, Errors{Errorf(pos, "field %q: expected %s, got %s", name, article(t), kindName(n))}
	}
	s := n.Value
	switch t {
	case String:
		if len(enum) > 0 && !slices.Contains(enum, s) {
			return s, Errors{Errorf(pos, "field %q: %q is not one of %s", name, s, strings.Join(enum, ", "))}
		}
		return s, nil
	case Int:
		v, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
		if err != nil {
			return nil, Errors{Errorf(pos, "field %q: expected an integer, got %q", name, s)}
		}
		return v, nil
	case Float:
		v, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
		if err != nil || math.IsNaN(v) {
			return nil, Errors{Errorf(pos, "field %q: expected a number, got %q", name, s)}
		}
		return v, nil
	case Bool:
		switch strings.ToLower(s) {
		case "true", "yes", "on":
			return true, nil
		case "false", "no", "off":
			return false, nil
		}
		return nil, Errors{Errorf(pos, "field %q: expected true or false, got %q", name, s)}
	case Duration:
		d, err := ParseDuration(s)
		if err != nil {
			return nil, Errors{Errorf(pos, "field %q: %v", name, err)}
		}
		return d, nil
	}
	return s, nil
}

func article(t Type) string {
	switch t {
	case Int:
		return "an integer"
	case Float:
		return "a number"
	case Bool:
		return "true or false"
	case Duration:
		return "a duration such as 30s"
	}
	return "a " + t.String()
}

// ParseDuration parses a Go duration; it also accepts a "d" (24h) unit and a
// bare 0.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if strings.HasSuffix(s, "d") {
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "d"), 64)
		if err == nil {
			return time.Duration(n * float64(24*time.Hour)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("expected a duration such as 500ms, 30s, 1m, 2h or 1d, got %q", s)
	}
	return d, nil
}

func suggest(name string, fields []Field) string {
	best, bestD := "", 3
	for _, f := range fields {
		if d := levenshtein(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
