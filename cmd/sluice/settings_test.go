package main

import (
	"io"
	"net"
	"net/http"
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
