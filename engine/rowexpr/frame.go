package rowexpr

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/expr-lang/expr/vm"

	"github.com/sluice-edge/sluice/engine"
)

// Frame evaluates expressions of one Env over the rows of bound records.
// It holds the expr VM, the boxed environment and the typed column views,
// so that evaluating a row allocates nothing. A Frame is not safe for
// concurrent use: give each goroutine its own.
//
// Usage: Bind a record, then for each row call Row, set the extra
// variables that change per row, and evaluate with the typed getters. A
// frame does not retain the record: the caller keeps it alive while it
// evaluates the record's rows.
type Frame struct {
	env   *Env
	box   box
	vm    vm.VM
	arrs  []boundCol
	stamp []uint64 // generation at which each column was written into box
	vars  []varVal
	gen   uint64
	row   int
	ferr  error // first error of the current native evaluation
}

// boundCol is a typed view of one column of the bound record.
type boundCol struct {
	arr   arrow.Array
	nulls bool
	f64   []float64
	i64   []int64
	ts    []arrow.Timestamp
	str   *array.String
	bln   *array.Boolean
}

type varVal struct {
	s string
	f float64
	i int64
	b bool
	m map[string]any
}

var errUnbound = errors.New("rowexpr: no record is bound to the frame")

// Bind makes rec the record that Row selects rows of. Its columns must match
// the Env's schema.
func (fr *Frame) Bind(rec arrow.RecordBatch) error {
	fields := fr.env.schema.Fields
	if int(rec.NumCols()) != len(fields) {
		return fmt.Errorf("rowexpr: record has %d columns, schema %d", rec.NumCols(), len(fields))
	}
	for i, f := range fields {
		col := rec.Column(i)
		b := boundCol{arr: col, nulls: col.NullN() > 0}
		ok := true
		switch f.Type {
		case engine.Float64:
			a, is := col.(*array.Float64)
			if ok = is; ok {
				b.f64 = a.Float64Values()
			}
		case engine.Int64:
			a, is := col.(*array.Int64)
			if ok = is; ok {
				b.i64 = a.Int64Values()
			}
		case engine.Timestamp:
			a, is := col.(*array.Timestamp)
			if ok = is; ok {
				b.ts = a.TimestampValues()
			}
		case engine.String:
			b.str, ok = col.(*array.String)
		case engine.Bool:
			b.bln, ok = col.(*array.Boolean)
		}
		if !ok {
			return fmt.Errorf("rowexpr: column %q is %s, schema says %s", f.Name, col.DataType(), f.Type)
		}
		fr.arrs[i] = b
	}
	fr.row = 0
	fr.gen++
	return nil
}

// Row selects row i of the bound record.
func (fr *Frame) Row(i int) {
	fr.row = i
	fr.gen++
}

// SetString sets extra variable v (its index among the Env's vars).
func (fr *Frame) SetString(v int, s string) {
	fr.vars[v].s = s
	*(*string)(fr.box.at(fr.env.varOff[v])) = s
}

// SetFloat64 sets extra variable v.
func (fr *Frame) SetFloat64(v int, f float64) {
	fr.vars[v].f = f
	*(*float64)(fr.box.at(fr.env.varOff[v])) = f
}

// SetInt64 sets extra variable v.
func (fr *Frame) SetInt64(v int, i int64) {
	fr.vars[v].i = i
	*(*int64)(fr.box.at(fr.env.varOff[v])) = i
}

// SetBool sets extra variable v.
func (fr *Frame) SetBool(v int, b bool) {
	fr.vars[v].b = b
	*(*bool)(fr.box.at(fr.env.varOff[v])) = b
}

// SetMap sets extra map variable v. The frame keeps m and does not copy
// it; it must not change while the frame uses it.
func (fr *Frame) SetMap(v int, m map[string]any) {
	fr.vars[v].m = m
	*(*map[string]any)(fr.box.at(fr.env.varOff[v])) = m
}

// prep checks that e belongs to this frame's Env and that no column e reads
// is null in the current row.
func (fr *Frame) prep(e *Expr) error {
	if e.env != fr.env {
		return errors.New("rowexpr: expression compiled for another environment")
	}
	for _, c := range e.cols {
		b := &fr.arrs[c]
		if b.arr == nil {
			return errUnbound
		}
		if b.nulls && b.arr.IsNull(fr.row) {
			return fr.env.nullErr[c]
		}
	}
	return nil
}

func (fr *Frame) fail(err error) {
	if fr.ferr == nil {
		fr.ferr = err
	}
}

func (fr *Frame) takeErr() error {
	err := fr.ferr
	fr.ferr = nil
	return err
}

// run evaluates e on the VM: it writes the columns e reads into the boxed
// environment (each column once per row) and runs the program.
func (fr *Frame) run(e *Expr) (any, error) {
	for _, c := range e.cols {
		if fr.stamp[c] != fr.gen {
			fr.load(c)
			fr.stamp[c] = fr.gen
		}
	}
	out, err := fr.vm.Run(e.prog, fr.box.val)
	if err != nil {
		return nil, runtimeError(e.src, err)
	}
	return out, nil
}

// load writes column c of the current row into the boxed environment.
func (fr *Frame) load(c int) {
	b := &fr.arrs[c]
	p := fr.box.at(fr.env.colOff[c])
	switch fr.env.schema.Fields[c].Type {
	case engine.Float64:
		*(*float64)(p) = b.f64[fr.row]
	case engine.Int64:
		*(*int64)(p) = b.i64[fr.row]
	case engine.String:
		*(*string)(p) = b.str.Value(fr.row)
	case engine.Bool:
		*(*bool)(p) = b.bln.Value(fr.row)
	case engine.Timestamp:
		*(*time.Time)(p) = time.UnixMilli(int64(b.ts[fr.row])).UTC()
	}
}

// Bool evaluates e on the current row as a bool.
func (fr *Frame) Bool(e *Expr) (bool, error) {
	if err := fr.prep(e); err != nil {
		return false, err
	}
	if f := e.fast; f != nil {
		if g, ok := f.n.asBool(); ok {
			v := g(fr)
			return v, fr.takeErr()
		}
		return false, e.typeErr("bool")
	}
	out, err := fr.run(e)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, resultErr(out, "bool")
	}
	return b, nil
}

// Float64 evaluates e on the current row as a number.
func (fr *Frame) Float64(e *Expr) (float64, error) {
	if err := fr.prep(e); err != nil {
		return 0, err
	}
	if f := e.fast; f != nil {
		if g, ok := f.n.asNum(); ok {
			v := g(fr).F()
			return v, fr.takeErr()
		}
		return 0, e.typeErr("a number")
	}
	out, err := fr.run(e)
	if err != nil {
		return 0, err
	}
	n, ok := anyNum(out)
	if !ok {
		return 0, resultErr(out, "a number")
	}
	return n.F(), nil
}

// Int64 evaluates e on the current row as an integer. A float result is
// accepted when it is a whole number.
func (fr *Frame) Int64(e *Expr) (int64, error) {
	if err := fr.prep(e); err != nil {
		return 0, err
	}
	var n num
	if f := e.fast; f != nil {
		g, ok := f.n.asNum()
		if !ok {
			return 0, e.typeErr("an integer")
		}
		n = g(fr)
		if err := fr.takeErr(); err != nil {
			return 0, err
		}
	} else {
		out, err := fr.run(e)
		if err != nil {
			return 0, err
		}
		var ok bool
		if n, ok = anyNum(out); !ok {
			return 0, resultErr(out, "an integer")
		}
	}
	if !n.isF {
		return n.i, nil
	}
	if n.f != math.Trunc(n.f) || n.f < math.MinInt64 || n.f >= math.MaxInt64 {
		return 0, &Error{Msg: fmt.Sprintf("expression yields %g, not an integer", n.f)}
	}
	return int64(n.f), nil
}

// String evaluates e on the current row as a string. The result may point
// into the bound record's memory: copy it to keep it beyond the record.
func (fr *Frame) String(e *Expr) (string, error) {
	if err := fr.prep(e); err != nil {
		return "", err
	}
	if f := e.fast; f != nil {
		if g, ok := f.n.asStr(); ok {
			v := g(fr)
			return v, fr.takeErr()
		}
		return "", e.typeErr("a string")
	}
	out, err := fr.run(e)
	if err != nil {
		return "", err
	}
	s, ok := out.(string)
	if !ok {
		return "", resultErr(out, "a string")
	}
	return s, nil
}

// Time evaluates e on the current row as a timestamp, in milliseconds since
// the Unix epoch.
func (fr *Frame) Time(e *Expr) (int64, error) {
	if err := fr.prep(e); err != nil {
		return 0, err
	}
	if f := e.fast; f != nil {
		if f.n.k == kTime {
			v := f.n.t(fr)
			return v, fr.takeErr()
		}
		return 0, e.typeErr("a timestamp")
	}
	out, err := fr.run(e)
	if err != nil {
		return 0, err
	}
	t, ok := out.(time.Time)
	if !ok {
		return 0, resultErr(out, "a timestamp")
	}
	return t.UnixMilli(), nil
}

// Eval evaluates e on the current row and returns the result as float64,
// int64, string, bool or time.Time (or, for results that are not scalars,
// the Go value the VM produced). Unlike the typed getters it allocates;
// the result stays valid after the frame moves on.
func (fr *Frame) Eval(e *Expr) (any, error) {
	if err := fr.prep(e); err != nil {
		return nil, err
	}
	if f := e.fast; f != nil {
		var out any
		switch f.n.k {
		case kNum:
			n := f.n.num(fr)
			if n.isF {
				out = n.f
			} else {
				out = n.i
			}
		case kBool:
			out = f.n.b(fr)
		case kStr:
			out = string([]byte(f.n.s(fr)))
		case kTime:
			out = time.UnixMilli(f.n.t(fr)).UTC()
		case kAny:
			out = normalize(f.n.a(fr))
		}
		if err := fr.takeErr(); err != nil {
			return nil, err
		}
		return out, nil
	}
	out, err := fr.run(e)
	if err != nil {
		return nil, err
	}
	return normalize(out), nil
}

// normalize copies a VM result out of the frame's memory and widens
// integers to int64.
func normalize(v any) any {
	switch x := v.(type) {
	case string:
		return string([]byte(x))
	case float32:
		return float64(x)
	case bool, float64, int64, time.Time, nil:
		return x
	}
	if n, ok := anyNum(v); ok {
		return n.i
	}
	return v
}

func (e *Expr) typeErr(want string) error {
	got := e.typ.String()
	if e.typ == engine.Invalid {
		got = e.goType.String()
	}
	return &Error{Msg: fmt.Sprintf("expression yields %s, not %s", got, want)}
}

func resultErr(v any, want string) error {
	if v == nil {
		return &Error{Msg: "expression yields nil, not " + want}
	}
	return &Error{Msg: fmt.Sprintf("expression yields %T, not %s", v, want)}
}
