package pipelines

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/engine/spec"
)

// LookupEnv finds the value of a variable; os.LookupEnv is the usual one.
type LookupEnv func(name string) (string, bool)

// maxDefaultDepth bounds defaults nested in defaults (${A:-${B:-x}}).
const maxDefaultDepth = 8

// Interpolate replaces ${VAR} and ${VAR:-default} in every scalar of the
// tree, in place. A default may itself hold references, nested up to 8
// deep: ${A:-${B:-x}} is A, else B, else x. "$${" stands for a literal
// "${". A variable that is unset and has no default is an error located at
// the scalar.
//
// Values that are secrets are registered with redact, so that logs and
// errors mask them: the value of a variable whose name names a secret
// (PASS, TOKEN, SECRET, a word ending in KEY: see redact.SecretName), the
// value of a field whose name does (password, token, ...), whether written
// out or interpolated, and the password of every URL of every scalar
// (scheme://user:PASSWORD@host), with its beginnings up to where a URL
// parser would cut it.
func Interpolate(file string, n *yaml.Node, env LookupEnv) spec.Errors {
	return interpolate(file, n, env, false)
}

func interpolate(file string, n *yaml.Node, env LookupEnv, secret bool) spec.Errors {
	if n == nil {
		return nil
	}
	var errs spec.Errors
	if n.Kind == yaml.ScalarNode {
		if strings.Contains(n.Value, "${") {
			v, err := expand(n.Value, env, 0)
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
		if secret {
			redact.Register(n.Value)
		}
		if strings.Contains(n.Value, "://") {
			// A URL's password, also where a library would cut it
			// short (see redact.RegisterURLPasswords).
			redact.RegisterURLPasswords(n.Value)
		}
		return errs
	}
	for i, c := range n.Content {
		s := secret
		if n.Kind == yaml.MappingNode && i%2 == 1 {
			s = s || redact.SecretName(n.Content[i-1].Value)
		}
		errs = append(errs, interpolate(file, c, env, s)...)
	}
	return errs
}

// expand interpolates s; it returns an error message or "".
func expand(s string, env LookupEnv, depth int) (string, string) {
	if depth > maxDefaultDepth {
		return "", fmt.Sprintf("defaults nested more than %d deep", maxDefaultDepth)
	}
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
		end := closing(s[i+2:])
		if end < 0 {
			return "", "unterminated ${ in " + quote(s)
		}
		expr := s[i+2 : i+2+end]
		s = s[i+2+end+1:]
		name, def, hasDef := strings.Cut(expr, ":-")
		if name == "" || strings.ContainsAny(name, " \t${}") {
			return "", "bad variable reference ${" + expr + "}"
		}
		v, ok := env(name)
		if ok && redact.SecretName(name) {
			redact.Register(v)
		}
		if ok && (v != "" || !hasDef) {
			b.WriteString(v)
			continue
		}
		if !hasDef {
			return "", "environment variable " + name + " is not set (write ${" + name + ":-default} to give a default)"
		}
		d, err := expand(def, env, depth+1)
		if err != "" {
			return "", err
		}
		b.WriteString(d)
	}
}

// closing returns the index in s of the '}' that closes a "${" opened just
// before s, counting the references nested in it, or -1.
func closing(s string) int {
	open := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '$' && strings.HasPrefix(s[i:], "$${"):
			// An escaped "${" stands for itself; its '}' closes it.
			open++
			i += 2
		case s[i] == '$' && strings.HasPrefix(s[i:], "${"):
			open++
			i++
		case s[i] == '}':
			if open == 0 {
				return i
			}
			open--
		}
	}
	return -1
}

func quote(s string) string { return "\"" + s + "\"" }
