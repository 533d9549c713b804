package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/bundle/bundletest"
)

func TestBundleCommands(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "release")
	code, stdout, stderr := run(t, "bundle", "keygen", "--out", prefix)
	if code != 0 || !strings.Contains(stdout, "key id ") {
		t.Fatalf("keygen: exit %d\n%s%s", code, stdout, stderr)
	}
	if st, err := os.Stat(prefix + ".key"); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", st, err)
	}
	if code, _, _ := run(t, "bundle", "keygen", "--out", prefix); code != exitFailed {
		t.Errorf("keygen over existing keys: exit %d, want %d", code, exitFailed)
	}

	src := bundletest.WriteTree(t, filepath.Join(dir, "src"), map[string]string{
		"pipelines/turbines.yaml": "sources:\n  s: {type: sim}\n",
		"ml/model.onnx":           "weights",
		"config/edge.json":        "{}",
	})
	out := filepath.Join(dir, "windfarm-v2.bundle")
	code, stdout, stderr = run(t, "bundle", "build", src, "--name", "windfarm", "--version", "2", "--parent", "1", "--key", prefix+".key", "--out", out)
	if code != 0 || !strings.Contains(stdout, "built windfarm v2 (parent v1)") {
		t.Fatalf("build: exit %d\n%s%s", code, stdout, stderr)
	}

	code, stdout, stderr = run(t, "bundle", "verify", out, "--trust", prefix+".pub")
	if code != 0 || !strings.Contains(stdout, "ok: windfarm v2") || !strings.Contains(stdout, "pipelines/turbines.yaml") {
		t.Fatalf("verify: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = run(t, "bundle", "verify", out, "--trust", dir) // a directory holding release.pub
	if code != 0 {
		t.Fatalf("verify with a trust directory: exit %d\n%s%s", code, stdout, stderr)
	}

	code, stdout, stderr = run(t, "bundle", "inspect", out, "--trust", prefix+".pub")
	if code != 0 || !strings.Contains(stdout, `"name": "windfarm"`) || !strings.Contains(stdout, "signature: valid") || !strings.Contains(stdout, "contents: 3 files match") {
		t.Fatalf("inspect: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = run(t, "bundle", "inspect", out)
	if code != 0 || !strings.Contains(stdout, "signature: untrusted key") {
		t.Fatalf("inspect without trust: exit %d\n%s", code, stdout)
	}

	// Another key is not trusted.
	otherPrefix := filepath.Join(t.TempDir(), "other")
	run(t, "bundle", "keygen", "--out", otherPrefix)
	code, _, stderr = run(t, "bundle", "verify", out, "--trust", otherPrefix+".pub")
	if code != exitFailed || !strings.Contains(stderr, "rejected") || !strings.Contains(stderr, "untrusted key") {
		t.Errorf("verify with another key: exit %d\n%s", code, stderr)
	}

	// A tampered file fails with exit 1: flip a byte in the middle.
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	bad := filepath.Join(dir, "tampered.bundle")
	if err := os.WriteFile(bad, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, "bundle", "verify", bad, "--trust", prefix+".pub")
	if code != exitFailed || !strings.Contains(stderr, "rejected") {
		t.Errorf("verify tampered: exit %d\n%s", code, stderr)
	}
	if code, _, _ := run(t, "bundle", "inspect", bad); code != exitFailed {
		t.Errorf("inspect tampered: exit %d, want %d", code, exitFailed)
	}

	// Build refuses what the format refuses.
	if err := os.WriteFile(filepath.Join(src, "pipelines", "broken.yaml"), []byte("a: [1"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, "bundle", "build", src, "--name", "windfarm", "--version", "3", "--key", prefix+".key", "--out", filepath.Join(dir, "v3.bundle"))
	if code != exitFailed || !strings.Contains(stderr, "pipelines/broken.yaml") {
		t.Errorf("build with broken YAML: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "v3.bundle.tmp")); err == nil {
		t.Error("a failed build left its temporary file")
	}

	// A group-readable private key is refused.
	os.Chmod(prefix+".key", 0o644)
	code, _, stderr = run(t, "bundle", "build", src, "--name", "w", "--version", "4", "--key", prefix+".key", "--out", filepath.Join(dir, "v4.bundle"))
	if code != exitFailed || !strings.Contains(stderr, "chmod 600") {
		t.Errorf("build with a readable key: exit %d\n%s", code, stderr)
	}

	// Bad command lines.
	for _, args := range [][]string{
		{"bundle", "keygen"},
		{"bundle", "build", src, "--version", "2", "--key", prefix + ".key", "--out", out},
		{"bundle", "build", src, "--name", "w", "--key", prefix + ".key", "--out", out},
		{"bundle", "build", src, "--name", "Bad Name", "--version", "2", "--key", prefix + ".key", "--out", out},
		{"bundle", "build", src, "--name", "w", "--version", "2", "--parent", "2", "--key", prefix + ".key", "--out", out},
		{"bundle", "verify", out},
		{"bundle", "verify"},
		{"bundle", "inspect"},
		{"bundle", "build", src, "--name", "w", "--version", "x"},
	} {
		if code, _, stderr := run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, exitUsage, stderr)
		}
	}
}
