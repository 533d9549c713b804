package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What an operator gives `sluice import` is handled alike whether the
// engine runs or not: a symbolic link to a bundle is the bundle; a named
// pipe, a directory or a missing file fail at once, with the reason.
func TestImportOddFiles(t *testing.T) {
	e := newEdgeSetup(t)
	fifo := filepath.Join(e.dir, "pipe.bundle")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	odd := []struct {
		name, path, want string
	}{
		{"named pipe", fifo, "not a regular file"},
		{"directory", e.dir, "not a regular file"},
		{"missing", filepath.Join(e.dir, "nothing.bundle"), "no such file"},
	}
	check := func(t *testing.T) {
		for _, tc := range odd {
			start := time.Now()
			code, _, stderr := run(t, "import", tc.path, "--config", e.config)
			if code != exitFailed || !strings.Contains(stderr, tc.want) || time.Since(start) > 10*time.Second {
				t.Errorf("%s: exit %d after %v\n%s", tc.name, code, time.Since(start), stderr)
			}
		}
	}
	link := func(v int) string {
		l := filepath.Join(e.dir, "link-"+string(rune('0'+v))+".bundle")
		if err := os.Symlink(e.bundle(t, v, simPipeline("turbines")), l); err != nil {
			t.Fatal(err)
		}
		return l
	}

	// No engine runs: the bundle is staged.
	check(t)
	if code, stdout, stderr := run(t, "import", link(1), "--config", e.config); code != 0 || !strings.Contains(stdout, "staged w v1") {
		t.Fatalf("offline import of a link: exit %d\n%s%s", code, stdout, stderr)
	}
	// The engine runs: the bundle is applied.
	e.start(t)
	check(t)
	if code, stdout, stderr := run(t, "import", link(2), "--config", e.config); code != 0 || !strings.Contains(stdout, "applied w v2") {
		t.Fatalf("import of a link: exit %d\n%s%s", code, stdout, stderr)
	}
}
