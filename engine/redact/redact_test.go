package redact_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/redact"
)

func TestString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"nats://user:S3cret@hub:4222", "nats://user:xxxxx@hub:4222"},
		{"not connected to nats://u:p1@h1:4222,nats://u2:p2@h2:4222 (status)", "not connected to nats://u:xxxxx@h1:4222,nats://u2:xxxxx@h2:4222 (status)"},
		{"dial tcp://user:pa:ss@127.0.0.1:1/x", "dial tcp://user:xxxxx@127.0.0.1:1/x"},
		{`"amqp://guest:p@ss@[::1"`, `"amqp://guest:xxxxx@[::1"`},
		{"redis://:hunter2@cache:6379/0", "redis://:xxxxx@cache:6379/0"},
		{"nats://tok3n@hub:4222", "nats://xxxxx@hub:4222"},
		{"https://host/path?email=a@b.c", "https://host/path?email=a@b.c"},
		{"https://host:443/x?token=abc&x=1", "https://host:443/x?token=xxxxx&x=1"},
		{"https://host/x?a=1&Password=abc", "https://host/x?a=1&Password=xxxxx"},
		{"host=db user=app password=s3cr3t dbname=test", "host=db user=app password=xxxxx dbname=test"},
		{"host=db password='a b c' sslmode=disable", "host=db password=xxxxx sslmode=disable"},
		{"postgres://app:pw@db/test?sslmode=disable", "postgres://app:xxxxx@db/test?sslmode=disable"},
		{"nothing to hide: a=b, http://host:80/x", "nothing to hide: a=b, http://host:80/x"},
		{"password=", "password="},
		{"", ""},
	} {
		if got := redact.String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRegister(t *testing.T) {
	redact.Register("Zq9-registered-secret", "ab")
	for _, c := range []struct{ in, want string }{
		{"wrong type: Zq9-registered-secret is not an int", "wrong type: xxxxx is not an int"},
		{"ab stays", "ab stays"}, // too short to be masked everywhere
	} {
		if got := redact.String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"MQTT_PASSWORD": true, "password": true, "API_TOKEN": true, "client_secret": true, "API_KEY": true,
		"DB_PWD": true, "APIKEY": true, "private_key": true, "key_file": false, "key_from": false, "max_key_bytes": false, "key_field": false, "routing_key": false, "HOST": false, "user": false, "key": false,
		"product_key": false, "device_key": false, "PRODUCT_KEY": false, "asset_key": false, "MY_KEY": true, "signing_key": true,
		"MYKEY": true, "SECRETKEY": true, "ACCESSKEY": true, "max_keys": false, "monkeys": false, "keyboard": false,
	} {
		if got := redact.SecretName(name); got != want {
			t.Errorf("SecretName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestError(t *testing.T) {
	base := fs.ErrNotExist
	err := redact.Error(fmt.Errorf("dial nats://u:topsecret@h: %w", base))
	if strings.Contains(err.Error(), "topsecret") || !errors.Is(err, base) {
		t.Fatalf("Error: %q (is ErrNotExist: %v)", err, errors.Is(err, base))
	}
	if redact.Error(nil) != nil {
		t.Fatal("Error(nil) is not nil")
	}
	plain := errors.New("plain")
	if redact.Error(plain) != plain {
		t.Fatal("an error without secrets is not returned as is")
	}
}

type stringer struct{}

func (stringer) String() string { return "tcp://u:stringer-pass@h:1" }

func TestHandler(t *testing.T) {
	for _, newH := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		log := slog.New(redact.NewHandler(newH(&buf)))
		log = log.With("url", "nats://u:with-pass@h:4222").WithGroup("g")
		log.Warn("retrying nats://u:msg-pass@h:4222",
			"err", errors.New("dial tcp://u:err-pass@h:1: refused"),
			"s", stringer{},
			slog.Group("inner", "dsn", "host=h password=group-pass"),
			"n", 42)
		out := buf.String()
		for _, secret := range []string{"with-pass", "msg-pass", "err-pass", "stringer-pass", "group-pass"} {
			if strings.Contains(out, secret) {
				t.Errorf("log output holds %q:\n%s", secret, out)
			}
		}
		if !strings.Contains(out, "42") || !strings.Contains(out, "xxxxx") {
			t.Errorf("log output lost its attributes:\n%s", out)
		}
	}
}

func BenchmarkString(b *testing.B) {
	redact.Register("bench-registered-secret")
	for _, c := range []struct{ name, in string }{
		{"plain", "forward: publish failed, retrying in 1.6s (attempt 4)"},
		{"url", "nats: not connected to nats://user:pass@hub-1:4222 (status RECONNECTING): nats: timeout"},
		{"unencoded", `connect to "amqp://bob:Hunter#22@mq.example.com:5672/telemetry" failed: connection refused`},
		{"dsn", "host=db user=app password = s3cr3t dbname=test sslmode=disable"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = redact.String(c.in)
			}
		})
	}
}

func BenchmarkHandler(b *testing.B) {
	var buf bytes.Buffer
	log := slog.New(redact.NewHandler(slog.NewTextHandler(&buf, nil)))
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		log.Warn("publish failed", "sink", "cloud", "err", errors.New("nats: not connected to nats://u:p@h:4222"), "attempt", 3)
	}
}

// TestStringUnencodedPasswords: a password holding a character a URL must
// percent-encode (/ ? # ' space ...) is masked up to the last '@' of the
// URL, and "name = value" parameters are masked too.
func TestStringUnencodedPasswords(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"amqp://bob:Hunter#22@h:5672/", "amqp://bob:xxxxx@h:5672/"},
		{"url amqp://bob:pa'ss99@h/ in plaintext", "url amqp://bob:xxxxx@h/ in plaintext"},
		{`url "nats://bob:a/b?c@h:4222": x`, `url "nats://bob:xxxxx@h:4222": x`},
		{"redis://:p/w@cache:6379/0", "redis://:xxxxx@cache:6379/0"},
		{"http://host:8080/x?email=a@b.c", "http://host:8080/x?email=a@b.c"},
		{"http://[::1]:8080/x?email=a@b.c", "http://[::1]:8080/x?email=a@b.c"},
		{"https://host/p?t=a:b@c", "https://host/p?t=a:b@c"},
		{"tcp://u:p@ss@h:1,nats://u2:q#2@h2:2 x", "tcp://u:xxxxx@h:1,nats://u2:xxxxx@h2:2 x"},
		{"host=h user=bob password = Hunter22x sslmode=bogus", "host=h user=bob password = xxxxx sslmode=bogus"},
		{"host=h password= 'a b' x=1", "host=h password= xxxxx x=1"},
		{"token =abc&x=1", "token =xxxxx&x=1"},
	} {
		if got := redact.String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestParseURL: a URL that does not parse is reported without url.Parse's
// text (which quotes the URL cut short, password fragments included), and
// a port must be a number in 1..65535.
func TestParseURL(t *testing.T) {
	for _, c := range []struct{ in, want, secret string }{
		{"amqp://bob:Hunter#22@h:5672/", `url "amqp://bob:xxxxx@h:5672/": cannot be parsed; a password holding / ? # @ or spaces must be percent-encoded`, "Hunter"},
		{"nats://bob:Hun ter@h:4222", `url "nats://bob:xxxxx@h:4222": cannot be parsed`, "Hun"},
		{"http://h:xx/", `url "http://h:xx/": invalid port ":xx" after host`, ""},
		{"http://u:Pw-5678@h:/", `url "http://u:xxxxx@h:/": empty port`, "Pw-5678"},
		{"http://h:99999/", `url "http://h:99999/": port 99999 is not in 1..65535`, ""},
		{"http://u:Pw-1234@h:0/", `url "http://u:xxxxx@h:0/": port 0 is not in 1..65535`, "Pw-1234"},
		{"amqp://u:p@[::1", `url "amqp://u:xxxxx@[::1": cannot be parsed`, ""},
	} {
		_, err := redact.ParseURL(c.in)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || c.secret != "" && strings.Contains(err.Error(), c.secret) {
			t.Errorf("ParseURL(%q): %v, want %q", c.in, err, c.want)
		}
	}
	for _, ok := range []string{"http://h:65535/", "amqp://u:p%23w@h/", "nats://h", "redis://:pw@h:1/0"} {
		if _, err := redact.ParseURL(ok); err != nil {
			t.Errorf("ParseURL(%q): %v", ok, err)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"h:9092", ""}, {"[::1]:65535", ""}, {"h:99999", `port 99999 is not in 1..65535`},
		{"h:0", "port 0"}, {"h:x", `port "x" is not a number`}, {"h", "is not host:port"}, {":9092", "has no host"},
	} {
		err := redact.CheckHostPort(c.in)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckHostPort(%q): %v, want %q", c.in, err, c.want)
		}
	}
}

// TestRegisterURLPasswords: the password of a URL in a value is
// registered whole and cut where a URL parser cuts it.
func TestRegisterURLPasswords(t *testing.T) {
	redact.RegisterURLPasswords("amqp://bob:Zr7Hunter#22/x@h:5672/")
	for _, c := range []struct{ in, want string }{
		{`parse "amqp://bob:Zr7Hunter": invalid port ":Zr7Hunter"`, `parse "amqp://bob:xxxxx": invalid port ":xxxxx"`},
		{"a Zr7Hunter#22/x b", "a xxxxx b"},
	} {
		if got := redact.String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestRegisterEnv: the values of secret-named variables are registered;
// others and boolean words are not.
func TestRegisterEnv(t *testing.T) {
	redact.RegisterEnv([]string{"DB_PASS=Qx-env-pass", "MYKEY=Sup3rS3cretK", "HOME=/home/qxuser", "USE_TOKEN=false", "NATS_URL=nats://u:Qx-url-pw@h:4222", "BAD"})
	for _, c := range []struct{ in, want string }{
		{"Qx-env-pass Sup3rS3cretK Qx-url-pw", "xxxxx xxxxx xxxxx"},
		{"/home/qxuser false", "/home/qxuser false"},
	} {
		if got := redact.String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
