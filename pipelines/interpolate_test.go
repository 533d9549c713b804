package pipelines

import (
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine/redact"
)

// TestInterpolateRegistersURLPasswords: the password of a URL in any
// scalar, written out or interpolated from a variable whose name says
// nothing of a secret, is registered, with its beginnings up to where
// url.Parse cuts it, so that a library error quoting the URL cut short
// masks it.
func TestInterpolateRegistersURLPasswords(t *testing.T) {
	src := "sinks:\n  a: {url: 'amqp://bob:Zq8Hunter#22@h:5672/'}\n  b: {url: '${PLAIN_URL}'}\n"
	env := func(name string) (string, bool) {
		if name == "PLAIN_URL" {
			return "nats://u:Zq8Env/pw 1@h:4222", true
		}
		return "", false
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	if errs := Interpolate("p.yaml", &n, env); len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, c := range []struct{ in, want string }{
		{`parse "amqp://bob:Zq8Hunter": invalid port ":Zq8Hunter" after host`, `parse "amqp://bob:xxxxx": invalid port ":xxxxx" after host`},
		{"pw is Zq8Hunter#22", "pw is xxxxx"},
		{`parse "nats://u:Zq8Env": invalid port ":Zq8Env"`, `parse "nats://u:xxxxx": invalid port ":xxxxx"`},
		{"auth Zq8Env/pw 1 refused", "auth xxxxx refused"},
	} {
		if got := redact.String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
