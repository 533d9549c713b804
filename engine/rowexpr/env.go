package rowexpr

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

// MaxNodes caps the size (in syntax tree nodes) of an expression.
const MaxNodes = 500

// MemoryBudget caps how many collection elements (ranges, arrays, maps) one
// evaluation may create.
const MemoryBudget = 10_000

// DisabledBuiltins are the expr builtins that row expressions cannot call:
// those that can build large values from small inputs (repeat, replace,
// join, toJSON, ...), that parse arbitrary payloads, or that read the wall
// clock (now), which would make replays disagree.
var DisabledBuiltins = []string{
	"toJSON", "fromJSON", "toBase64", "fromBase64",
	"repeat", "replace", "join", "split", "splitAfter",
	"concat", "flatten", "sort", "sortBy", "groupBy", "uniq", "reduce",
	"toPairs", "fromPairs", "keys", "values",
	"now",
}

// VarType is the type of an extra variable.
type VarType uint8

// Extra variable types.
const (
	StringVar VarType = iota + 1
	Float64Var
	Int64Var
	BoolVar
	// MapVar is a map[string]any read as name.key or name["key"], such as
	// the attributes of an asset.
	MapVar
)

var varGoTypes = map[VarType]reflect.Type{
	StringVar:  reflect.TypeFor[string](),
	Float64Var: reflect.TypeFor[float64](),
	Int64Var:   reflect.TypeFor[int64](),
	BoolVar:    reflect.TypeFor[bool](),
	MapVar:     reflect.TypeFor[map[string]any](),
}

// Var declares an extra variable: a value that is not a column, set on a
// Frame by the operator (per row or per batch).
type Var struct {
	Name string
	Type VarType
}

var columnGoTypes = map[engine.Type]reflect.Type{
	engine.Float64:   reflect.TypeFor[float64](),
	engine.Int64:     reflect.TypeFor[int64](),
	engine.String:    reflect.TypeFor[string](),
	engine.Bool:      reflect.TypeFor[bool](),
	engine.Timestamp: reflect.TypeFor[time.Time](),
}

// Env is the compile environment of one input schema plus extra variables.
// It is immutable once built, and so are the expressions compiled against
// it: both may be shared by goroutines, each evaluating on its own Frame.
type Env struct {
	schema *engine.Schema
	vars   []Var

	typ        reflect.Type // the environment struct
	zero       any          // its zero value, declared to the compiler
	colOff     []uintptr    // field offset of each column
	varOff     []uintptr    // field offset of each extra variable
	probeOff   uintptr
	probeIndex int

	cols    map[string]int
	varIdx  map[string]int
	nullErr []*NullError // one per column, shared by every frame
}

// NewEnv builds the environment of rows of schema s. Extra variables must
// not reuse a column name.
func NewEnv(s *engine.Schema, vars ...Var) (*Env, error) {
	env := &Env{
		schema:  s,
		vars:    slices.Clone(vars),
		cols:    make(map[string]int, len(s.Fields)),
		varIdx:  make(map[string]int, len(vars)),
		colOff:  make([]uintptr, len(s.Fields)),
		varOff:  make([]uintptr, len(vars)),
		nullErr: make([]*NullError, len(s.Fields)),
	}
	fields := make([]reflect.StructField, 0, len(s.Fields)+len(vars)+1)
	for i, f := range s.Fields {
		gt, ok := columnGoTypes[f.Type]
		if !ok {
			return nil, fmt.Errorf("column %q: type %s is not supported in expressions", f.Name, f.Type)
		}
		env.cols[f.Name] = i
		env.nullErr[i] = &NullError{Field: f.Name}
		fields = append(fields, reflect.StructField{
			Name: fmt.Sprintf("F%d", i), Type: gt, Tag: reflect.StructTag(fmt.Sprintf("expr:%q", f.Name)),
		})
	}
	for i, v := range vars {
		gt, ok := varGoTypes[v.Type]
		switch {
		case !ok:
			return nil, fmt.Errorf("variable %q: unknown type %d", v.Name, v.Type)
		case v.Name == "" || v.Name == "$env":
			return nil, fmt.Errorf("variable name %q is not allowed", v.Name)
		}
		if _, dup := env.cols[v.Name]; dup {
			return nil, fmt.Errorf("variable %q has the name of a column", v.Name)
		}
		if _, dup := env.varIdx[v.Name]; dup {
			return nil, fmt.Errorf("variable %q declared twice", v.Name)
		}
		env.varIdx[v.Name] = i
		fields = append(fields, reflect.StructField{
			Name: fmt.Sprintf("V%d", i), Type: gt, Tag: reflect.StructTag(fmt.Sprintf("expr:%q", v.Name)),
		})
	}
	fields = append(fields, reflect.StructField{Name: probeField, Type: reflect.TypeFor[uint64](), Tag: `expr:"-"`})
	env.typ = reflect.StructOf(fields)
	for i := range s.Fields {
		env.colOff[i] = env.typ.Field(i).Offset
	}
	for i := range vars {
		env.varOff[i] = env.typ.Field(len(s.Fields) + i).Offset
	}
	env.probeIndex = len(fields) - 1
	env.probeOff = env.typ.Field(env.probeIndex).Offset
	env.zero = reflect.Zero(env.typ).Interface()
	if _, err := newBox(env.typ, env.probeOff, env.probeIndex); err != nil {
		return nil, err
	}
	return env, nil
}

// Schema returns the schema the environment was built for.
func (env *Env) Schema() *engine.Schema { return env.schema }

// Vars returns the extra variables.
func (env *Env) Vars() []Var { return slices.Clone(env.vars) }

// Option configures Compile.
type Option func(*options)

type options struct {
	expect engine.Type
}

// Expect requires the expression to yield t: Bool, String and Timestamp
// must match exactly; Float64 accepts any number; Int64 accepts integers.
// An expression whose type is only known at run time (for example one that
// reads an attribute) is accepted and checked per row.
func Expect(t engine.Type) Option { return func(o *options) { o.expect = t } }

// Compile compiles src. Problems are returned as *Error, located inside src.
func (env *Env) Compile(src string, opts ...Option) (*Expr, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	copts := []expr.Option{expr.Env(env.zero), expr.MaxNodes(MaxNodes)}
	copts = append(copts, intOpOptions...)
	for _, name := range DisabledBuiltins {
		copts = append(copts, expr.DisableBuiltin(name))
	}
	prog, err := expr.Compile(src, copts...)
	if err != nil {
		return nil, env.compileError(src, err)
	}
	e := &Expr{env: env, src: src, prog: prog, keys: map[string][]string{}}
	if err := e.collect(prog.Node()); err != nil {
		return nil, err
	}
	e.goType = prog.Node().Type()
	e.typ, e.dynamic = typeOf(e.goType)
	if o.expect != engine.Invalid {
		if err := e.check(o.expect); err != nil {
			return nil, err
		}
	}
	e.fast = compileFast(env, prog.Node())
	return e, nil
}

// Column returns an expression that reads the named column. It works for
// any column name, including names that are not identifiers.
func (env *Env) Column(name string) (*Expr, error) {
	i, ok := env.cols[name]
	if !ok {
		return nil, &Error{Msg: fmt.Sprintf("unknown column %q%s", name, didYouMean(name, env.names()))}
	}
	n := &ast.MemberNode{Node: &ast.IdentifierNode{Value: "$env"}, Property: &ast.StringNode{Value: name}}
	src := fmt.Sprintf("$env[%q]", name)
	if isIdent(name) {
		src = name
	}
	e := &Expr{env: env, src: src, cols: []int{i}, keys: map[string][]string{}}
	e.goType = columnGoTypes[env.schema.Fields[i].Type]
	e.typ = env.schema.Fields[i].Type
	e.fast = compileFast(env, n)
	// The VM path is never needed for a column read, but keep one for Eval
	// parity with compiled expressions.
	prog, err := expr.Compile(src, expr.Env(env.zero))
	if err != nil {
		return nil, env.compileError(src, err)
	}
	e.prog = prog
	return e, nil
}

// NewFrame returns a frame for evaluating expressions of this environment.
// A frame is used by one goroutine at a time.
func (env *Env) NewFrame() *Frame {
	b, err := newBox(env.typ, env.probeOff, env.probeIndex)
	if err != nil {
		// NewEnv has verified the same construction already.
		panic(err)
	}
	n := len(env.schema.Fields)
	return &Frame{
		env:   env,
		box:   b,
		vm:    vm.VM{MemoryBudget: MemoryBudget},
		arrs:  make([]boundCol, n),
		stamp: make([]uint64, n),
		vars:  make([]varVal, len(env.vars)),
		gen:   1,
	}
}

func (env *Env) names() []string {
	out := env.schema.Names()
	for _, v := range env.vars {
		out = append(out, v.Name)
	}
	return out
}

// typeOf maps the static Go type of an expression to a column type. The
// second result reports a type only known at run time.
func typeOf(t reflect.Type) (engine.Type, bool) {
	if t == nil {
		return engine.Invalid, true
	}
	if t == reflect.TypeFor[time.Time]() {
		return engine.Timestamp, false
	}
	if t == reflect.TypeFor[time.Duration]() {
		return engine.Invalid, false
	}
	switch t.Kind() {
	case reflect.Bool:
		return engine.Bool, false
	case reflect.Float32, reflect.Float64:
		return engine.Float64, false
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return engine.Int64, false
	case reflect.String:
		return engine.String, false
	case reflect.Interface:
		return engine.Invalid, true
	}
	return engine.Invalid, false
}

// compileError converts an error of the expr compiler into an *Error.
func (env *Env) compileError(src string, err error) *Error {
	var fe *file.Error
	if !errorsAs(err, &fe) {
		return &Error{Msg: err.Error(), Src: src}
	}
	e := exprError(src, fe)
	if name, ok := strings.CutPrefix(fe.Message, "unknown name "); ok {
		e.Msg += didYouMean(name, env.names())
	}
	return e
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
		case i > 0 && r >= '0' && r <= '9':
		default:
			return false
		}
	}
	return true
}

// didYouMean suggests the closest name, or returns "".
func didYouMean(name string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := spec.EditDistance(name, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}
