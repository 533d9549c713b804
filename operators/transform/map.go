package transform

import (
	"errors"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/rowexpr"
	"github.com/sluice-edge/sluice/engine/spec"
)

// MapSpec declares the "map" step.
var MapSpec = spec.Spec{
	Name:    "map",
	Summary: "Computes columns from expressions.",
	Description: `Evaluates one expression per entry of ` + "`fields`" + ` on every row. An entry whose name is not an input
column appends a new column (in file order); an entry named like an input column replaces that column in place.
Every expression sees the input row, not the results of other entries.

The column type is the expression's static type (float64, int64, string, bool or timestamp). An expression whose
type is only known at run time — one that returns an asset attribute, or a conditional with branches of different
types — needs its type in ` + "`types`" + `; ` + "`types`" + ` may also convert between int64 and float64.

A row where any expression fails (a null in a column it reads, a value that does not fit the column type, an
integer division by zero) is left out of the output and sent to the ` + "`errors`" + ` port with the reason in an
extra ` + "`error`" + ` column; it is counted as error_rows. See docs/transform.md.`,
	Fields: []spec.Field{
		{Name: "fields", Type: spec.Map, Elem: spec.String,
			Description: "Map from output column name to expression, in output order.",
			Example:     map[string]any{"temp_f": "temp * 1.8 + 32", "hot": "temp > 80"}},
		{Name: "types", Type: spec.Map, Elem: spec.String, Optional: true, Enum: engine.TypeNames(),
			Description: "Column types for entries of fields whose expression type is only known at run time, or to convert between int64 and float64.",
			Example:     map[string]any{"limit": "float64"}},
	},
	Example: `enriched:
  type: map
  input: turbines
  fields:
    temp_f: gearbox_temp * 1.8 + 32
    hot: gearbox_temp > 80
    power: power / 1000          # replaces power (kW -> MW)`,
}

// mapCol is one computed column.
type mapCol struct {
	name string
	// prefix is "name: ", put before the reasons of this column's errors.
	prefix string
	expr   *rowexpr.Expr
	typ    engine.Type
	out    int           // output column index
	b      array.Builder // builds the column; typed as typ
}

// value is one evaluated result, held until every column of the row has
// been evaluated.
type value struct {
	f float64
	i int64
	s string
	b bool
}

// Map is the "map" step.
type Map struct {
	base
	out  *engine.Schema
	cols []mapCol
	src  []int // per output column: the input column it copies, or -1
	comp []int // per output column: the index in cols, or -1
	pass []array.Builder
	vals []value
	good []int32
	arrs []arrow.Array
}

var _ engine.Operator = (*Map)(nil)

// NewMap builds a map step for input schema in from a configuration parsed
// with MapSpec. Configuration errors carry their file:line:col.
func NewMap(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (*Map, error) {
	b, err := newBase("map", in, bc)
	if err != nil {
		return nil, cfg.Errorf("", "%v", err)
	}
	var errs spec.Errors
	types := map[string]spec.MapEntry{}
	for _, t := range cfg.Entries("types") {
		types[t.Key] = t
	}
	fields := slices.Clone(in.Fields)
	m := &Map{base: b}
	src := make([]int, len(in.Fields))
	for i := range src {
		src[i] = i
	}
	entries := cfg.Entries("fields")
	if len(entries) == 0 {
		errs = append(errs, cfg.Errorf("fields", "fields: declare at least one column"))
	}
	for _, ent := range entries {
		text, _ := ent.Value.(string)
		e, err := b.env.Compile(text)
		if err != nil {
			errs = append(errs, rowexpr.LocateEntry(cfg, "fields", ent.Key, err))
			continue
		}
		typ, err := columnType(e, types, ent.Key)
		if err != nil {
			pos := ent.ValuePos
			if t, ok := types[ent.Key]; ok {
				pos = t.ValuePos
			}
			errs = append(errs, spec.Errorf(pos, "field %q: %s: %v", "fields", ent.Key, err))
			continue
		}
		c := mapCol{name: ent.Key, prefix: ent.Key + ": ", expr: e, typ: typ}
		if i := in.Index(ent.Key); i >= 0 {
			c.out = i
			fields[i].Type = typ
			src[i] = -1
		} else {
			c.out = len(fields)
			fields = append(fields, engine.Field{Name: ent.Key, Type: typ})
			src = append(src, -1)
		}
		m.cols = append(m.cols, c)
	}
	for _, t := range cfg.Entries("types") {
		if !slices.ContainsFunc(entries, func(e spec.MapEntry) bool { return e.Key == t.Key }) {
			errs = append(errs, spec.Errorf(t.KeyPos, "field %q: %q is not a column of fields", "types", t.Key))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	out, err := engine.NewSchema(fields, in.Time, in.Key)
	if err != nil {
		return nil, cfg.Errorf("fields", "%v", err)
	}
	m.out = out
	m.src = src
	m.comp = make([]int, len(fields))
	for i := range m.comp {
		m.comp[i] = -1
	}
	for j := range m.cols {
		m.comp[m.cols[j].out] = j
		m.cols[j].b = array.NewBuilder(m.mem, m.cols[j].typ.Arrow())
	}
	m.pass = make([]array.Builder, len(fields))
	m.vals = make([]value, len(m.cols))
	m.arrs = make([]arrow.Array, len(fields))
	m.start(out)
	return m, nil
}

// columnType decides the type of a computed column from the expression's
// static type and the types map.
func columnType(e *rowexpr.Expr, types map[string]spec.MapEntry, name string) (engine.Type, error) {
	t, declared := types[name]
	if !declared {
		switch {
		case e.Type() != engine.Invalid:
			return e.Type(), nil
		case e.Dynamic():
			return engine.Invalid, errors.New("the expression's type is only known at run time; declare it in types")
		}
		return engine.Invalid, fmt.Errorf("the expression yields %s, which is not a column type", e.GoType())
	}
	want, err := engine.ParseType(fmt.Sprint(t.Value))
	if err != nil {
		return engine.Invalid, err
	}
	got := e.Type()
	numeric := func(t engine.Type) bool { return t == engine.Float64 || t == engine.Int64 }
	if e.Dynamic() || got == want || numeric(got) && numeric(want) {
		return want, nil
	}
	if got == engine.Invalid {
		return engine.Invalid, fmt.Errorf("the expression yields %s, not %s", e.GoType(), want)
	}
	return engine.Invalid, fmt.Errorf("the expression yields %s, not %s", got, want)
}

// Outputs returns the main port and the "errors" port.
func (m *Map) Outputs() []engine.Port { return m.ports }

// Process evaluates the expressions on every row of b.
func (m *Map) Process(b engine.Batch, e engine.PortEmit) error {
	if m.closed {
		b.Release()
		return errors.New("map: Process after Close")
	}
	rec := b.Rec
	if err := m.fr.Bind(rec); err != nil {
		b.Release()
		return fmt.Errorf("map: %w", err)
	}
	n := int(rec.NumRows())
	m.good = m.good[:0]
	for _, c := range m.cols {
		c.b.Reserve(n)
	}
rows:
	for i := range n {
		m.fr.Row(i)
		for j := range m.cols {
			if err := m.eval(j); err != nil {
				m.errs.Add(i, m.cols[j].prefix, err)
				continue rows
			}
		}
		for j := range m.cols {
			m.append(j)
		}
		m.good = append(m.good, int32(i))
	}
	m.cErr.Add(int64(m.errs.Len()))
	errRec := m.errs.Record(rec)
	var out arrow.RecordBatch
	if len(m.good) > 0 {
		out = m.build(rec, len(m.good) == n)
	}
	rec.Release()
	return emit(e, b.Source, out, errRec)
}

// eval evaluates column j of the current row into m.vals[j].
func (m *Map) eval(j int) error {
	c, v := &m.cols[j], &m.vals[j]
	var err error
	switch c.typ {
	case engine.Float64:
		v.f, err = m.fr.Float64(c.expr)
	case engine.Int64:
		v.i, err = m.fr.Int64(c.expr)
	case engine.String:
		v.s, err = m.fr.String(c.expr)
	case engine.Bool:
		v.b, err = m.fr.Bool(c.expr)
	case engine.Timestamp:
		v.i, err = m.fr.Time(c.expr)
	}
	return err
}

// append appends m.vals[j] to column j's builder.
func (m *Map) append(j int) {
	c, v := &m.cols[j], &m.vals[j]
	switch b := c.b.(type) {
	case *array.Float64Builder:
		b.UnsafeAppend(v.f)
	case *array.Int64Builder:
		b.UnsafeAppend(v.i)
	case *array.StringBuilder:
		b.Append(v.s)
		v.s = ""
	case *array.BooleanBuilder:
		b.UnsafeAppend(v.b)
	case *array.TimestampBuilder:
		b.UnsafeAppend(arrow.Timestamp(v.i))
	}
}

// build assembles the output record: computed columns from their builders,
// copied columns shared with rec when every row succeeded, else taken for
// the good rows.
func (m *Map) build(rec arrow.RecordBatch, all bool) arrow.RecordBatch {
	for k := range m.arrs {
		switch j, s := m.comp[k], m.src[k]; {
		case j >= 0:
			m.arrs[k] = m.cols[j].b.NewArray()
		case all:
			m.arrs[k] = rec.Column(s)
			m.arrs[k].Retain()
		default:
			if m.pass[k] == nil {
				m.pass[k] = array.NewBuilder(m.mem, m.out.Fields[k].Type.Arrow())
			}
			rowexpr.AppendColumn(m.pass[k], rec.Column(s), m.good)
			m.arrs[k] = m.pass[k].NewArray()
		}
	}
	out := array.NewRecordBatch(m.out.Arrow(), m.arrs, int64(len(m.good)))
	for k, a := range m.arrs {
		a.Release()
		m.arrs[k] = nil
	}
	return out
}

// Flush emits nothing: a map step holds no rows.
func (m *Map) Flush(engine.PortEmit) error { return nil }

// Close releases the step's memory. It is idempotent.
func (m *Map) Close() error {
	if !m.closed {
		for _, c := range m.cols {
			c.b.Release()
		}
		for _, b := range m.pass {
			if b != nil {
				b.Release()
			}
		}
	}
	m.close()
	return nil
}
