package rowexpr

import (
	"errors"
	"fmt"
	"strings"

	"github.com/expr-lang/expr/file"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine/spec"
)

// Error is a problem with an expression: a compile error, or a run-time
// error of one row. Line and Column locate it inside the expression text
// (both start at 1; zero means unknown).
type Error struct {
	Msg    string
	Src    string
	Line   int
	Column int
}

// Error returns the message; a compile error also carries its position
// inside the expression, as "msg (line:col)".
func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("%s (%d:%d)", e.Msg, e.Line, e.Column)
}

// NullError reports that a column the expression reads is null in the row.
type NullError struct {
	Field string
}

// Error returns "field <name> is null".
func (e *NullError) Error() string { return "field " + e.Field + " is null" }

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// exprError converts an expr error (located by rune offset) into an *Error.
func exprError(src string, fe *file.Error) *Error {
	e := exprErrorAt(src, fe.From, fe.Message)
	return e
}

// exprErrorAt returns an error located at rune offset from in src.
func exprErrorAt(src string, from int, msg string) *Error {
	line, col := 1, 1
	n := 0
	for _, r := range src {
		if n == from {
			break
		}
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
		n++
	}
	return &Error{Msg: msg, Src: src, Line: line, Column: col}
}

// runtimeError converts an error of the VM into an *Error without position
// (the message is about the row, not about where in the text it failed).
func runtimeError(src string, err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		return &Error{Msg: fe.Message, Src: src}
	}
	return &Error{Msg: err.Error(), Src: src}
}

// Locate places an expression error in the configuration file: pos is the
// position of the expression's YAML value (spec.Config.Pos of the field).
// When the expression is on one line the column is shifted to the token the
// error is about; otherwise the error stays at pos and the message gives the
// line and column inside the expression. Errors that are not *Error are
// placed at pos.
func Locate(pos spec.Pos, err error) *spec.Error {
	return locate(pos, 0, err, "")
}

// LocateField is Locate for the expression in the named field of cfg. It
// also accounts for a quoted YAML value, whose text starts one column after
// the quote, and prefixes the message with the field name.
func LocateField(cfg *spec.Config, field string, err error) *spec.Error {
	n := valueNode(cfg.Node(), field)
	return locate(cfg.Pos(field), style(n), err, fmt.Sprintf("field %q: ", field))
}

// LocateEntry is LocateField for the value of key in a Map field (for
// example one expression of a map step's fields).
func LocateEntry(cfg *spec.Config, field, key string, err error) *spec.Error {
	pos := cfg.Pos(field)
	for _, e := range cfg.Entries(field) {
		if e.Key == key {
			pos = e.ValuePos
		}
	}
	n := valueNode(valueNode(cfg.Node(), field), key)
	return locate(pos, style(n), err, fmt.Sprintf("field %q: %s: ", field, key))
}

func locate(pos spec.Pos, st yaml.Style, err error, prefix string) *spec.Error {
	var e *Error
	if !errors.As(err, &e) {
		var se *spec.Error
		if errors.As(err, &se) {
			return se
		}
		return &spec.Error{Pos: pos, Msg: prefix + err.Error()}
	}
	block := st&(yaml.LiteralStyle|yaml.FoldedStyle) != 0
	switch {
	case e.Line == 0:
		return &spec.Error{Pos: pos, Msg: prefix + e.Msg}
	case e.Line == 1 && !block && !strings.Contains(e.Src, "\n") && pos.Line > 0:
		if st&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			pos.Col++
		}
		pos.Col += e.Column - 1
		return &spec.Error{Pos: pos, Msg: prefix + e.Msg}
	}
	return &spec.Error{Pos: pos, Msg: fmt.Sprintf("%s%s (line %d, column %d of the expression)", prefix, e.Msg, e.Line, e.Column)}
}

// valueNode returns the value of key in mapping m, or nil.
func valueNode(m *yaml.Node, key string) *yaml.Node {
	m = spec.Resolve(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return spec.Resolve(m.Content[i+1])
		}
	}
	return nil
}

func style(n *yaml.Node) yaml.Style {
	if n == nil {
		return 0
	}
	return n.Style
}
