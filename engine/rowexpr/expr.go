package rowexpr

import (
	"fmt"
	"reflect"
	"slices"
	"sort"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/sluice-edge/sluice/engine"
)

// Expr is a compiled expression. It is immutable and safe for concurrent
// use; evaluate it on a Frame of the Env that compiled it.
type Expr struct {
	env  *Env
	src  string
	prog *vm.Program
	fast *fastExpr // nil when the expression runs on the VM

	cols    []int               // referenced columns, in order of first use
	vars    []int               // referenced extra variables
	keys    map[string][]string // constant keys read from map variables
	goType  reflect.Type
	typ     engine.Type
	dynamic bool
}

// Source returns the expression text.
func (e *Expr) Source() string { return e.src }

// Type returns the static result type, or engine.Invalid when the type is
// only known at run time (see Dynamic) or has no column type (a list, a
// duration, ...; see GoType).
func (e *Expr) Type() engine.Type { return e.typ }

// Dynamic reports whether the result type is only known at run time, as for
// an expression that returns an attribute value.
func (e *Expr) Dynamic() bool { return e.dynamic }

// GoType returns the static Go type of the result as the compiler sees it.
func (e *Expr) GoType() reflect.Type { return e.goType }

// Columns returns the columns the expression reads, in order of first
// appearance in the source.
func (e *Expr) Columns() []string {
	out := make([]string, len(e.cols))
	for i, c := range e.cols {
		out[i] = e.env.schema.Fields[c].Name
	}
	return out
}

// Vars returns the extra variables the expression reads.
func (e *Expr) Vars() []string {
	out := make([]string, len(e.vars))
	for i, v := range e.vars {
		out[i] = e.env.vars[v].Name
	}
	return out
}

// Keys returns the constant keys the expression reads from the map variable
// name (for attr.max_temp, "max_temp"), sorted.
func (e *Expr) Keys(name string) []string { return slices.Clone(e.keys[name]) }

// Native reports whether the expression runs on the allocation-free
// evaluator rather than on the expr VM.
func (e *Expr) Native() bool { return e.fast != nil }

// check verifies the static result type against the expected one.
func (e *Expr) check(want engine.Type) error {
	if e.dynamic {
		return nil
	}
	ok := e.typ == want
	if want == engine.Float64 && e.typ == engine.Int64 {
		ok = true
	}
	if ok {
		return nil
	}
	got := e.typ.String()
	if e.typ == engine.Invalid {
		got = e.goType.String()
	}
	return &Error{Msg: fmt.Sprintf("expression yields %s, want %s", got, want), Src: e.src, Line: 1, Column: 1}
}

// ref is a column reference and where it appears.
type ref struct {
	col  int
	from int
}

// collect walks the checked syntax tree: it records the columns and
// variables read and rejects constructs row expressions do not allow.
func (e *Expr) collect(root ast.Node) error {
	env := e.env
	handled := map[*ast.IdentifierNode]bool{}
	var refs []ref
	allCols := false
	varSeen := map[int]bool{}
	var fail *Error
	visit(root, func(n ast.Node) {
		if fail != nil {
			return
		}
		switch n := n.(type) {
		case *ast.VariableDeclaratorNode:
			fail = exprErrorAt(e.src, n.Location().From, "let is not supported in row expressions")
		case *ast.MemberNode:
			id, ok := n.Node.(*ast.IdentifierNode)
			if !ok {
				return
			}
			prop, isConst := n.Property.(*ast.StringNode)
			if id.Value == "$env" && isConst {
				handled[id] = true
				if c, ok := env.cols[prop.Value]; ok {
					refs = append(refs, ref{c, n.Location().From})
				} else if v, ok := env.varIdx[prop.Value]; ok {
					varSeen[v] = true
				}
				return
			}
			if v, ok := env.varIdx[id.Value]; ok && isConst && env.vars[v].Type == MapVar {
				if !slices.Contains(e.keys[id.Value], prop.Value) {
					e.keys[id.Value] = append(e.keys[id.Value], prop.Value)
				}
			}
		}
	})
	if fail != nil {
		return fail
	}
	visit(root, func(n ast.Node) {
		id, ok := n.(*ast.IdentifierNode)
		if !ok || handled[id] {
			return
		}
		if id.Value == "$env" {
			allCols = true
			for v := range env.vars {
				varSeen[v] = true
			}
			return
		}
		if c, ok := env.cols[id.Value]; ok {
			refs = append(refs, ref{c, id.Location().From})
		} else if v, ok := env.varIdx[id.Value]; ok {
			varSeen[v] = true
		}
	})
	if allCols {
		for c := range env.schema.Fields {
			refs = append(refs, ref{c, 1 << 30})
		}
	}
	sort.SliceStable(refs, func(i, j int) bool { return refs[i].from < refs[j].from })
	seen := map[int]bool{}
	for _, r := range refs {
		if !seen[r.col] {
			seen[r.col] = true
			e.cols = append(e.cols, r.col)
		}
	}
	for v := range varSeen {
		e.vars = append(e.vars, v)
	}
	slices.Sort(e.vars)
	for _, k := range e.keys {
		slices.Sort(k)
	}
	return nil
}

// visit calls fn for every node of the tree.
func visit(root ast.Node, fn func(ast.Node)) {
	ast.Walk(&root, visitor(fn))
}

type visitor func(ast.Node)

func (v visitor) Visit(n *ast.Node) { v(*n) }
