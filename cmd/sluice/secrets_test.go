package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	return port
}

// TestNoSecretInLogsOrErrors runs and validates pipelines whose URLs and
// variables hold test passwords through the paths that fail (connection
// retries against a closed port, configuration errors) and checks that no
// byte of output, log records and errors alike, nor of the log file under
// the data directory, holds a password.
func TestNoSecretInLogsOrErrors(t *testing.T) {
	port := closedPort(t)
	t.Setenv("SLUICE_TEST_TOKEN", "Env-Token-Pass-6")
	t.Setenv("SLUICE_TEST_BAD_URL", "nats://bob:Env#Pass16@127.0.0.1:4222")
	t.Setenv("SLUICE_TEST_MYKEY", "Sup3rS3cretK")
	t.Setenv("SLUICE_TEST_DB_PASS", "Env-Db-Pass-17")
	t.Setenv("SLUICE_TEST_URL", "nats://bob:Env-Url-Pass-7@127.0.0.1:"+port)
	src := "sources: {s: {type: sim, turbines: 2, rows: 3, resume: false}}\n"
	fwd := "forward: {drain_timeout: 300ms, retry_min: 20ms, retry_max: 50ms}"
	tests := []struct {
		name, cmd, yaml string
		code            int
	}{
		{"nats retries", "run", src + "sinks: {c: {type: nats, input: s, subject: t.x, connect_timeout: 200ms, url: \"nats://alice:Nats-Pass-1@127.0.0.1:" + port + "\", " + fwd + "}}\n", 0},
		{"nats url from a variable", "run", src + "sinks: {c: {type: nats, input: s, subject: t.x, connect_timeout: 200ms, url: \"${SLUICE_TEST_URL}\", " + fwd + "}}\n", 0},
		{"amqp bad url", "run", src + "sinks: {c: {type: amqp, input: s, queue: q, url: \"amqp://guest:Amqp-Pass-2@[::1\"}}\n", 1},
		{"nats bad port", "validate", src + "sinks: {c: {type: nats, input: s, subject: t.x, url: \"nats://u:Nats-Pass-3@127.0.0.1:xx\"}}\n", 1},
		{"http bad scheme", "validate", src + "sinks: {c: {type: http, input: s, url: \"gopher://u:Http-Pass-4@host/x?token=Query-Pass-5\"}}\n", 1},
		{"wrong type from a secret variable", "validate", "sources: {s: {type: sim, turbines: \"${SLUICE_TEST_TOKEN}\"}}\nsinks: {o: {type: stdout, input: s}}\n", 1},
		{"redis bad db", "run", src + "sinks: {c: {type: redis, input: s, stream: x, url: \"redis://:Redis-Pass-8@127.0.0.1:" + port + "/notadb\"}}\n", 1},
		{"amqp password with #", "run", src + "sinks: {c: {type: amqp, input: s, queue: q, url: 'amqp://bob:Hunter#22a@127.0.0.1:5672/'}}\n", 1},
		{"nats password with /", "validate", src + "sinks: {c: {type: nats, input: s, subject: t.x, url: 'nats://bob:Nats/Pass10@127.0.0.1:4222'}}\n", 1},
		{"redis password with ?", "validate", src + "sinks: {c: {type: redis, input: s, stream: x, url: 'redis://:Redis?Pass11@127.0.0.1:6379/0'}}\n", 1},
		{"http password with space", "validate", src + "sinks: {c: {type: http, input: s, url: 'https://bob:Http Pass12@h/x'}}\n", 1},
		{"amqp password with quote over tls", "validate", src + "sinks: {c: {type: amqp, input: s, queue: q, url: \"amqp://bob:pa'ss13x@127.0.0.1/\", tls: {enabled: true}}}\n", 1},
		{"url variable with #", "validate", src + "sinks: {c: {type: nats, input: s, subject: t.x, url: \"${SLUICE_TEST_BAD_URL}\"}}\n", 1},
		{"dsn password with spaces around =", "run", src + "sinks: {c: {type: postgres, input: s, table: t, dsn: 'host=127.0.0.1 user=bob password = Pg-Pass-14 sslmode=bogus'}}\n", 1},
		{"mqtt password with #", "validate", "sources: {m: {type: mqtt, urls: ['tcp://bob:Mqtt#Pass15@127.0.0.1:1883'], topics: [a/b], schema: {time: time, key: asset, fields: {p: float64}}}}\nsinks: {o: {type: stdout, input: m}}\n", 1},
		{"secret variable in a field that prints its value", "validate", src + "sinks: {c: {type: nats, input: s, subject: t.x, encoding: \"${SLUICE_TEST_MYKEY}\"}}\n", 1},
		{"secret variable not referenced", "validate", src + "sinks: {c: {type: nats, input: s, subject: t.x, encoding: Env-Db-Pass-17}}\n", 1},
		{"postgres dsn", "run", src + "sinks: {c: {type: postgres, input: s, table: t, dsn: \"host=127.0.0.1 port=" + port + " user=u password=Pg-Pass-9 dbname=x connect_timeout=x\"}}\n", 1},
	}
	secrets := []string{"Hunter", "22a@", "Nats/Pass10", "Pass10", "Redis?Pass11", "Http Pass12", "Pass12", "pa'ss13x", "ss13x", "Env#Pass16", "Pg-Pass-14", "Mqtt#Pass15", "Pass15", "Sup3rS3cretK", "Env-Db-Pass-17", "Nats-Pass-1", "Amqp-Pass-2", "Nats-Pass-3", "Http-Pass-4", "Query-Pass-5", "Env-Token-Pass-6", "Env-Url-Pass-7", "Redis-Pass-8", "Pg-Pass-9"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "p.yaml")
			if err := os.WriteFile(file, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{tt.cmd, "--log-level", "debug", file}
			if tt.cmd == "run" {
				args = append(args, "--data-dir", filepath.Join(dir, "data"), "--progress", "never")
			}
			code, stdout, stderr := run(t, args...)
			out := stdout + stderr
			// The log file under the data directory gets the records
			// too, and must not hold a secret either.
			logged := ""
			if tt.cmd == "run" {
				logged = readLogFiles(t, filepath.Join(dir, "data"))
				if tt.code == 0 && !strings.Contains(logged, "xxxxx") {
					t.Errorf("the log file masks nothing (did the failing path run?):\n%s", logged)
				}
				for _, s := range secrets {
					if strings.Contains(logged, s) {
						t.Errorf("the log file holds the secret %q:\n%s", s, logged)
					}
				}
			}
			if code != tt.code {
				t.Errorf("exit %d, want %d:\n%s", code, tt.code, out)
			}
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("output holds the secret %q:\n%s", s, out)
				}
			}
			if !strings.Contains(out, "xxxxx") {
				t.Errorf("output masks nothing (did the failing path run?):\n%s", out)
			}
		})
	}
}
