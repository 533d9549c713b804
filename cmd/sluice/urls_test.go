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
		{"amqp bad host", `{type: amqp, input: s, queue: q, url: "amqp://guest:guest@[::1"}`, "3:44: parse \"amqp://guest:xxxxx@[::1\": missing ']' in host"},
		{"nats bad port", `{type: nats, input: s, subject: a.b, url: "nats://127.0.0.1:xx"}`, `3:48: server URL nats://127.0.0.1:xx: invalid port`},
		{"nats bad scheme", `{type: nats, input: s, subject: a.b, url: "http://127.0.0.1:4222"}`, `3:48: server URL http://127.0.0.1:4222: scheme "http"`},
		{"http gopher", `{type: http, input: s, url: "gopher://host/x"}`, `3:34: url gopher://host/x must be an absolute http or https URL`},
		{"redis bad db", `{type: redis, input: s, stream: x, url: "redis://127.0.0.1:6379/notadb"}`, `3:46: url redis://127.0.0.1:6379/notadb: redis: invalid database number`},
		{"postgres bad dsn", `{type: postgres, input: s, table: t, dsn: "host=h connect_timeout=x"}`, `3:48: cannot parse ` + "`host=h connect_timeout=x`" + `: invalid connect_timeout`},
		{"kafka bad broker", `{type: kafka, input: s, topic: t, brokers: ["hostonly"]}`, `3:49: broker "hostonly" is not host:port`},
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
