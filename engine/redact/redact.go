// Package redact masks secrets in text that goes to logs and errors: the
// password of a URL's user information, secret query parameters
// (password=, token=, ...), the password= of a key/value connection string,
// and any value registered as a secret (for example the value of an
// environment variable interpolated into a password field).
//
// String masks one text; Error wraps an error so that its message is
// masked; NewHandler wraps a slog.Handler so that no record it handles can
// carry a secret in its message or in any attribute.
package redact

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Mask replaces a secret.
const Mask = "xxxxx"

// MinSecretLen is the length below which a registered value is not masked
// wherever it appears (a one-letter password would mask every such letter);
// such values are still masked in the URL, query and connection-string
// positions String recognises.
const MinSecretLen = 4

// MaxSecrets bounds the number of registered values; further ones are
// ignored.
const MaxSecrets = 1024

var (
	mu       sync.Mutex
	secrets  []string
	replacer atomic.Pointer[strings.Replacer]
)

// Register records values as secrets: String masks them wherever they
// appear. Values shorter than MinSecretLen are ignored, and so are values
// past MaxSecrets.
func Register(values ...string) {
	mu.Lock()
	defer mu.Unlock()
	changed := false
	for _, v := range values {
		if len(v) < MinSecretLen || slices.Contains(secrets, v) || len(secrets) >= MaxSecrets {
			continue
		}
		secrets = append(secrets, v)
		changed = true
	}
	if !changed {
		return
	}
	// Longest first, so that a secret holding another is masked whole.
	sorted := slices.Clone(secrets)
	slices.SortFunc(sorted, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(sorted))
	for _, s := range sorted {
		pairs = append(pairs, s, Mask)
	}
	replacer.Store(strings.NewReplacer(pairs...))
}

// SecretName says whether a variable or field name names a secret: it
// contains PASS, PWD, TOKEN or SECRET (any case), or it has a word KEY
// (words are separated by '_', '-' or '.') and no word saying it names
// something else about a key (a file, a field, a column, a size, ...):
// API_KEY and private_key do, key_file, routing_key and max_keys do not.
// A lone "key" is a message key, not a secret.
func SecretName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"pass", "pwd", "token", "secret"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	words := strings.FieldsFunc(n, func(r rune) bool { return r == '_' || r == '-' || r == '.' })
	if n == "key" || !slices.ContainsFunc(words, func(w string) bool { return w == "key" || strings.HasSuffix(w, "apikey") }) {
		return false
	}
	for _, w := range words {
		switch w {
		case "file", "path", "field", "from", "column", "idle", "max", "min", "keys", "bytes", "routing", "partition", "id", "name",
			// Keys that name things rather than unlock them.
			"product", "device", "asset", "group", "sort", "message", "primary", "foreign", "topic", "dedupe", "cache":
			return false
		}
	}
	return true
}

// String returns s with its secrets masked: URL passwords
// (scheme://user:PASSWORD@host, and the whole user information when it has
// no password, since some brokers take a token there), the values of secret
// query or key/value parameters (password=, token=, ...; quoted values
// included) and the registered values.
func String(s string) string {
	if r := replacer.Load(); r != nil {
		s = r.Replace(s)
	}
	if strings.Contains(s, "://") {
		s = userinfo(s)
	}
	if strings.IndexByte(s, '=') >= 0 {
		s = params(s)
	}
	return s
}

// userinfo masks the user information of every URL in s.
func userinfo(s string) string {
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "://")
		if i < 0 {
			break
		}
		b.WriteString(rest[:i+3])
		rest = rest[i+3:]
		// The authority ends at the path, query or fragment, or where the
		// text around the URL resumes.
		end := strings.IndexAny(rest, "/?#\"'` \t\r\n<>\\")
		if end < 0 {
			end = len(rest)
		}
		at := strings.LastIndexByte(rest[:end], '@')
		if at < 0 {
			continue
		}
		info := rest[:at]
		if user, _, hasPass := strings.Cut(info, ":"); hasPass {
			b.WriteString(user)
			b.WriteString(":" + Mask)
		} else if info != "" {
			b.WriteString(Mask)
		}
		rest = rest[at:]
	}
	b.WriteString(rest)
	return b.String()
}

// secretParams are the parameter names whose values params masks.
var secretParams = []string{"password", "passwd", "pwd", "pass", "token", "access_token", "refresh_token",
	"auth_token", "id_token", "secret", "client_secret", "api_key", "apikey", "sig", "signature", "sslpassword"}

// params masks the values of secret parameters: name=value in a URL query
// or a key/value connection string (value up to '&', ';', ',' or white
// space, or quoted with ' or ").
func params(s string) string {
	var b strings.Builder
	done := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			continue
		}
		// The parameter name before '='.
		j := i
		for j > 0 && isNameByte(s[j-1]) {
			j--
		}
		if j == i || !slices.Contains(secretParams, strings.ToLower(s[j:i])) {
			continue
		}
		v := i + 1
		end := v
		if v < len(s) && (s[v] == '\'' || s[v] == '"') {
			q := s[v]
			end = v + 1
			for end < len(s) && s[end] != q {
				if s[end] == '\\' && end+1 < len(s) {
					end++
				}
				end++
			}
			if end < len(s) {
				end++
			}
		} else {
			for end < len(s) && !strings.ContainsRune("&;, \t\r\n\"'`)>]}", rune(s[end])) {
				end++
			}
		}
		if end == v {
			continue
		}
		b.WriteString(s[done:v])
		b.WriteString(Mask)
		done = end
		i = end - 1
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

func isNameByte(c byte) bool {
	return c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Error returns err with its message masked by String; errors.Is and
// errors.As still see the errors it wraps. It returns nil for nil and err
// itself when its message holds no secret.
func Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := String(msg); red != msg {
		return &redacted{msg: red, err: err}
	}
	return err
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
