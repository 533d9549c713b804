package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine/health"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
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
	e.appendConfig(t, "pipelines: [p.yaml]\nhealth: {interval: 100ms, link_down_after: 300ms, backlog_for: 1h}\n")
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

// streamText returns the data of every message of the JetStream stream
// name at url, concatenated ("" while it does not exist).
func streamText(t *testing.T, url, name string) string {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return ""
	}
	info, err := s.Info(ctx)
	if err != nil {
		return ""
	}
	var all strings.Builder
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		if m, err := s.GetMsg(ctx, seq); err == nil {
			all.Write(m.Data)
			all.WriteByte('\n')
		}
	}
	return all.String()
}

// waitLog waits until the edge's log holds want.
func waitLog(t *testing.T, e *edgeSetup, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(e.log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the log lacks %s\n%s", want, e.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentApplyFailedAlert: a bundle whose pipeline is broken is refused
// by the running agent: apply_failed is raised (asset: the edge) and goes
// through the release's alert sink to the broker; the next good bundle
// clears it, through the same sink.
func TestAgentApplyFailedAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an agent against the broker")
	}
	e := newEdgeSetup(t)
	e.appendConfig(t, "health: {interval: 100ms, clear_after: 100ms}\n")
	sfx := outboundtest.Suffix()
	stream := "HA" + sfx + "_ALERTS"
	alerts := map[string]string{"pipelines/alerts.yaml": fmt.Sprintf(`
sources: {s: {type: sim, turbines: 2, rate: 50, rows: 0}}
steps:
  hot: {type: alert, input: s, rules: [{name: never, expr: "power < -1000000", severity: minor, type: test}]}
sinks:
  o: {type: discard, input: s}
  alerts: {type: nats, input: hot, url: %q, subject: ha%s.alerts, stream: %s, forward: {retry_min: 20ms, retry_max: 200ms}}
`, natsURL, sfx, stream)}
	stop := e.start(t)
	if code, stdout, stderr := run(t, "import", e.bundle(t, 1, alerts), "--config", e.config); code != 0 {
		t.Fatalf("import v1: exit %d\n%s%s", code, stdout, stderr)
	}
	bad := maps.Clone(alerts)
	bad["pipelines/turbines.yaml"] = "sources:\n  s: {type: sim, rowz: 3}\nsinks:\n  o: {type: discard, input: s}\n"
	if code, _, stderr := run(t, "import", e.bundle(t, 2, bad), "--config", e.config); code != exitFailed || !strings.Contains(stderr, "rejected w v2") {
		t.Fatalf("import a broken v2: exit %d\n%s", code, stderr)
	}
	waitLog(t, e, `"msg":"health alert raised","rule":"apply_failed","asset":"edge-01"`)
	good := maps.Clone(alerts)
	good["pipelines/turbines.yaml"] = simPipeline("turbines")["pipelines/turbines.yaml"]
	if code, stdout, stderr := run(t, "import", e.bundle(t, 3, good), "--config", e.config); code != 0 {
		t.Fatalf("import v3: exit %d\n%s%s", code, stdout, stderr)
	}
	waitLog(t, e, `"msg":"health alert cleared","rule":"apply_failed","asset":"edge-01"`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		text := streamText(t, natsURL, stream)
		if strings.Contains(text, `"rule":"apply_failed"`) && strings.Contains(text, `"state":"raised"`) && strings.Contains(text, `"state":"cleared"`) &&
			strings.Contains(text, `"assetId":"edge-01"`) && strings.Contains(text, "rejected w v2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker lacks the apply_failed raise and clear:\n%s", text)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, stderr := stop(); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, stderr)
	}
}

// TestAgentCrashLoopAlert kills the engine (SIGKILL) three times on the
// same data directory, each time once it has recorded its start: the
// fourth start raises engine_restarts (asset: the edge). A clean stop and
// a start after it neither count nor raise it again (it is kept raised,
// same alert, across the restart).
func TestAgentCrashLoopAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	e := newEdgeSetup(t)
	if err := os.WriteFile(filepath.Join(e.dir, "p.yaml"), []byte(simPipeline("p")["pipelines/p.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	e.appendConfig(t, "pipelines: [p.yaml]\nhealth: {interval: 100ms, restarts_max: 3, restarts_window: 1h}\n")
	starts := filepath.Join(e.data, "health", health.StartsFile)
	restarts := func() (n int, running bool) {
		var l struct {
			Running  bool        `json:"running"`
			Restarts []time.Time `json:"restarts"`
		}
		data, err := os.ReadFile(starts)
		if err != nil || json.Unmarshal(data, &l) != nil {
			return -1, false
		}
		return len(l.Restarts), l.Running
	}
	arg, _ := json.Marshal(crashChild{Args: []string{"run", "--config", e.config}, Step: "never"})
	for i := range 3 {
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), crashChildEnv+"="+string(arg))
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for n, running := restarts(); n != i || !running; n, running = restarts() {
			if time.Now().After(deadline) {
				_ = child.Process.Kill()
				t.Fatalf("start %d: the start log holds %d restarts (running %v)", i+1, n, running)
			}
			time.Sleep(10 * time.Millisecond)
		}
		_ = child.Process.Kill()
		_ = child.Wait()
	}
	stop := e.start(t)
	waitLog(t, e, `"msg":"health alert raised","rule":"engine_restarts","asset":"edge-01","severity":"critical"`)
	if n, _ := restarts(); n != 3 {
		t.Fatalf("%d restarts recorded, want 3", n)
	}
	if code, stderr := stop(); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, stderr)
	}
	if n, running := restarts(); n != 3 || running {
		t.Fatalf("after a clean stop: %d restarts, running %v", n, running)
	}
	stop = e.start(t)
	waitLog(t, e, `"the engine restarted after a run that did not stop cleanly","restarts":3`)
	time.Sleep(500 * time.Millisecond) // a few checks
	if strings.Contains(e.log.String(), `"rule":"engine_restarts"`) {
		t.Fatalf("the restart after a clean stop raised or cleared engine_restarts again:\n%s", e.log.String())
	}
	if code, stderr := stop(); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, stderr)
	}
}
