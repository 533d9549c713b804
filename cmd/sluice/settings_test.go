package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReleaseSetsLogLevel imports a release whose settings lower the log
// level to error: the engine's debug lines stop at once, without a
// restart, and a release without the setting brings the command line's
// level back.
func TestReleaseSetsLogLevel(t *testing.T) {
	e := newEdgeSetup(t)
	stop := e.start(t) // --log-level debug
	files := simPipeline("turbines")
	files["config/settings.yaml"] = "log_level: error\n"
	if code, out, stderr := run(t, "import", e.bundle(t, 1, files), "--config", e.config); code != 0 {
		t.Fatalf("import: %d %s%s", code, out, stderr)
	}
	if !strings.Contains(e.log.String(), `"msg":"log level set by the release","level":"ERROR"`) {
		t.Fatalf("no level change logged:\n%s", e.log.String())
	}
	mark := len(e.log.String())
	// A second import, rejected, logs at debug and info only.
	run(t, "import", e.bundle(t, 1, files), "--config", e.config)
	if tail := e.log.String()[mark:]; strings.Contains(tail, `"level":"DEBUG"`) || strings.Contains(tail, `"level":"INFO"`) {
		t.Fatalf("debug or info lines at level error:\n%s", tail)
	}
	if code, out, stderr := run(t, "import", e.bundle(t, 2, simPipeline("turbines")), "--config", e.config); code != 0 {
		t.Fatalf("import v2: %d %s%s", code, out, stderr)
	}
	if !strings.Contains(e.log.String()[mark:], `"msg":"log level set by the release","level":"DEBUG"`) {
		t.Fatalf("the command line's level did not come back:\n%s", e.log.String()[mark:])
	}
	if code, stderr := stop(); code != 0 {
		t.Fatal(stderr)
	}
}

// TestAgentMetricsFollowSwitches scrapes an edge agent's metrics endpoint
// before and after a release adds a pipeline: the new pipeline's counters
// appear without a restart.
func TestAgentMetricsFollowSwitches(t *testing.T) {
	e := newEdgeSetup(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	stop := e.start(t, "--metrics-addr", addr)
	scrape := func() string {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	if code, out, stderr := run(t, "import", e.bundle(t, 1, simPipeline("turbines")), "--config", e.config); code != 0 {
		t.Fatalf("import: %d %s%s", code, out, stderr)
	}
	if m := scrape(); !strings.Contains(m, `pipeline="turbines"`) || strings.Contains(m, `pipeline="pumps"`) {
		t.Fatalf("metrics of v1:\n%s", m)
	}
	files := simPipeline("turbines")
	for k, v := range simPipeline("pumps") {
		files[k] = v
	}
	if code, out, stderr := run(t, "import", e.bundle(t, 2, files), "--config", e.config); code != 0 {
		t.Fatalf("import v2: %d %s%s", code, out, stderr)
	}
	if m := scrape(); !strings.Contains(m, `pipeline="pumps"`) {
		t.Fatalf("metrics of v2 lack the added pipeline:\n%s", m)
	}
	if code, stderr := stop(); code != 0 {
		t.Fatal(stderr)
	}
}

// TestValidateRelease checks a release directory as an edge would: a rule
// set's error is named relative to the release, and a valid release passes.
func TestValidateRelease(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pipelines/p.yaml", `sources:
  s: {type: sim, turbines: 2, rows: 10}
steps:
  a: {type: alert, input: s, include: [hot]}
sinks:
  o: {type: discard, input: a}
`)
	write("rules/hot.yaml", "rules:\n  - {name: hot, expr: nosuch > 1}\n")
	code, _, stderr := run(t, "validate", dir)
	if code != exitFailed || !strings.Contains(stderr, "rules/hot.yaml:2:") {
		t.Fatalf("a release with a bad rule set: exit %d\n%s", code, stderr)
	}
	write("rules/hot.yaml", "rules:\n  - {name: hot, expr: power > 1}\n")
	if code, stdout, stderr := run(t, "validate", dir); code != 0 || !strings.Contains(stdout, "release with 1 pipeline(s) valid") {
		t.Fatalf("a valid release: exit %d\n%s%s", code, stdout, stderr)
	}
}
