package alert

import (
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode/utf8"
)

// Limits of content templates. A template's running time, output and
// memory are bounded whatever the data: its output stops at max_content
// bytes, its range loops run at most maxLoops iterations per rendering,
// printf pads to at most maxWidth characters per verb, and the functions
// that build strings (print, printf, println, html, js, urlquery) produce
// at most twice max_content bytes per rendering in all.
const (
	// DefaultMaxContent is the default of max_content: the longest
	// rendered content, in bytes.
	DefaultMaxContent = 64 << 10
	// minMaxContent and maxMaxContent bound max_content.
	minMaxContent = 256
	maxMaxContent = 1 << 20
	// maxLoops bounds the range iterations of one rendering.
	maxLoops = 10_000
	// maxWidth bounds a printf width or precision.
	maxWidth = 1024
)

// TruncatedMarker ends a content that was cut at max_content bytes.
const TruncatedMarker = " …[truncated]"

// loopFunc is the function called at the start of every range iteration
// to charge the loop budget. It prints nothing.
const loopFunc = "_sluice_loop"

// errContentFull stops a rendering at max_content bytes.
var errContentFull = errors.New("content longer than max_content")

// budget is what one rendering of a template may still spend.
type budget struct {
	loops int // range iterations
	// bytes is what the functions that build strings may still produce,
	// printf padding included: twice max_content per rendering.
	bytes int
}

// reset gives b the budget of one rendering with the given max_content.
func (b *budget) reset(maxContent int) {
	b.loops, b.bytes = maxLoops, 2*maxContent
}

// build returns what f builds from args, charged to the byte budget, or
// an error once the rendering has built more than the budget. It refuses
// before building when the strings among args, plus extra, already
// exceed what is left, so that one call allocates at most a few times
// the budget (an escaper's expansion of its input).
func (b *budget) build(name string, extra int, args []any, f func() string) (string, error) {
	n := extra
	for _, a := range args {
		if s, ok := a.(string); ok {
			n += len(s)
		}
	}
	if n > b.bytes {
		return "", b.over(name)
	}
	s := f()
	if b.bytes -= len(s); b.bytes < 0 {
		return "", b.over(name)
	}
	return s, nil
}

func (b *budget) over(name string) error {
	b.bytes = -1
	return fmt.Errorf("%s: the strings built in one rendering exceed twice max_content", name)
}

// funcs returns the functions of a content template: the functions that
// build strings checked against the budget, and the loop counter.
func (b *budget) funcs() template.FuncMap {
	escaper := func(name string, f func(...any) string) func(...any) (string, error) {
		return func(args ...any) (string, error) {
			return b.build(name, 0, args, func() string { return f(args...) })
		}
	}
	return template.FuncMap{
		"print":    escaper("print", fmt.Sprint),
		"println":  escaper("println", fmt.Sprintln),
		"html":     escaper("html", template.HTMLEscaper),
		"js":       escaper("js", template.JSEscaper),
		"urlquery": escaper("urlquery", template.URLQueryEscaper),
		"printf": func(format string, args ...any) (string, error) {
			cost, err := checkFormat(format)
			if err != nil {
				return "", err
			}
			return b.build("printf", cost, args, func() string { return fmt.Sprintf(format, args...) })
		},
		loopFunc: func() (string, error) {
			if b.loops--; b.loops < 0 {
				return "", fmt.Errorf("range: more than %d iterations", maxLoops)
			}
			return "", nil
		},
	}
}

// checkFormat returns what the widths and precisions of a printf format
// may add to its output, or an error for a width or precision above
// maxWidth or taken from an argument (*).
func checkFormat(f string) (int, error) {
	cost := 0
	number := func(i int, what string) (int, int, error) {
		if i < len(f) && f[i] == '*' {
			return 0, i, fmt.Errorf("printf %q: %s from an argument (*) is not allowed", f, what)
		}
		n := 0
		for ; i < len(f) && f[i] >= '0' && f[i] <= '9'; i++ {
			n = min(n*10+int(f[i]-'0'), 1<<30)
		}
		if n > maxWidth {
			return 0, i, fmt.Errorf("printf %q: %s %d is more than %d", f, what, n, maxWidth)
		}
		return n, i, nil
	}
	index := func(i int) int {
		if i < len(f) && f[i] == '[' {
			if j := strings.IndexByte(f[i:], ']'); j >= 0 {
				return i + j + 1
			}
		}
		return i
	}
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		i++
		for i < len(f) && strings.IndexByte("+-# 0", f[i]) >= 0 {
			i++
		}
		w, i2, err := number(index(i), "width")
		if err != nil {
			return 0, err
		}
		i = i2
		p := 0
		if i < len(f) && f[i] == '.' {
			if p, i, err = number(index(i+1), "precision"); err != nil {
				return 0, err
			}
		}
		i = index(i)
		cost += max(w, p)
	}
	return cost + len(f), nil
}

// checkTree rejects the constructs of a content template whose cost is
// out of proportion at load time: nested templates, call, method calls
// with arguments that are not short constants (checkMethods), constant
// ranges of more than maxLoops iterations in all, constant printf formats
// with a width or precision above maxWidth. Then it makes every range iteration
// call loopFunc, so that ranges over data stop at maxLoops.
func checkTree(t *template.Template, tick parse.Node) error {
	if len(t.Templates()) > 1 {
		return errors.New("{{define}} and {{block}} are not supported in content")
	}
	var bad error
	walkTree(t.Tree.Root, int64(1), func(n parse.Node, loops int64) (int64, bool) {
		switch n := n.(type) {
		case *parse.CommandNode:
			if len(n.Args) >= 2 {
				if id, ok := n.Args[0].(*parse.IdentifierNode); ok && id.Ident == "printf" {
					if s, ok := n.Args[1].(*parse.StringNode); ok {
						if _, err := checkFormat(s.Text); err != nil {
							bad = err
							return loops, false
						}
					}
				}
			}
		case *parse.RangeNode:
			inner := loops
			if c := n.Pipe.Cmds; len(c) == 1 && len(c[0].Args) == 1 {
				if num, ok := c[0].Args[0].(*parse.NumberNode); ok && num.IsInt && num.Int64 > 0 {
					inner = loops * min(num.Int64, maxLoops+1)
					if inner > maxLoops {
						bad = fmt.Errorf("range over %d: %d iterations in all, more than %d per rendering", num.Int64, inner, maxLoops)
						return loops, false
					}
				}
			}
			if n.List != nil {
				n.List.Nodes = append([]parse.Node{tick}, n.List.Nodes...)
			}
			return inner, true
		case *parse.TemplateNode:
			bad = errors.New("{{template}} is not supported in content")
			return loops, false
		case *parse.PipeNode:
			if err := checkMethods(n); err != nil {
				bad = err
				return loops, false
			}
		case *parse.IdentifierNode:
			if n.Ident == "call" {
				bad = errors.New("call is not supported in content")
				return loops, false
			}
		}
		return loops, true
	})
	return bad
}

// checkMethods rejects the method calls of a pipeline whose arguments are
// not constants of at most maxWidth bytes ({{.time.Format $layout}},
// {{$x | .time.Format}}): what a method builds from a string is not
// charged to the budget, so its arguments are bounded at load time.
func checkMethods(p *parse.PipeNode) error {
	for i, c := range p.Cmds {
		if len(c.Args) == 0 {
			continue
		}
		var name string
		switch n := c.Args[0].(type) {
		case *parse.FieldNode:
			name = n.String()
		case *parse.ChainNode:
			name = n.String()
		case *parse.VariableNode:
			if len(n.Ident) > 1 {
				name = n.String()
			}
		}
		if name == "" || (i == 0 && len(c.Args) == 1) {
			continue
		}
		if i > 0 {
			return fmt.Errorf("%s: a method's arguments must be constants, not a pipeline's result", name)
		}
		for _, a := range c.Args[1:] {
			switch a := a.(type) {
			case *parse.NumberNode, *parse.BoolNode, *parse.NilNode:
			case *parse.StringNode:
				if len(a.Text) > maxWidth {
					return fmt.Errorf("%s: a method's string argument is longer than %d bytes", name, maxWidth)
				}
			default:
				return fmt.Errorf("%s %s: a method's arguments must be constants", name, a)
			}
		}
	}
	return nil
}

// newTemplate parses a content template with the checked printf and the
// loop counter of b.
func newTemplate(name, text string, b *budget) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=zero").Funcs(b.funcs()).Parse(text)
	if err != nil {
		return nil, err
	}
	tick, err := template.New("tick").Funcs(b.funcs()).Parse("{{" + loopFunc + "}}")
	if err != nil {
		return nil, err
	}
	if err := checkTree(t, tick.Tree.Root.Nodes[0]); err != nil {
		return nil, err
	}
	return t, nil
}

// capWriter collects a rendering up to limit bytes, then fails.
type capWriter struct {
	buf   []byte
	limit int
}

func (w *capWriter) Write(p []byte) (int, error) {
	room := w.limit - len(w.buf)
	if len(p) > room {
		w.buf = append(w.buf, p[:room]...)
		return room, errContentFull
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// truncate cuts s to at most limit bytes, on a character boundary, ending
// with TruncatedMarker.
func truncate(s []byte, limit int) string {
	n := max(0, min(len(s), limit-len(TruncatedMarker)))
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return string(s[:n]) + TruncatedMarker
}
