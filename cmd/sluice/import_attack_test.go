package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/agent"
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

// Imports that arrive while another switches are applied one after the
// other, and status answers all along.
func TestImportDuringSwitch(t *testing.T) {
	e := newEdgeSetup(t)
	e.start(t)
	if code, stdout, stderr := run(t, "import", e.bundle(t, 1, simPipeline("turbines")), "--config", e.config); code != 0 {
		t.Fatalf("import v1: exit %d\n%s%s", code, stdout, stderr)
	}
	v2, v3 := e.bundle(t, 2, simPipelineRate("turbines", 60)), e.bundle(t, 3, simPipelineRate("turbines", 70))
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 2)
	for _, b := range []string{v2, v3} {
		go func() {
			code, _, stderr := run(t, "import", b, "--config", e.config)
			done <- result{code, stderr}
		}()
	}
	var results []result
	for len(results) < 2 {
		select {
		case r := <-done:
			results = append(results, r)
		default:
			code, out, stderr := run(t, "status", "--config", e.config, "--json")
			if code != 0 || !strings.Contains(out, `"engine": true`) {
				t.Fatalf("status during the switches: exit %d\n%s%s", code, out, stderr)
			}
		}
	}
	rs, err := agent.ReadReports(filepath.Join(e.data, "agent"), agent.DefaultMaxReportBytes)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.Outcome+fmt.Sprint(r.Version))
	}
	if g := strings.Join(got, " "); g != "applied1 applied2 applied3" && g != "applied1 applied3 rejected2" {
		t.Errorf("reports %s; imports %+v", g, results)
	}
	if st := e.status(t); st.Current == nil || st.Current.Version != 3 || len(st.Pipelines) != 1 || st.Pipelines[0].State != "running" {
		t.Fatalf("status: %+v", st)
	}
}
