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
