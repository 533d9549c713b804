// Package rowexpr compiles row expressions once against a stream schema and
// evaluates them per row of an Arrow record without allocating.
//
// Expressions use the expr language (github.com/expr-lang/expr): column
// names are variables (`temp > 80 && status == "run"`); a column whose name
// is not an identifier is read as $env["temp.avg"]. Extra variables that are
// not columns, such as the asset a row belongs to (`asset`) or the asset's
// attributes (`attr`, a map read as attr.max_temp), are declared with Var.
//
// The life cycle:
//
//	env, _ := rowexpr.NewEnv(schema, rowexpr.Var{Name: "attr", Type: rowexpr.MapVar})
//	hot, _ := env.Compile("temp > attr.max_temp", rowexpr.Expect(engine.Bool))
//	fr := env.NewFrame() // one per goroutine
//	fr.Bind(rec)
//	for i := range int(rec.NumRows()) {
//		fr.Row(i)
//		fr.SetMap(0, attrsOf(i))
//		ok, err := fr.Bool(hot) // err: a bad row (null field, wrong type, ...)
//	}
//
// Compilation is strict: an unknown name is an error, risky builtins
// (toJSON, repeat, ...) and `let` are rejected, and the expression size is
// capped at MaxNodes. Compile errors are *Error values located inside the
// expression; LocateField and LocateEntry turn them into spec errors located
// in the pipeline file.
//
// Evaluation. A null in a column the expression references makes the row
// fail with a *NullError ("field temp is null"); other run-time problems
// (a missing attribute, a wrong type, an integer division by zero) are
// *Error values. Expressions made of columns, literals, attribute reads,
// arithmetic, comparisons, logic, the conditional operator, string tests
// (contains, startsWith, endsWith, matches, in [...]) and abs/int/float run
// on a typed, allocation-free evaluator; anything else runs on the expr VM
// over a reused, boxed struct environment (see box.go), which allocates only
// for intermediate numbers and strings it builds.
//
// The package also builds the "errors" output that operators share: the
// rows whose evaluation failed, with the reason (ErrorRows, ErrorSchema).
package rowexpr
