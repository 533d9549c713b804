package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateParsesURLsAsRunDoes: a sink URL or TLS setting that run would
// refuse (or silently ignore) is an error of validate too, located at the
// field, and run refuses it the same way.
func TestValidateParsesURLsAsRunDoes(t *testing.T) {
	src := "sources: {s: {type: sim, turbines: 1, rows: 1, resume: false}}\nsinks:\n  c: "
	tests := []struct{ name, sink, want string }{
		{"amqp bad host", `{type: amqp, input: s, queue: q, url: "amqp://guest:Gp-9x@[::1"}`, `3:44: url "amqp://guest:xxxxx@[::1": cannot be parsed; a password holding / ? # @ or spaces must be percent-encoded`},
		{"nats bad port", `{type: nats, input: s, subject: a.b, url: "nats://127.0.0.1:xx"}`, `3:48: url "nats://127.0.0.1:xx": invalid port`},
		{"nats bad scheme", `{type: nats, input: s, subject: a.b, url: "http://127.0.0.1:4222"}`, `3:48: server URL http://127.0.0.1:4222: scheme "http"`},
		{"http gopher", `{type: http, input: s, url: "gopher://host/x"}`, `3:34: url gopher://host/x must be an absolute http or https URL`},
		{"redis bad db", `{type: redis, input: s, stream: x, url: "redis://127.0.0.1:6379/notadb"}`, `3:46: url redis://127.0.0.1:6379/notadb: redis: invalid database number`},
		{"postgres bad dsn", `{type: postgres, input: s, table: t, dsn: "host=h connect_timeout=x"}`, `3:48: cannot parse ` + "`host=h connect_timeout=x`" + `: invalid connect_timeout`},
		{"kafka bad broker", `{type: kafka, input: s, topic: t, brokers: ["hostonly"]}`, `3:49: broker "hostonly" is not host:port`},
		{"http port too big", `{type: http, input: s, url: "https://h:99999/x"}`, `3:34: url "https://h:99999/x": port 99999 is not in 1..65535`},
		{"nats port too big", `{type: nats, input: s, subject: a.b, url: "nats://u:p@127.0.0.1:99999"}`, `3:48: url "nats://u:xxxxx@127.0.0.1:99999": port 99999 is not in 1..65535`},
		{"amqp port too big", `{type: amqp, input: s, queue: q, url: "amqp://guest:Gp-9x@127.0.0.1:99999/"}`, `3:44: url "amqp://guest:xxxxx@127.0.0.1:99999/": port 99999 is not in 1..65535`},
		{"amqp port zero", `{type: amqp, input: s, queue: q, url: "amqp://127.0.0.1:0/"}`, `3:44: url "amqp://127.0.0.1:0/": port 0 is not in 1..65535`},
		{"redis port too big", `{type: redis, input: s, stream: x, url: "redis://127.0.0.1:99999/0"}`, `3:46: url "redis://127.0.0.1:99999/0": port 99999 is not in 1..65535`},
		{"kafka port too big", `{type: kafka, input: s, topic: t, brokers: ["127.0.0.1:99999"]}`, `3:49: broker "127.0.0.1:99999": port 99999 is not in 1..65535`},
		{"postgres port too big", `{type: postgres, input: s, table: t, dsn: "postgres://u@127.0.0.1:99999/x"}`, `3:48: url "postgres://xxxxx@127.0.0.1:99999/x": port 99999 is not in 1..65535`},
		{"amqp tls over amqp://", `{type: amqp, input: s, queue: q, tls: {enabled: true}}`, `3:44: tls.enabled needs an amqps:// URL`},
		{"http tls over http://", `{type: http, input: s, url: "http://h/x", tls: {enabled: true}}`, `3:53: tls.enabled needs an https:// URL`},
		{"http ca_file without enabled", `{type: http, input: s, url: "https://h/x", tls: {ca_file: ca.pem}}`, `3:64: tls.ca_file is ignored without tls.enabled: true`},
		{"nats insecure without enabled", `{type: nats, input: s, subject: a.b, tls: {insecure_skip_verify: true}}`, `3:71: tls.insecure_skip_verify is ignored`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "p.yaml")
			if err := os.WriteFile(file, []byte(src+tt.sink+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"validate", file},
				{"run", file, "--data-dir", filepath.Join(dir, "data"), "--progress", "never"},
			} {
				code, _, stderr := run(t, args...)
				if code != exitFailed || !strings.Contains(stderr, file+":"+tt.want) {
					t.Errorf("%s: exit %d, want %d and %q in:\n%s", args[0], code, exitFailed, tt.want, stderr)
				}
			}
		})
	}
}
