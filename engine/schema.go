package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
)

// Type is the logical type of a column.
type Type uint8

// Column types. Timestamp columns hold event time as milliseconds since the
// Unix epoch (UTC).
const (
	Invalid Type = iota
	Float64
	Int64
	String
	Bool
	Timestamp
)

var typeNames = [...]string{"invalid", "float64", "int64", "string", "bool", "timestamp"}

// TypeNames lists the names accepted by ParseType, in declaration order.
func TypeNames() []string { return slices.Clone(typeNames[1:]) }

// String returns the type's name as written in pipeline files.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", t)
}

// ParseType parses a type name such as "float64". "double", "float", "int",
// "long", "text" and "time" are accepted as aliases.
func ParseType(s string) (Type, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "float64", "float", "double", "number":
		return Float64, nil
	case "int64", "int", "long", "integer":
		return Int64, nil
	case "string", "text":
		return String, nil
	case "bool", "boolean":
		return Bool, nil
	case "timestamp", "time":
		return Timestamp, nil
	}
	return Invalid, fmt.Errorf("unknown type %q (want one of %s)", s, strings.Join(TypeNames(), ", "))
}

// TimestampType is the Arrow type of event-time columns.
var TimestampType = &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}

// Arrow returns the Arrow data type of t.
func (t Type) Arrow() arrow.DataType {
	switch t {
	case Float64:
		return arrow.PrimitiveTypes.Float64
	case Int64:
		return arrow.PrimitiveTypes.Int64
	case String:
		return arrow.BinaryTypes.String
	case Bool:
		return arrow.FixedWidthTypes.Boolean
	case Timestamp:
		return TimestampType
	}
	return arrow.Null
}

// Field is one named, typed column of a stream.
type Field struct {
	Name string
	Type Type
}

// Schema describes the rows of a stream: its typed columns, which column is
// the event time and which (optional) column is the key (for example the
// asset a measurement belongs to).
type Schema struct {
	Fields []Field
	// Time names the event-time column; it must be a Timestamp field.
	Time string
	// Key names the key column, or is empty. It must be a String field.
	Key string

	arrow *arrow.Schema
}

// NewSchema builds and checks a schema.
func NewSchema(fields []Field, timeField, keyField string) (*Schema, error) {
	s := &Schema{Fields: slices.Clone(fields), Time: timeField, Key: keyField}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// MustSchema is NewSchema for schemas fixed in code; it panics on error and
// must not be used with user input.
func MustSchema(fields []Field, timeField, keyField string) *Schema {
	s, err := NewSchema(fields, timeField, keyField)
	if err != nil {
		panic(err)
	}
	return s
}

func (s *Schema) check() error {
	seen := make(map[string]bool, len(s.Fields))
	for _, f := range s.Fields {
		if f.Name == "" {
			return fmt.Errorf("schema: a field has no name")
		}
		if seen[f.Name] {
			return fmt.Errorf("schema: field %q declared twice", f.Name)
		}
		if f.Type == Invalid || int(f.Type) >= len(typeNames) {
			return fmt.Errorf("schema: field %q has no valid type", f.Name)
		}
		seen[f.Name] = true
	}
	if s.Time != "" {
		i := s.Index(s.Time)
		if i < 0 {
			return fmt.Errorf("schema: time field %q is not a declared field", s.Time)
		}
		if s.Fields[i].Type != Timestamp {
			return fmt.Errorf("schema: time field %q must have type timestamp, not %s", s.Time, s.Fields[i].Type)
		}
	}
	if s.Key != "" {
		i := s.Index(s.Key)
		if i < 0 {
			return fmt.Errorf("schema: key field %q is not a declared field", s.Key)
		}
		if s.Fields[i].Type != String {
			return fmt.Errorf("schema: key field %q must have type string, not %s", s.Key, s.Fields[i].Type)
		}
	}
	fs := make([]arrow.Field, len(s.Fields))
	for i, f := range s.Fields {
		fs[i] = arrow.Field{Name: f.Name, Type: f.Type.Arrow(), Nullable: true}
	}
	s.arrow = arrow.NewSchema(fs, nil)
	return nil
}

// Index returns the position of the named field, or -1.
func (s *Schema) Index(name string) int {
	for i, f := range s.Fields {
		if f.Name == name {
			return i
		}
	}
	return -1
}

// Lookup returns the named field and whether it exists.
func (s *Schema) Lookup(name string) (Field, bool) {
	if i := s.Index(name); i >= 0 {
		return s.Fields[i], true
	}
	return Field{}, false
}

// TimeIndex returns the index of the event-time column, or -1.
func (s *Schema) TimeIndex() int {
	if s.Time == "" {
		return -1
	}
	return s.Index(s.Time)
}

// KeyIndex returns the index of the key column, or -1.
func (s *Schema) KeyIndex() int {
	if s.Key == "" {
		return -1
	}
	return s.Index(s.Key)
}

// Names returns the field names in order.
func (s *Schema) Names() []string {
	out := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		out[i] = f.Name
	}
	return out
}

// Arrow returns the Arrow schema of records on this stream.
func (s *Schema) Arrow() *arrow.Schema {
	if s.arrow == nil {
		_ = s.check()
	}
	return s.arrow
}

// Equal reports whether two schemas have the same fields, time and key.
func (s *Schema) Equal(o *Schema) bool {
	return s.Time == o.Time && s.Key == o.Key && slices.Equal(s.Fields, o.Fields)
}

// String renders the schema as "name:type, ..." with time and key marked.
func (s *Schema) String() string {
	var b strings.Builder
	for i, f := range s.Fields {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.Name)
		b.WriteByte(':')
		b.WriteString(f.Type.String())
		switch f.Name {
		case s.Time:
			b.WriteString("(time)")
		case s.Key:
			b.WriteString("(key)")
		}
	}
	return b.String()
}
