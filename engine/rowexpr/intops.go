package rowexpr

import (
	"fmt"
	"math"

	"github.com/expr-lang/expr"
)

// Integer + - * never wrap around: a result outside int64 fails the row
// ("integer overflow: 9223372036854775807 + 1") on both evaluators. The
// expr VM wraps like Go, so these operators are overloaded for integer
// operands with checked functions; the native evaluator recognises the
// calls (see checkedOps) and checks the same way.

// checkedOps maps the function standing for an overloaded operator to the
// operator.
var checkedOps = map[string]string{"$sluice_add": "+", "$sluice_sub": "-", "$sluice_mul": "*"}

// intOpOptions are the compile options that overload the operators.
var intOpOptions = func() []expr.Option {
	var opts []expr.Option
	for name, op := range checkedOps {
		fn := func(params ...any) (any, error) {
			a, aInt := asInt(params[0])
			b, bInt := asInt(params[1])
			r, err := checked(op, a, b)
			if err != nil {
				return nil, err
			}
			if aInt && bInt {
				return int(r), nil
			}
			return r, nil
		}
		opts = append(opts,
			expr.Function(name, fn, new(func(int, int) int), new(func(int64, int64) int64), new(func(int, int64) int64), new(func(int64, int) int64)),
			expr.Operator(op, name))
	}
	return opts
}()

// asInt returns an integer operand as int64 and whether it was an int.
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, false
	}
	return 0, false
}

// checked computes a op b, failing when the result does not fit in int64.
// The native evaluator calls the operator's own function directly.
func checked(op string, a, b int64) (int64, error) {
	var r int64
	var ok bool
	switch op {
	case "+":
		r, ok = addInt(a, b)
	case "-":
		r, ok = subInt(a, b)
	default:
		r, ok = mulInt(a, b)
	}
	if !ok {
		return 0, overflow(op, a, b)
	}
	return r, nil
}

// addInt, subInt and mulInt compute a op b and report whether it fits in
// int64.
func addInt(a, b int64) (int64, bool) {
	r := a + b
	return r, (r > a) == (b > 0)
}

func subInt(a, b int64) (int64, bool) {
	r := a - b
	return r, (r < a) == (b > 0)
}

func mulInt(a, b int64) (int64, bool) {
	r := a * b
	return r, a == 0 || b == 0 || r/b == a && !(a == -1 && b == math.MinInt64) && !(b == -1 && a == math.MinInt64)
}

// overflow is the error of a op b not fitting in int64.
func overflow(op string, a, b int64) error {
	return &Error{Msg: fmt.Sprintf("integer overflow: %d %s %d", a, op, b)}
}
