package pipelines

import (
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine/spec"
)

// LookupEnv finds the value of a variable; os.LookupEnv is the usual one.
type LookupEnv func(name string) (string, bool)

// Interpolate replaces ${VAR} and ${VAR:-default} in every scalar of the
// tree, in place. "$${" stands for a literal "${". A variable that is unset
// and has no default is an error located at the scalar.
func Interpolate(file string, n *yaml.Node, env LookupEnv) spec.Errors {
	if n == nil {
		return nil
	}
	var errs spec.Errors
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		v, err := expand(n.Value, env)
		if err != "" {
			errs = append(errs, spec.Errorf(spec.Pos{File: file, Line: n.Line, Col: n.Column}, "%s", err))
		} else {
			n.Value = v
			if n.Style == 0 || n.Style == yaml.TaggedStyle {
				// Let the value be resolved again (a number, a bool, ...).
				n.Tag = ""
			}
		}
	}
	for _, c := range n.Content {
		errs = append(errs, Interpolate(file, c, env)...)
	}
	return errs
}

func expand(s string, env LookupEnv) (string, string) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), ""
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", "unterminated ${ in " + quote(s)
		}
		expr := s[i+2 : i+end]
		s = s[i+end+1:]
		name, def, hasDef := strings.Cut(expr, ":-")
		if name == "" || strings.ContainsAny(name, " \t$") {
			return "", "bad variable reference ${" + expr + "}"
		}
		if v, ok := env(name); ok && (v != "" || !hasDef) {
			b.WriteString(v)
			continue
		}
		if !hasDef {
			return "", "environment variable " + name + " is not set (write ${" + name + ":-default} to give a default)"
		}
		b.WriteString(def)
	}
}

func quote(s string) string { return "\"" + s + "\"" }
