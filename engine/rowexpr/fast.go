package rowexpr

import (
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/expr-lang/expr/ast"

	"github.com/sluice-edge/sluice/engine"
)

// The native evaluator runs the common subset of expressions as a tree of
// typed Go closures over the bound Arrow columns: no interface boxing, so no
// allocation per row. It follows the expr VM's semantics (checked by a
// differential test): integers stay integers under + - * % and unary -,
// mix with floats as floats, `/` and `**` always yield floats, and an
// integer compares with a float as floats. An expression with any construct
// outside the subset runs on the VM instead.

// kind is the type of a native node.
type kind uint8

const (
	kNum  kind = iota + 1 // num: an int64 or a float64
	kBool                 // bool
	kStr                  // string
	kTime                 // timestamp, milliseconds since the epoch
	kAny                  // a value read from a map variable, typed at run time
)

// num is a number that is either an integer or a float, as in expr.
type num struct {
	i   int64
	f   float64
	isF bool
}

func (n num) F() float64 {
	if n.isF {
		return n.f
	}
	return float64(n.i)
}

func intNum(i int64) num     { return num{i: i} }
func floatNum(f float64) num { return num{f: f, isF: true} }

// fnode is one compiled node; the function matching k is set.
type fnode struct {
	k    kind
	num  func(*Frame) num
	b    func(*Frame) bool
	s    func(*Frame) string
	t    func(*Frame) int64
	a    func(*Frame) any
	desc string // for kAny: the source of the value (attr.max_temp)

	// Shape hints for specialized closures: col is 1 + the index of a
	// float64 or string column the node reads directly (0 otherwise);
	// konst marks a constant, whose value is cnum or cstr.
	col   int
	konst bool
	cnum  num
	cstr  string
}

// fastExpr is a natively compiled expression.
type fastExpr struct {
	n fnode
}

func compileFast(env *Env, root ast.Node) *fastExpr {
	c := fastCompiler{env: env}
	n, ok := c.node(root)
	if !ok {
		return nil
	}
	return &fastExpr{n: n}
}

type fastCompiler struct {
	env *Env
}

var none fnode

func (c *fastCompiler) node(n ast.Node) (fnode, bool) {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		return c.ident(n.Value)
	case *ast.MemberNode:
		return c.member(n)
	case *ast.IntegerNode:
		return constNode(int64(n.Value))
	case *ast.FloatNode:
		return constNode(n.Value)
	case *ast.BoolNode:
		return constNode(n.Value)
	case *ast.StringNode:
		return constNode(n.Value)
	case *ast.ConstantNode:
		return constNode(n.Value)
	case *ast.UnaryNode:
		return c.unary(n)
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.ConditionalNode:
		return c.conditional(n)
	case *ast.BuiltinNode:
		return c.builtin(n)
	case *ast.CallNode:
		return c.call(n)
	}
	return none, false
}

// call handles the calls that stand for checked integer operators (see
// intOpOptions).
func (c *fastCompiler) call(n *ast.CallNode) (fnode, bool) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok || len(n.Arguments) != 2 {
		return none, false
	}
	op, ok := checkedOps[id.Value]
	if !ok {
		return none, false
	}
	l, ok1 := c.node(n.Arguments[0])
	r, ok2 := c.node(n.Arguments[1])
	if !ok1 || !ok2 {
		return none, false
	}
	return arith(op, l, r)
}

func constNode(v any) (fnode, bool) {
	switch v := v.(type) {
	case int:
		n := intNum(int64(v))
		return fnode{k: kNum, num: func(*Frame) num { return n }, konst: true, cnum: n}, true
	case int64:
		n := intNum(v)
		return fnode{k: kNum, num: func(*Frame) num { return n }, konst: true, cnum: n}, true
	case float64:
		n := floatNum(v)
		return fnode{k: kNum, num: func(*Frame) num { return n }, konst: true, cnum: n}, true
	case string:
		return fnode{k: kStr, s: func(*Frame) string { return v }, konst: true, cstr: v}, true
	case bool:
		return fnode{k: kBool, b: func(*Frame) bool { return v }}, true
	}
	return none, false
}

func (c *fastCompiler) ident(name string) (fnode, bool) {
	if i, ok := c.env.cols[name]; ok {
		switch c.env.schema.Fields[i].Type {
		case engine.Float64:
			return fnode{k: kNum, num: func(fr *Frame) num { return floatNum(fr.arrs[i].f64[fr.row]) }, col: i + 1}, true
		case engine.Int64:
			return fnode{k: kNum, num: func(fr *Frame) num { return intNum(fr.arrs[i].i64[fr.row]) }}, true
		case engine.String:
			return fnode{k: kStr, s: func(fr *Frame) string { return fr.arrs[i].str.Value(fr.row) }, col: i + 1}, true
		case engine.Bool:
			return fnode{k: kBool, b: func(fr *Frame) bool { return fr.arrs[i].bln.Value(fr.row) }}, true
		case engine.Timestamp:
			return fnode{k: kTime, t: func(fr *Frame) int64 { return int64(fr.arrs[i].ts[fr.row]) }}, true
		}
		return none, false
	}
	v, ok := c.env.varIdx[name]
	if !ok {
		return none, false
	}
	switch c.env.vars[v].Type {
	case StringVar:
		return fnode{k: kStr, s: func(fr *Frame) string { return fr.vars[v].s }}, true
	case Float64Var:
		return fnode{k: kNum, num: func(fr *Frame) num { return floatNum(fr.vars[v].f) }}, true
	case Int64Var:
		return fnode{k: kNum, num: func(fr *Frame) num { return intNum(fr.vars[v].i) }}, true
	case BoolVar:
		return fnode{k: kBool, b: func(fr *Frame) bool { return fr.vars[v].b }}, true
	}
	return none, false
}

func (c *fastCompiler) member(n *ast.MemberNode) (fnode, bool) {
	if n.Optional || n.Method {
		return none, false
	}
	id, ok := n.Node.(*ast.IdentifierNode)
	prop, isConst := n.Property.(*ast.StringNode)
	if !ok || !isConst {
		return none, false
	}
	if id.Value == "$env" {
		return c.ident(prop.Value)
	}
	v, ok := c.env.varIdx[id.Value]
	if !ok || c.env.vars[v].Type != MapVar {
		return none, false
	}
	key := prop.Value
	return fnode{k: kAny, a: func(fr *Frame) any { return fr.vars[v].m[key] }, desc: id.Value + "." + key}, true
}

// Conversions of a node to the type a context needs. A kAny node converts
// at run time and reports a row error when the value does not fit.

func (n fnode) asNum() (func(*Frame) num, bool) {
	switch n.k {
	case kNum:
		return n.num, true
	case kAny:
		a, desc := n.a, n.desc
		return func(fr *Frame) num {
			v := a(fr)
			x, ok := anyNum(v)
			if !ok {
				fr.fail(notA(desc, v, "a number"))
			}
			return x
		}, true
	}
	return nil, false
}

func (n fnode) asBool() (func(*Frame) bool, bool) {
	switch n.k {
	case kBool:
		return n.b, true
	case kAny:
		a, desc := n.a, n.desc
		return func(fr *Frame) bool {
			v := a(fr)
			b, ok := v.(bool)
			if !ok {
				fr.fail(notA(desc, v, "a bool"))
			}
			return b
		}, true
	}
	return nil, false
}

func (n fnode) asStr() (func(*Frame) string, bool) {
	switch n.k {
	case kStr:
		return n.s, true
	case kAny:
		a, desc := n.a, n.desc
		return func(fr *Frame) string {
			v := a(fr)
			s, ok := v.(string)
			if !ok {
				fr.fail(notA(desc, v, "a string"))
			}
			return s
		}, true
	}
	return nil, false
}

func anyNum(v any) (num, bool) {
	switch x := v.(type) {
	case float64:
		return floatNum(x), true
	case int:
		return intNum(int64(x)), true
	case int64:
		return intNum(x), true
	case float32:
		return floatNum(float64(x)), true
	case int32:
		return intNum(int64(x)), true
	case int16:
		return intNum(int64(x)), true
	case int8:
		return intNum(int64(x)), true
	case uint:
		return intNum(int64(x)), true
	case uint64:
		return intNum(int64(x)), true
	case uint32:
		return intNum(int64(x)), true
	case uint16:
		return intNum(int64(x)), true
	case uint8:
		return intNum(int64(x)), true
	}
	return num{}, false
}

func notA(desc string, v any, want string) error {
	if v == nil {
		return &Error{Msg: desc + " is not set"}
	}
	return &Error{Msg: fmt.Sprintf("%s is %T, not %s", desc, v, want)}
}

func (c *fastCompiler) unary(n *ast.UnaryNode) (fnode, bool) {
	x, ok := c.node(n.Node)
	if !ok {
		return none, false
	}
	switch n.Operator {
	case "-":
		f, ok := x.asNum()
		if !ok {
			return none, false
		}
		return fnode{k: kNum, num: func(fr *Frame) num {
			v := f(fr)
			if v.isF {
				return floatNum(-v.f)
			}
			return intNum(-v.i)
		}}, true
	case "+":
		f, ok := x.asNum()
		if !ok {
			return none, false
		}
		return fnode{k: kNum, num: f}, true
	case "!", "not":
		f, ok := x.asBool()
		if !ok {
			return none, false
		}
		return fnode{k: kBool, b: func(fr *Frame) bool { return !f(fr) }}, true
	}
	return none, false
}

func (c *fastCompiler) binary(n *ast.BinaryNode) (fnode, bool) {
	l, ok := c.node(n.Left)
	if !ok {
		return none, false
	}
	if n.Operator == "in" {
		return inSet(l, n.Right)
	}
	if n.Operator == "matches" {
		return matches(l, n.Right)
	}
	r, ok := c.node(n.Right)
	if !ok {
		return none, false
	}
	switch n.Operator {
	case "&&", "and", "||", "or":
		lb, ok1 := l.asBool()
		rb, ok2 := r.asBool()
		if !ok1 || !ok2 {
			return none, false
		}
		if n.Operator == "&&" || n.Operator == "and" {
			return fnode{k: kBool, b: func(fr *Frame) bool { return lb(fr) && rb(fr) }}, true
		}
		return fnode{k: kBool, b: func(fr *Frame) bool { return lb(fr) || rb(fr) }}, true
	case "==", "!=":
		eq, ok := equal(l, r)
		if !ok {
			return none, false
		}
		if n.Operator == "!=" {
			return fnode{k: kBool, b: func(fr *Frame) bool { return !eq(fr) }}, true
		}
		return fnode{k: kBool, b: eq}, true
	case "<", ">", "<=", ">=":
		return order(n.Operator, l, r)
	case "+", "-", "*", "/", "%", "**", "^":
		return arith(n.Operator, l, r)
	case "contains", "startsWith", "endsWith":
		ls, ok1 := l.asStr()
		rs, ok2 := r.asStr()
		if !ok1 || !ok2 || l.k == kAny && r.k == kAny {
			return none, false
		}
		var f func(string, string) bool
		switch n.Operator {
		case "contains":
			f = strings.Contains
		case "startsWith":
			f = strings.HasPrefix
		default:
			f = strings.HasSuffix
		}
		return fnode{k: kBool, b: func(fr *Frame) bool { return f(ls(fr), rs(fr)) }}, true
	}
	return none, false
}

// inSet handles `x in ["a", "b"]`, which the optimizer turns into a lookup
// in a constant set.
func inSet(l fnode, right ast.Node) (fnode, bool) {
	cn, ok := right.(*ast.ConstantNode)
	if !ok {
		return none, false
	}
	set, ok := cn.Value.(map[string]struct{})
	if !ok || l.k != kStr {
		return none, false
	}
	s := l.s
	return fnode{k: kBool, b: func(fr *Frame) bool { _, ok := set[s(fr)]; return ok }}, true
}

func matches(l fnode, right ast.Node) (fnode, bool) {
	pat, ok := right.(*ast.StringNode)
	if !ok || l.k != kStr {
		return none, false
	}
	re, err := regexp.Compile(pat.Value)
	if err != nil {
		return none, false
	}
	s := l.s
	return fnode{k: kBool, b: func(fr *Frame) bool { return re.MatchString(s(fr)) }}, true
}

func numEq(a, b num) bool {
	if !a.isF && !b.isF {
		return a.i == b.i
	}
	return a.F() == b.F()
}

// equal compiles ==. Like expr, values of different types are unequal.
func equal(l, r fnode) (func(*Frame) bool, bool) {
	if l.k == kAny && r.k == kAny {
		return nil, false
	}
	if r.k == kAny {
		l, r = r, l
	}
	if l.k == kAny {
		a := l.a
		switch r.k {
		case kNum:
			g := r.num
			return func(fr *Frame) bool { x, ok := anyNum(a(fr)); return ok && numEq(x, g(fr)) }, true
		case kStr:
			g := r.s
			return func(fr *Frame) bool { x, ok := a(fr).(string); return ok && x == g(fr) }, true
		case kBool:
			g := r.b
			return func(fr *Frame) bool { x, ok := a(fr).(bool); return ok && x == g(fr) }, true
		}
		return nil, false
	}
	if l.k != r.k {
		return nil, false
	}
	if l.konst && !r.konst {
		l, r = r, l
	}
	if l.col > 0 && r.konst {
		// A column against a constant: one closure, no num boxing.
		i := l.col - 1
		switch {
		case l.k == kStr:
			v := r.cstr
			return func(fr *Frame) bool { return fr.arrs[i].str.Value(fr.row) == v }, true
		case l.k == kNum:
			v := r.cnum.F()
			return func(fr *Frame) bool { return fr.arrs[i].f64[fr.row] == v }, true
		}
	}
	switch l.k {
	case kNum:
		a, b := l.num, r.num
		return func(fr *Frame) bool { return numEq(a(fr), b(fr)) }, true
	case kStr:
		a, b := l.s, r.s
		return func(fr *Frame) bool { return a(fr) == b(fr) }, true
	case kBool:
		a, b := l.b, r.b
		return func(fr *Frame) bool { return a(fr) == b(fr) }, true
	case kTime:
		a, b := l.t, r.t
		return func(fr *Frame) bool { return a(fr) == b(fr) }, true
	}
	return nil, false
}

// cmpNum returns -1, 0 or +1, and false when the numbers are unordered
// (a NaN).
func cmpNum(a, b num) (int, bool) {
	if !a.isF && !b.isF {
		switch {
		case a.i < b.i:
			return -1, true
		case a.i > b.i:
			return 1, true
		}
		return 0, true
	}
	x, y := a.F(), b.F()
	switch {
	case x < y:
		return -1, true
	case x > y:
		return 1, true
	case x == y:
		return 0, true
	}
	return 0, false
}

func cmpOp(op string) func(c int, ok bool) bool {
	switch op {
	case "<":
		return func(c int, ok bool) bool { return ok && c < 0 }
	case ">":
		return func(c int, ok bool) bool { return ok && c > 0 }
	case "<=":
		return func(c int, ok bool) bool { return ok && c <= 0 }
	}
	return func(c int, ok bool) bool { return ok && c >= 0 }
}

// order compiles < > <= >=.
func order(op string, l, r fnode) (fnode, bool) {
	if l.k == kAny && r.k == kAny {
		return none, false
	}
	test := cmpOp(op)
	// Specialize the most common shape, a float column against a number,
	// to one closure call.
	if l.k == kNum && r.k == kNum {
		if f, ok := orderColConst(op, l, r); ok {
			return f, true
		}
		a, b := l.num, r.num
		switch op {
		case "<":
			return fnode{k: kBool, b: func(fr *Frame) bool { return numLess(a(fr), b(fr)) }}, true
		case ">":
			return fnode{k: kBool, b: func(fr *Frame) bool { return numLess(b(fr), a(fr)) }}, true
		}
		return fnode{k: kBool, b: func(fr *Frame) bool { return test(cmpNum(a(fr), b(fr))) }}, true
	}
	switch {
	case l.k == kNum || r.k == kNum:
		a, ok1 := l.asNum()
		b, ok2 := r.asNum()
		if !ok1 || !ok2 {
			return none, false
		}
		return fnode{k: kBool, b: func(fr *Frame) bool { return test(cmpNum(a(fr), b(fr))) }}, true
	case l.k == kStr || r.k == kStr:
		a, ok1 := l.asStr()
		b, ok2 := r.asStr()
		if !ok1 || !ok2 {
			return none, false
		}
		return fnode{k: kBool, b: func(fr *Frame) bool { return test(strings.Compare(a(fr), b(fr)), true) }}, true
	case l.k == kTime && r.k == kTime:
		a, b := l.t, r.t
		return fnode{k: kBool, b: func(fr *Frame) bool {
			x, y := a(fr), b(fr)
			c := 0
			if x < y {
				c = -1
			} else if x > y {
				c = 1
			}
			return test(c, true)
		}}, true
	}
	return none, false
}

// orderColConst specializes a float64 column compared with a constant.
func orderColConst(op string, l, r fnode) (fnode, bool) {
	flip := map[string]string{"<": ">", ">": "<", "<=": ">=", ">=": "<="}
	if l.konst && r.col > 0 {
		l, r, op = r, l, flip[op]
	}
	if l.col == 0 || !r.konst {
		return none, false
	}
	i, v := l.col-1, r.cnum.F()
	var f func(*Frame) bool
	switch op {
	case "<":
		f = func(fr *Frame) bool { return fr.arrs[i].f64[fr.row] < v }
	case ">":
		f = func(fr *Frame) bool { return fr.arrs[i].f64[fr.row] > v }
	case "<=":
		f = func(fr *Frame) bool { return fr.arrs[i].f64[fr.row] <= v }
	default:
		f = func(fr *Frame) bool { return fr.arrs[i].f64[fr.row] >= v }
	}
	return fnode{k: kBool, b: f}, true
}

func numLess(a, b num) bool {
	if !a.isF && !b.isF {
		return a.i < b.i
	}
	return a.F() < b.F()
}

var errDivZero = &Error{Msg: "integer divide by zero"}

// arith compiles + - * / % ** ^ over numbers.
func arith(op string, l, r fnode) (fnode, bool) {
	if l.k == kAny && r.k == kAny && op == "+" {
		// Two attributes may be strings, which + concatenates.
		return none, false
	}
	a, ok1 := l.asNum()
	b, ok2 := r.asNum()
	if !ok1 || !ok2 {
		return none, false
	}
	var f func(fr *Frame) num
	switch op {
	case "+":
		f = func(fr *Frame) num {
			x, y := a(fr), b(fr)
			if !x.isF && !y.isF {
				r, ok := addInt(x.i, y.i)
				if !ok {
					fr.fail(overflow("+", x.i, y.i))
				}
				return intNum(r)
			}
			return floatNum(x.F() + y.F())
		}
	case "-":
		f = func(fr *Frame) num {
			x, y := a(fr), b(fr)
			if !x.isF && !y.isF {
				r, ok := subInt(x.i, y.i)
				if !ok {
					fr.fail(overflow("-", x.i, y.i))
				}
				return intNum(r)
			}
			return floatNum(x.F() - y.F())
		}
	case "*":
		f = func(fr *Frame) num {
			x, y := a(fr), b(fr)
			if !x.isF && !y.isF {
				r, ok := mulInt(x.i, y.i)
				if !ok {
					fr.fail(overflow("*", x.i, y.i))
				}
				return intNum(r)
			}
			return floatNum(x.F() * y.F())
		}
	case "/":
		f = func(fr *Frame) num { return floatNum(a(fr).F() / b(fr).F()) }
	case "%":
		f = func(fr *Frame) num {
			x, y := a(fr), b(fr)
			switch {
			case x.isF || y.isF:
				fr.fail(&Error{Msg: fmt.Sprintf("invalid operation: %s %% %s", numType(x), numType(y))})
				return num{}
			case y.i == 0:
				fr.fail(errDivZero)
				return num{}
			}
			return intNum(x.i % y.i)
		}
	case "**", "^":
		f = func(fr *Frame) num { return floatNum(math.Pow(a(fr).F(), b(fr).F())) }
	default:
		return none, false
	}
	return fnode{k: kNum, num: f}, true
}

func numType(n num) string {
	if n.isF {
		return "float64"
	}
	return "int"
}

func (c *fastCompiler) conditional(n *ast.ConditionalNode) (fnode, bool) {
	cond, ok := c.node(n.Cond)
	if !ok {
		return none, false
	}
	cb, ok := cond.asBool()
	if !ok {
		return none, false
	}
	x, ok1 := c.node(n.Exp1)
	y, ok2 := c.node(n.Exp2)
	if !ok1 || !ok2 || x.k != y.k {
		return none, false
	}
	switch x.k {
	case kNum:
		a, b := x.num, y.num
		return fnode{k: kNum, num: func(fr *Frame) num {
			if cb(fr) {
				return a(fr)
			}
			return b(fr)
		}}, true
	case kBool:
		a, b := x.b, y.b
		return fnode{k: kBool, b: func(fr *Frame) bool {
			if cb(fr) {
				return a(fr)
			}
			return b(fr)
		}}, true
	case kStr:
		a, b := x.s, y.s
		return fnode{k: kStr, s: func(fr *Frame) string {
			if cb(fr) {
				return a(fr)
			}
			return b(fr)
		}}, true
	case kTime:
		a, b := x.t, y.t
		return fnode{k: kTime, t: func(fr *Frame) int64 {
			if cb(fr) {
				return a(fr)
			}
			return b(fr)
		}}, true
	}
	return none, false
}

func (c *fastCompiler) builtin(n *ast.BuiltinNode) (fnode, bool) {
	if len(n.Arguments) != 1 || n.Map != nil {
		return none, false
	}
	x, ok := c.node(n.Arguments[0])
	if !ok || x.k != kNum {
		return none, false
	}
	f := x.num
	switch n.Name {
	case "abs":
		return fnode{k: kNum, num: func(fr *Frame) num {
			v := f(fr)
			if v.isF {
				return floatNum(math.Abs(v.f))
			}
			if v.i < 0 {
				return intNum(-v.i)
			}
			return v
		}}, true
	case "float":
		return fnode{k: kNum, num: func(fr *Frame) num { return floatNum(f(fr).F()) }}, true
	case "int":
		return fnode{k: kNum, num: func(fr *Frame) num {
			v := f(fr)
			if v.isF {
				return intNum(int64(int(v.f)))
			}
			return v
		}}, true
	}
	return none, false
}
