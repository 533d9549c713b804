package redact

import (
	"errors"
	"fmt"
	"iter"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ParseURL parses raw as url.Parse does, for every connector that takes a
// URL, so that a URL is checked the same way when a pipeline is validated
// and when it runs. Its errors are safe to print: they quote raw masked
// by String and, when raw holds user information ('@'), never url.Parse's
// own text, which quotes the URL cut where a password written without
// percent encoding ends it ("amqp://bob:Hunter" of amqp://bob:Hunter#22@h)
// and the port text it then finds (":Hunter"). A port, when the URL has
// one, must be a number in 1..65535.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.IndexByte(raw, '@') >= 0 {
			return nil, fmt.Errorf("url %q: cannot be parsed; a password holding / ? # @ or spaces must be percent-encoded (%%2F %%3F %%23 %%40 %%20)", URL(raw))
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL
		}
		return nil, errors.New(String(fmt.Sprintf("url %q: %v", raw, err)))
	}
	if p := u.Port(); p != "" {
		if err := checkPort(p); err != nil {
			return nil, fmt.Errorf("url %q: %w", URL(raw), err)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, fmt.Errorf("url %q: empty port", URL(raw))
	}
	return u, nil
}

// CheckHostPort checks a host:port address (a Kafka broker, for example):
// a host and a port that is a number in 1..65535.
func CheckHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", String(addr))
	}
	if host == "" {
		return fmt.Errorf("%q has no host", String(addr))
	}
	if err := checkPort(port); err != nil {
		return fmt.Errorf("%q: %w", String(addr), err)
	}
	return nil
}

// URL is String for a value that is one URL (or a comma-separated list
// of URLs), such as a configuration field: its user information, which
// may hold white space and quotes, runs to the last '@' before the next
// URL.
func URL(raw string) string {
	return String(userinfo(raw, valueToken))
}

// checkPort checks that p is a port number, 1..65535.
func checkPort(p string) error {
	if p == "" || strings.Trim(p, "0123456789") != "" {
		return fmt.Errorf("port %q is not a number", p)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %s is not in 1..65535", p)
	}
	return nil
}

// urlCuts are the bytes at which a URL parser (or a library splitting a
// text) may cut a password written without percent encoding.
const urlCuts = "/?#@ '\""

// RegisterURLPasswords registers as secrets (see Register) the password of
// every URL in the value s (of a field or a variable: the user information
// runs to the last '@' before the next URL, white space included) (scheme://user:PASSWORD@host, or the whole user
// information when it has no password), its percent-decoded form, and its
// beginnings up to each byte at which a URL parser cuts it (/ ? # @ space
// and quotes), so that a library error quoting a URL cut short
// (parse "amqp://bob:Hunter": invalid port ":Hunter") is masked too when
// those beginnings are at least MinSecretLen long.
func RegisterURLPasswords(s string) {
	var vals []string
	for info := range userinfos(s) {
		pass := info
		if _, p, hasPass := strings.Cut(info, ":"); hasPass {
			pass = p
		}
		vals = append(vals, pass)
		if dec, err := url.PathUnescape(pass); err == nil && dec != pass {
			vals = append(vals, dec)
		}
		for k := 0; k < len(pass); k++ {
			if strings.IndexByte(urlCuts, pass[k]) >= 0 {
				vals = append(vals, pass[:k])
			}
		}
	}
	if len(vals) > 0 {
		Register(vals...)
	}
}

// userinfos yields the user information of every URL in s (scheme://INFO@
// host), read as RegisterURLPasswords reads it: to the last '@' before the
// next URL, white space included, whether url.Parse would accept the URL
// or not.
func userinfos(s string) iter.Seq[string] {
	return func(yield func(string) bool) {
		rest := s
		for {
			i := strings.Index(rest, "://")
			if i < 0 {
				return
			}
			rest = rest[i+3:]
			at := userinfoEnd(valueToken(rest))
			if at < 0 {
				continue
			}
			if !yield(rest[:at]) {
				return
			}
			rest = rest[at:]
		}
	}
}

// HasURLPassword reports whether s holds a URL with a password
// (scheme://user:PASSWORD@host), found as RegisterURLPasswords finds them:
// also in a URL url.Parse refuses (a password with '#' or '/' written
// without percent encoding).
func HasURLPassword(s string) bool {
	for info := range userinfos(s) {
		if strings.Contains(info, ":") {
			return true
		}
	}
	return false
}

// RegisterEnv registers as secrets the values of the variables of environ
// (NAME=value, as os.Environ) whose names name a secret (see SecretName),
// except the words true, false, yes, no, on and off (a flag such as
// USE_TOKEN=false is no secret, and masking every "false" would garble the
// logs) and $PWD and $OLDPWD (directories), and the URL passwords of every value (see RegisterURLPasswords):
// a library or a file source that prints the environment then prints
// no secret.
func RegisterEnv(environ []string) {
	var vals []string
	for _, kv := range environ {
		name, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			continue
		}
		// The shell's working directories hold "pwd" in their names and
		// no secret: masked, every path under them would be unreadable.
		if SecretName(name) && name != "PWD" && name != "OLDPWD" {
			switch strings.ToLower(v) {
			case "true", "false", "yes", "no", "on", "off":
			default:
				vals = append(vals, v)
			}
		}
		if strings.Contains(v, "://") {
			RegisterURLPasswords(v)
		}
	}
	Register(vals...)
}
