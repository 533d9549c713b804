package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCreds is a credentials file as nsc writes it (generated for tests;
// it grants nothing).
const testCreds = `-----BEGIN NATS USER JWT-----
eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVREczNUNVSFhWV1RWRUhFSjZHM0JGWFpLREZPRUZHTk5QN1FMSUZCM0NBSDNEMjU2WTdFRUFFQiJ9.c2ln
------END NATS USER JWT------

-----BEGIN USER NKEY SEED-----
SUAOFRLCSQWWNEE7OIPSKRGRQUEI5DLJ3WYABFUOPOZ7FBEFRSOGYMQ2M4
------END USER NKEY SEED------
`

func TestParseHubConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "edge.creds"), []byte(testCreds), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.creds"), []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "sluice.yaml")

	c, errs := ParseConfig(name, []byte("edge: edge-01\ntrust: k\nhub: {url: \"nats://h1:4222, h2:4222\", credentials_file: edge.creds}\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	h := c.Hub
	if h == nil || h.URL != "nats://h1:4222, h2:4222" || h.Heartbeat != DefaultHeartbeat || h.CredentialsFile != filepath.Join(dir, "edge.creds") ||
		string(h.Credentials) != testCreds || h.ReportsMaxBytes != 64<<20 || h.HeartbeatMaxBytes != 1<<20 || h.TLS != nil {
		t.Errorf("%+v", h)
	}
	if c, errs := ParseConfig(name, []byte("edge: e\ntrust: k\n")); len(errs) > 0 || c.Hub != nil {
		t.Errorf("no hub section: %+v %v", c, errs)
	}
	c, errs = ParseConfig(name, []byte("edge: e\ntrust: k\nhub: {url: tls://h:4222, user: u, password: s3cr3t-pw, heartbeat: 5s, heartbeat_max_bytes: 128KiB, tls: {enabled: true, server_name: hub}}\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if h := c.Hub; h.User != "u" || h.Password != "s3cr3t-pw" || h.Heartbeat != 5*time.Second || h.HeartbeatMaxBytes != 128<<10 || h.TLS == nil || h.TLS.ServerName != "hub" {
		t.Errorf("%+v", h)
	}

	for _, bad := range []struct{ yaml, want string }{
		{"edge: edge.01\ntrust: k\nhub: {url: h:4222}\n", "x.yaml:1:7: an edge that talks to a hub needs an edge id"},
		{"edge: 'edge 01'\ntrust: k\nhub: {url: h:4222}\n", "edge id"},
		{"edge: e\ntrust: k\nhub: {}\n", `"url"`},
		{"edge: e\ntrust: k\nhub: {url: ''}\n", "no server URL"},
		{"edge: e\ntrust: k\nhub: {url: 'http://h:4222'}\n", `scheme "http"`},
		{"edge: e\ntrust: k\nhub: {url: 'nats://h:99999'}\n", "hub.url"},
		{"edge: e\ntrust: k\nhub: {url: 'nats://h:4222,'}\n", "empty server URL"},
		{"edge: e\ntrust: k\nhub: {url: h:4222, password: p}\n", "hub.password needs hub.user"},
		{"edge: e\ntrust: k\nhub: {url: h:4222, user: u, token: t}\n", "set one of user"},
		{"edge: e\ntrust: k\nhub: {url: h:4222, credentials_file: missing.creds}\n", "hub.credentials_file"},
		{"edge: e\ntrust: k\nhub: {url: h:4222, credentials_file: bad.creds}\n", "hub.credentials_file"},
		{"edge: e\ntrust: k\nhub: {url: h:4222, heartbeat: 10ms}\n", "hub.heartbeat must be from 100ms to 24h"},
		{"edge: e\ntrust: k\nhub: {url: h:4222, reports_max_bytes: 1KiB}\n", "hub.reports_max_bytes must be a size of at least"},
		{"edge: e\ntrust: k\nhub: {url: h:4222, heartbeat_max_bytes: 30%}\n", "hub.heartbeat_max_bytes must be a size"},
		{"edge: e\ntrust: k\nhub: {url: h:4222, heartbeat_max_bytes: lots}\n", "hub.heartbeat_max_bytes"},
		{"edge: e\ntrust: k\nhub: {url: h:4222, tls: {ca_file: ca.pem}}\n", "tls.ca_file is ignored without tls.enabled"},
		{"edge: e\ntrust: k\nhub: {url: h:4222, tls: {enabled: true, ca_file: missing.pem}}\n", "missing.pem"},
		{"edge: e\ntrust: k\nhub: {url: h:4222, topic: x}\n", `unknown field "topic"`},
	} {
		_, errs := ParseConfig(filepath.Join(dir, "x.yaml"), []byte(bad.yaml))
		if len(errs) == 0 || !strings.Contains(errs.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.yaml, errs, bad.want)
		}
	}
}

// TestHubSecretsNotInErrors checks that a password in a URL or in the
// password field does not reach a configuration error.
func TestHubSecretsNotInErrors(t *testing.T) {
	for _, y := range []string{
		"edge: e\ntrust: k\nhub: {url: 'ftp://bob:Pa55w0rd-url@h:4222'}\n",
		"edge: e\ntrust: k\nhub: {url: 'nats://bob:Pa55w0rd-url@h:99999'}\n",
		"edge: e\ntrust: k\nhub: {url: h:4222, password: Pa55w0rd-url}\n",
	} {
		_, errs := ParseConfig("x.yaml", []byte(y))
		if len(errs) == 0 {
			t.Fatalf("%q: no error", y)
		}
		if strings.Contains(errs.Error(), "Pa55w0rd") {
			t.Errorf("%q: the error shows the password: %v", y, errs)
		}
	}
}
