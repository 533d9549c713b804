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
// contains PASS, PWD, TOKEN or SECRET (any case), or it has a word ending
// in KEY (words are separated by '_', '-' or '.': KEY, APIKEY, MYKEY,
// ACCESSKEY) and no word saying it names something else about a key (a
// file, a field, a column, a size, ...): API_KEY, MYKEY and private_key
// do, key_file, routing_key, max_keys and KEYBOARD do not. A lone "key"
// is a message key, not a secret.
func SecretName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"pass", "pwd", "token", "secret"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	words := strings.FieldsFunc(n, func(r rune) bool { return r == '_' || r == '-' || r == '.' })
	if n == "key" || !slices.ContainsFunc(words, func(w string) bool { return strings.HasSuffix(w, "key") }) {
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
		s = userinfo(s, urlToken)
	}
	if strings.IndexByte(s, '=') >= 0 {
		s = params(s)
	}
	return s
}

// userinfo masks the user information of every URL in s; token returns
// the text of the URL starting at its argument (urlToken or valueToken).
func userinfo(s string, token func(string) string) string {
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "://")
		if i < 0 {
			break
		}
		b.WriteString(rest[:i+3])
		rest = rest[i+3:]
		at := userinfoEnd(token(rest))
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

// urlToken returns the text of the URL that s (the text after "://")
// starts: up to white space, a double quote or the scheme of the next URL
// (as in a comma-separated list). A password written without percent
// encoding may hold any other byte, so nothing else ends it.
func urlToken(s string) string {
	if end := strings.IndexAny(s, " \t\r\n\""); end >= 0 {
		s = s[:end]
	}
	return valueToken(s)
}

// valueToken is urlToken for a text that is a value (of a field or a
// variable) rather than a message: only the next URL ends it, since a
// password may hold white space and quotes.
func valueToken(s string) string {
	if j := strings.Index(s, "://"); j >= 0 {
		for j > 0 && isSchemeByte(s[j-1]) {
			j--
		}
		s = s[:j]
	}
	return s
}

// userinfoEnd returns the index of the '@' that ends the user information
// of the URL text t (after "://"), or -1. With a password (user:...@) the
// user information runs to the last '@', so that a password holding / ? #
// ' or @ is masked whole; a user name holds none of / ? # [, and a colon
// followed by digits and then / ? or # is a port followed by a path (an
// '@' in the path or query is not user information). Otherwise, as for a
// token without password, the authority ends at the path, query or
// fragment.
func userinfoEnd(t string) int {
	at := strings.LastIndexByte(t, '@')
	if at < 0 {
		return -1
	}
	if user, pass, hasPass := strings.Cut(t[:at], ":"); hasPass && !strings.ContainsAny(user, "/?#[") && !portThenPath(pass) {
		return at
	}
	end := strings.IndexAny(t, "/?#'`<>\\")
	if end < 0 {
		end = len(t)
	}
	return strings.LastIndexByte(t[:end], '@')
}

// portThenPath says whether s starts with digits followed by '/', '?' or
// '#'.
func portThenPath(s string) bool {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i > 0 && i < len(s) && strings.IndexByte("/?#", s[i]) >= 0
}

func isSchemeByte(c byte) bool {
	return c == '+' || c == '-' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// secretParams are the parameter names whose values params masks.
var secretParams = []string{"password", "passwd", "pwd", "pass", "token", "access_token", "refresh_token",
	"auth_token", "id_token", "secret", "client_secret", "api_key", "apikey", "sig", "signature", "sslpassword"}

// params masks the values of secret parameters: name=value in a URL query
// or a key/value connection string (value up to '&', ';', ',' or white
// space, or quoted with ' or "). Spaces and tabs may surround the '=', as
// libpq and pgx allow ("password = x").
func params(s string) string {
	var b strings.Builder
	done := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			continue
		}
		// The parameter name before '='.
		k := i
		for k > 0 && (s[k-1] == ' ' || s[k-1] == '\t') {
			k--
		}
		j := k
		for j > 0 && isNameByte(s[j-1]) {
			j--
		}
		if j == k || !slices.Contains(secretParams, strings.ToLower(s[j:k])) {
			continue
		}
		v := i + 1
		for v < len(s) && (s[v] == ' ' || s[v] == '\t') {
			v++
		}
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
