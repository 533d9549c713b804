package spec

import (
	"errors"
	"fmt"
	"math"
	"reflect"
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
func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// Field declares one configuration field.
type Field struct {
	Name        string
	Type        Type
	Description string
	// Default is the value used when the field is absent. A field with no
	// default and Optional false is required. Any Go integer fits Int, any
	// number fits Float; a Duration default is a time.Duration or a string
	// such as "30s"; a List default is a slice and a Map default a map with
	// string keys. Check reports a default that does not fit.
	Default any
	// Optional marks a field that may be absent and has no default.
	Optional bool
	// Example is shown in docs and in the JSON Schema.
	Example any
	// Enum restricts a String field, or the items of a List or Map of
	// strings, to these values.
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
// returned, each with its location. A null or empty value reads as an empty
// mapping, and YAML merge keys ("<<: *defaults") are expanded, with the
// mapping's own keys taking precedence.
func (s *Spec) Parse(file string, node *yaml.Node, skip ...string) (*Config, Errors) {
	return parseObject(file, node, s.Fields, skip)
}

// Config is a parsed, validated component configuration.
type Config struct {
	file string
	node *yaml.Node
	// at locates the value the configuration was parsed from, also when
	// that value is null and node is nil.
	at     Pos
	fields []Field
	values map[string]any
	pos    map[string]Pos
	set    map[string]bool
}

// Pos returns the position of the named field's value, or of the mapping
// when the field is absent. An empty name gives the mapping's position.
func (c *Config) Pos(name string) Pos {
	if c == nil {
		return Pos{}
	}
	if p, ok := c.pos[name]; ok && name != "" {
		return p
	}
	return c.at
}

// File returns the file the configuration came from.
func (c *Config) File() string {
	if c == nil {
		return ""
	}
	return c.file
}

// Node returns the YAML mapping the configuration was parsed from (nil when
// the value was null or absent).
func (c *Config) Node() *yaml.Node {
	if c == nil {
		return nil
	}
	return c.node
}

// Errorf returns an error located at the named field.
func (c *Config) Errorf(name, format string, args ...any) *Error {
	return Errorf(c.Pos(name), format, args...)
}

// Has reports whether the field was set explicitly.
func (c *Config) Has(name string) bool { return c != nil && c.set[name] }

// Value returns the field's parsed value (nil when absent without default):
// string, int64, float64, bool, time.Duration, *Config, []any or
// []MapEntry; an Any field holds what YAML decodes to. All getters accept
// a nil *Config (an absent Object field) and return zero values.
func (c *Config) Value(name string) any {
	if c == nil {
		return nil
	}
	return c.values[name]
}

// String returns a String field ("" when absent).
func (c *Config) String(name string) string { s, _ := c.Value(name).(string); return s }

// Int returns an Int field.
func (c *Config) Int(name string) int64 {
	switch v := c.Value(name).(type) {
	case int64:
		return v
	case int:
		return int64(v)
	}
	return 0
}

// Float returns a Float field.
func (c *Config) Float(name string) float64 {
	switch v := c.Value(name).(type) {
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
func (c *Config) Bool(name string) bool { b, _ := c.Value(name).(bool); return b }

// Duration returns a Duration field.
func (c *Config) Duration(name string) time.Duration {
	d, _ := c.Value(name).(time.Duration)
	return d
}

// Object returns an Object field, or nil when absent. The getters of a nil
// *Config return zero values.
func (c *Config) Object(name string) *Config { o, _ := c.Value(name).(*Config); return o }

// List returns the items of a List field.
func (c *Config) List(name string) []any { l, _ := c.Value(name).([]any); return l }

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
func (c *Config) Entries(name string) []MapEntry { m, _ := c.Value(name).([]MapEntry); return m }

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

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kindName(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
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

// pair is one key/value entry of a YAML mapping.
type pair struct{ key, value *yaml.Node }

// maxMergeDepth bounds nested merge keys (and so self-referencing anchors).
const maxMergeDepth = 32

func isMerge(k *yaml.Node) bool { return IsMerge(k) }

// IsMerge reports whether a mapping key is a YAML merge key ("<<").
func IsMerge(k *yaml.Node) bool { return k.Kind == yaml.ScalarNode && k.Tag == "!!merge" }

// MappingValue returns the value of key in mapping n as configurations
// read it: n's own entry, else the entry of the first mapping merged into
// it (YAML merge keys, "<<: *base"), or nil. Problems of the merge keys are
// left to Parse to report.
func MappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil {
		return nil
	}
	pairs, _ := mappingPairs("", n, 0)
	for _, p := range pairs {
		if p.key.Value == key {
			return p.value
		}
	}
	return nil
}

// mappingPairs returns the entries of a mapping in file order, with YAML
// merge keys ("<<: *defaults") expanded where they appear. As YAML
// specifies, merged entries never override the mapping's own keys, and an
// earlier merged mapping wins over a later one.
func mappingPairs(file string, n *yaml.Node, depth int) ([]pair, Errors) {
	return mergePairs(file, n, depth, map[*yaml.Node]merged{})
}

// merged is the result of expanding one mapping's merge keys.
type merged struct {
	pairs []pair
	errs  Errors
}

// mergePairs is mappingPairs with the mappings already expanded: a mapping
// merged many times (through aliases, `<<: [*a, *a, ...]` at every level)
// is expanded once, so that a small file cannot cost exponential time.
func mergePairs(file string, n *yaml.Node, depth int, memo map[*yaml.Node]merged) ([]pair, Errors) {
	if depth > maxMergeDepth {
		return nil, Errors{Errorf(posOf(file, n), "merge keys nested too deeply")}
	}
	if m, ok := memo[n]; ok {
		return m.pairs, nil // its errors were reported the first time
	}
	own := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !isMerge(k) {
			own[k.Value] = true
		}
	}
	var (
		out  []pair
		errs Errors
		seen = map[string]bool{}
	)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !isMerge(k) {
			out = append(out, pair{k, v})
			continue
		}
		sources := []*yaml.Node{v}
		if rv := Resolve(v); rv != nil && rv.Kind == yaml.SequenceNode {
			sources = rv.Content
		}
		for _, src := range sources {
			m := Resolve(src)
			if m == nil || m.Kind != yaml.MappingNode {
				errs = append(errs, Errorf(posOf(file, src), "merge key: expected a mapping or a list of mappings, got %s", kindName(m)))
				continue
			}
			ps, es := mergePairs(file, m, depth+1, memo)
			errs = append(errs, es...)
			for _, p := range ps {
				if own[p.key.Value] || seen[p.key.Value] {
					continue
				}
				seen[p.key.Value] = true
				out = append(out, p)
			}
		}
	}
	memo[n] = merged{pairs: out, errs: errs}
	return out, errs
}

func parseObject(file string, node *yaml.Node, fields []Field, skip []string) (*Config, Errors) {
	node = Resolve(node)
	c := &Config{
		file: file, node: node, at: posOf(file, node), fields: fields,
		values: map[string]any{}, pos: map[string]Pos{}, set: map[string]bool{},
	}
	var errs Errors
	if node == nil || node.Kind == 0 || isNull(node) {
		// A null value is an empty mapping: defaults apply and required
		// fields are reported at the null's position.
		c.node = nil
	} else if node.Kind != yaml.MappingNode {
		return c, Errors{Errorf(c.at, "expected a mapping, got %s", kindName(node))}
	}
	if c.node != nil {
		pairs, es := mappingPairs(file, node, 0)
		errs = append(errs, es...)
		for _, p := range pairs {
			k, v := p.key, p.value
			rk := Resolve(k)
			if rk == nil || rk.Kind != yaml.ScalarNode {
				errs = append(errs, Errorf(posOf(file, k), "expected a field name, got %s", kindName(rk)))
				continue
			}
			name := rk.Value
			if slices.Contains(skip, name) {
				continue
			}
			f, ok := findField(fields, name)
			if !ok {
				errs = append(errs, Errorf(posOf(file, k), "unknown field %q%s", name, suggest(name, fields, skip)))
				continue
			}
			if c.set[f.Name] {
				errs = append(errs, Errorf(posOf(file, k), "field %q set twice", name))
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
			errs = append(errs, Errorf(c.at, "missing required field %q", f.Name))
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

// normalizeDefault converts a declared default to the form Parse produces
// for that type (int64, float64, time.Duration, []any, []MapEntry). Check
// reports defaults that cannot be converted; those are returned unchanged.
func normalizeDefault(f Field) any {
	v, err := convertDefault(f.Type, f.Elem, f.Default)
	if err != nil {
		return f.Default
	}
	return v
}

func convertDefault(t, elem Type, v any) (any, error) {
	switch t {
	case String:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case Int:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return rv.Int(), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if u := rv.Uint(); u <= math.MaxInt64 {
				return int64(u), nil
			}
		case reflect.Float32, reflect.Float64:
			if f := rv.Float(); f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
				return int64(f), nil
			}
		}
	case Float:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return float64(rv.Int()), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return float64(rv.Uint()), nil
		case reflect.Float32, reflect.Float64:
			return rv.Float(), nil
		}
	case Bool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case Duration:
		switch d := v.(type) {
		case time.Duration:
			return d, nil
		case string:
			return ParseDuration(d)
		case int:
			if d == 0 {
				return time.Duration(0), nil
			}
		}
	case List:
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
			break
		}
		if elem == 0 {
			elem = Any
		}
		out := make([]any, rv.Len())
		for i := range out {
			item, err := convertDefault(elem, 0, rv.Index(i).Interface())
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out[i] = item
		}
		return out, nil
	case Map:
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String {
			break
		}
		if elem == 0 {
			elem = Any
		}
		out := make([]MapEntry, 0, rv.Len())
		for _, k := range rv.MapKeys() {
			item, err := convertDefault(elem, 0, rv.MapIndex(k).Interface())
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", k.String(), err)
			}
			out = append(out, MapEntry{Key: k.String(), Value: item})
		}
		slices.SortFunc(out, func(a, b MapEntry) int { return strings.Compare(a.Key, b.Key) })
		return out, nil
	case Any:
		return v, nil
	case Object:
		return nil, fmt.Errorf("an object field cannot have a default; give its fields defaults instead")
	}
	return nil, fmt.Errorf("default %#v is not %s", v, article(t))
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
		if n.Kind == yaml.ScalarNode && !isNull(n) && f.Elem != Object {
			// A single scalar is a one-item list.
			v, errs := parseItem(file, n, f)
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
		pairs, errs := mappingPairs(file, n, 0)
		out := make([]MapEntry, 0, len(pairs))
		seen := map[string]bool{}
		for _, p := range pairs {
			k, v := p.key, p.value
			rk := Resolve(k)
			if rk == nil || rk.Kind != yaml.ScalarNode || isNull(rk) {
				errs = append(errs, Errorf(posOf(file, k), "field %q: expected a key, got %s", f.Name, kindName(rk)))
				continue
			}
			if seen[rk.Value] {
				errs = append(errs, Errorf(posOf(file, k), "field %q: key %q set twice", f.Name, rk.Value))
				continue
			}
			seen[rk.Value] = true
			var val any
			var es Errors
			if f.Elem == Object {
				val, es = parseObject(file, v, f.Children, nil)
			} else {
				val, es = parseItem(file, v, f)
			}
			errs = append(errs, es...)
			out = append(out, MapEntry{Key: rk.Value, Value: val, KeyPos: posOf(file, k), ValuePos: posOf(file, Resolve(v))})
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
			return nil, Errors{Errorf(posOf(file, Resolve(n)), "field %q: %v", f.Name, err)}
		}
		return v, nil
	}
	return parseScalar(file, n, f.Name, elem, f.Enum)
}

func parseScalar(file string, n *yaml.Node, name string, t Type, enum []string) (any, Errors) {
	n = Resolve(n)
	pos := posOf(file, n)
	if n == nil || n.Kind != yaml.ScalarNode || isNull(n) {
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
		v, err := parseInt(s)
		if err != nil {
			return nil, Errors{Errorf(pos, "field %q: %v", name, err)}
		}
		return v, nil
	case Float:
		v, err := parseFloat(s)
		if err != nil {
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

// parseInt parses a YAML integer (decimal, 0x, 0o, 0b, with _ separators).
// A number with no fractional part, such as 1e6, is also accepted.
func parseInt(s string) (int64, error) {
	clean := strings.ReplaceAll(s, "_", "")
	if v, err := strconv.ParseInt(clean, 0, 64); err == nil {
		return v, nil
	} else if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%s is out of range for an integer", s)
	}
	if f, err := strconv.ParseFloat(clean, 64); err == nil && f == math.Trunc(f) {
		if f < -(1<<63) || f >= 1<<63 {
			return 0, fmt.Errorf("%s is out of range for an integer", s)
		}
		return int64(f), nil
	}
	return 0, fmt.Errorf("expected an integer, got %q", s)
}

// parseFloat parses a number, including YAML's .inf spellings; NaN is
// rejected.
func parseFloat(s string) (float64, error) {
	switch strings.ToLower(s) {
	case ".inf", "+.inf":
		return math.Inf(1), nil
	case "-.inf":
		return math.Inf(-1), nil
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
	if err == nil && math.IsNaN(v) {
		err = errors.New("not a number")
	}
	return v, err
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
	case Object:
		return "a mapping"
	case Any:
		return "a value"
	}
	return "a " + t.String()
}

// ParseDuration parses a Go duration such as "500ms", "1m30s" or "2h"; it
// also accepts a "d" (24h) unit, alone or combined ("1d", "1.5d", "1d12h"),
// and a bare 0.
func ParseDuration(s string) (time.Duration, error) {
	bad := func() (time.Duration, error) {
		return 0, fmt.Errorf("expected a duration such as 500ms, 30s, 1m, 2h or 1d, got %q", s)
	}
	rest := strings.TrimSpace(s)
	neg := false
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	if rest == "0" {
		return 0, nil
	}
	if rest == "" || rest[0] == '-' || rest[0] == '+' {
		return bad()
	}
	// Split into number+unit components; days are summed here, the other
	// components are left to time.ParseDuration.
	var days float64
	var other strings.Builder
	for rest != "" {
		i := strings.IndexFunc(rest, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if i < 0 {
			return bad() // a number without a unit
		}
		j := strings.IndexAny(rest[i:], "0123456789.")
		if j < 0 {
			j = len(rest)
		} else {
			j += i
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if unit != "d" {
			other.WriteString(num + unit)
			continue
		}
		n, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return bad()
		}
		days += n
	}
	var d time.Duration
	if other.Len() > 0 {
		var err error
		if d, err = time.ParseDuration(other.String()); err != nil {
			return bad()
		}
	}
	if days > 0 {
		dd := days * float64(24*time.Hour)
		if dd >= 1<<63 || time.Duration(dd)+d < 0 {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		d += time.Duration(dd)
	}
	if neg {
		d = -d
	}
	return d, nil
}

// suggest returns a " (did you mean ...?)" hint for a misspelt field name,
// or the list of valid names when none is close.
func suggest(name string, fields []Field, skip []string) string {
	names := make([]string, 0, len(fields)+len(skip))
	for _, f := range fields {
		names = append(names, f.Name)
	}
	names = append(names, skip...)
	best, bestD := "", math.MaxInt
	lower := strings.ToLower(name)
	for _, n := range names {
		d := EditDistance(lower, strings.ToLower(n))
		if strings.EqualFold(name, n) {
			d = 0
		}
		if d < bestD && d <= 2 && d <= len(n)/2 {
			best, bestD = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(fields) == 0 {
		return " (this mapping takes no fields)"
	}
	known := make([]string, len(fields))
	for i, f := range fields {
		known[i] = f.Name
	}
	slices.Sort(known)
	return " (known fields: " + strings.Join(known, ", ") + ")"
}

// EditDistance is the Levenshtein distance of a and b in runes: the
// fewest insertions, deletions and substitutions that turn one into the
// other. The "did you mean" hints of configuration errors use it.
func EditDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
