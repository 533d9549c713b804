package spec

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Pos is a location in a source file. Line and Col start at 1; zero means
// unknown.
type Pos struct {
	File string
	Line int
	Col  int
}

// String renders the position as file:line:col.
func (p Pos) String() string {
	file := p.File
	if file == "" {
		file = "<input>"
	}
	return fmt.Sprintf("%s:%d:%d", file, p.Line, p.Col)
}

// Error is a problem found in a configuration, with its location.
type Error struct {
	Pos Pos
	Msg string
}

// Error renders the error as "file:line:col: message".
func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Errorf returns a located error.
func Errorf(pos Pos, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// Errors is a list of located errors; it is itself an error.
type Errors []*Error

// Error renders one error per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Sort orders errors by file, line and column.
func (es Errors) Sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
		)
	})
}

// Err returns nil when the list is empty, else the list.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Collect flattens err into located errors. An error that carries no
// location is attached to pos.
func Collect(pos Pos, err error) Errors {
	if err == nil {
		return nil
	}
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return Errors{{Pos: pos, Msg: err.Error()}}
}
