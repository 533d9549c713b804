package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	c, errs := ParseConfig("/etc/sluice/sluice.yaml", []byte(`
edge: edge-01
trust: keys/release.pub
labels: {site: north}
api: {listen: ":7469"}
pipelines: [pipelines/, /abs/p.yaml]
`))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if c.Edge != "edge-01" || c.Trust != "/etc/sluice/keys/release.pub" || c.DataDir != "/etc/sluice/sluice-data" ||
		c.Listen != "127.0.0.1:7469" || c.TokenFile != "/etc/sluice/sluice-data/agent/api.token" ||
		c.Labels["site"] != "north" || len(c.Pipelines) != 2 || c.Pipelines[0] != "/etc/sluice/pipelines" ||
		c.MaxBundleBytes != DefaultMaxBundleBytes || c.KeepReleases != DefaultKeepReleases {
		t.Errorf("%+v", c)
	}

	for _, bad := range []struct{ yaml, want string }{
		{"trust: k\nedg: e\n", `x.yaml:2:1: unknown field "edg"`},
		{"edge: e\n", `"trust"`},
		{"trust: k\nkeep_releases: 0\n", "x.yaml:2:16: keep_releases must be from 1 to 1000"},
		{"trust: k\napi: {listen: nonsense}\n", "is not host:port"},
		{"trust: k\nmax_bundle_bytes: 10\n", "at least 1024"},
		{"", "file is empty"},
		{"- a\n", "expected a mapping"},
		{"trust: k\n---\ntrust: j\n", "one YAML document"},
	} {
		_, errs := ParseConfig("x.yaml", []byte(bad.yaml))
		if len(errs) == 0 || !strings.Contains(errs.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.yaml, errs, bad.want)
		}
	}
}

func TestEnsureToken(t *testing.T) {
	name := filepath.Join(t.TempDir(), "agent", TokenFile)
	tok, err := EnsureToken(name)
	if err != nil || len(tok) != 64 {
		t.Fatalf("%q %v", tok, err)
	}
	st, err := os.Stat(name)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%v %v", st, err)
	}
	if again, err := EnsureToken(name); err != nil || again != tok {
		t.Errorf("second call: %q %v", again, err)
	}
	os.Chmod(name, 0o644)
	if _, err := ReadToken(name); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("readable token: %v", err)
	}
}
