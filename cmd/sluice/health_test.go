package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentRaisesHealthAlerts: an edge whose configuration sets the health
// thresholds raises link_down for a cloud sink whose broker is
// unreachable, and logs it (stderr and the log file).
func TestAgentRaisesHealthAlerts(t *testing.T) {
	e := newEdgeSetup(t)
	port := closedPort(t)
	p := filepath.Join(e.dir, "p.yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(`
sources: {s: {type: sim, turbines: 2, rate: 50, rows: 0, resume: false}}
sinks:
  cloud: {type: nats, input: s, subject: health.x, connect_timeout: 200ms, url: "nats://127.0.0.1:%s", forward: {retry_min: 20ms, retry_max: 100ms}}
`, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(e.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "pipelines: [p.yaml]\nhealth: {interval: 100ms, link_down_after: 300ms, backlog_for: 1h}\n")
	f.Close()
	stop := e.start(t)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(e.log.String(), `"msg":"health alert raised","rule":"link_down"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no link_down health alert\n%s", e.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, stderr := stop(); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, stderr)
	}
	if logged := readLogFiles(t, e.data); !strings.Contains(logged, `"rule":"link_down"`) {
		t.Errorf("the log file lacks the health alert:\n%s", logged)
	}
}
