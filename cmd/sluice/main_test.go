package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/pipelines"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = execute(args, &o, &e)
	return code, o.String(), e.String()
}

func TestValidateExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`
sources:
  s: {type: sim, turbinez: 3}
steps:
  f: {type: filter, input: s, expr: "power >"}
  w: {type: window, input: s, size: 1m, aggregates: {temp: [avg]}}
sinks:
  o: {type: stdout, input: nosuch}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "validate", bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{bad + ":3:18: unknown field \"turbinez\"", bad + ":5:44: field \"expr\": unexpected token EOF", bad + ":6:", bad + ":8:28: unknown stream \"nosuch\""} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	code, stdout, stderr := run(t, "validate", "../../pipelines/examples")
	if code != 0 || !strings.Contains(stdout, "ok: 5 pipeline(s) valid") {
		t.Fatalf("examples: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, _ := run(t, "validate"); code != exitUsage {
		t.Fatalf("validate without files: exit %d, want %d", code, exitUsage)
	}
}

func TestSchemaIsJSON(t *testing.T) {
	code, stdout, _ := run(t, "schema")
	var m map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &m) != nil || m["$defs"] == nil {
		t.Fatalf("schema: exit %d, output %.200s", code, stdout)
	}
	for _, name := range []string{`"window"`, `"alert"`, `"filter"`, `"sim"`, `"file"`, `"stdout"`} {
		if !strings.Contains(stdout, name) {
			t.Errorf("schema lacks component %s", name)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	if code, stdout, _ := run(t, "version"); code != 0 || !strings.HasPrefix(stdout, "sluice ") {
		t.Fatalf("version: %d %q", code, stdout)
	}
	for _, cmd := range []string{"run", "validate", "schema", "demo", "bench", "sim", "buffer", "export", "replay", "version"} {
		code, stdout, _ := run(t, cmd, "--help")
		if code != 0 || !strings.Contains(stdout, "Usage:") {
			t.Errorf("%s --help: exit %d\n%s", cmd, code, stdout)
		}
	}
}

// The reference in docs/ is generated from the component declarations and
// must be regenerated (make docs) when they change.
func TestReferenceDocIsCurrent(t *testing.T) {
	var b bytes.Buffer
	if err := pipelines.Reference(&b); err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("../../docs/reference.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, b.Bytes()) {
		t.Fatal("docs/reference.md is out of date: run make docs")
	}
}

// SIGINT during a run of an unbounded source drains: open windows are
// flushed to the sink and the process exits 0.
func TestRunDrainsOnSIGINT(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "stats.jsonl")
	p := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(p, []byte(`
sources:
  s: {type: sim, turbines: 5, rate: 20000, rows: 0}
steps:
  w: {type: window, input: s, size: 1h, aggregates: {power: [avg]}}
sinks:
  o: {type: file, input: w, path: `+out+`}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", p, "--log-format", "json", "--data-dir", filepath.Join(dir, "data"))
	var stderr enginetest.LogBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the run is under way (the sim paces rows in wall time).
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), `"msg":"running"`) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let some rows flow; correctness does not depend on how many
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("no output after drain: %v\n%s", err, stderr.String())
	}
	// 5 turbines, under an hour of event time: one open window each,
	// flushed by the drain.
	if n := bytes.Count(data, []byte("\n")); n != 5 {
		t.Fatalf("%d window rows after drain, want 5\n%s", n, data)
	}
}

func TestSimPublishesToBroker(t *testing.T) {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:1883", time.Second); err != nil {
		t.Skipf("no MQTT broker on 127.0.0.1:1883: %v", err)
	} else {
		c.Close()
	}
	code, stdout, stderr := run(t, "sim", "--devices", "5", "--rate", "0", "--payloads", "200", "--qos", "1", "--json", "--product-key", "simtest"+strconv.Itoa(os.Getpid()))
	var rep struct{ Sent, Acked int64 }
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if rep.Sent != 200 || rep.Acked != 200 {
		t.Fatalf("sent %d acked %d, want 200 each", rep.Sent, rep.Acked)
	}
}

// The demo runs simulated devices through the embedded MQTT broker into
// window statistics and alerts, with nothing installed.
func TestDemoOverEmbeddedBroker(t *testing.T) {
	stats := filepath.Join(t.TempDir(), "stats.jsonl")
	t.Setenv("SIM_TURBINES", "5")
	t.Setenv("SIM_ROWS", "300")
	t.Setenv("STATS_FILE", stats)
	code, _, stderr := run(t, "demo", "--data-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	data, err := os.ReadFile(stats)
	if err != nil {
		t.Fatal(err)
	}
	// 5 turbines x 5 one-minute windows, none late.
	if n := bytes.Count(data, []byte("\n")); n != 25 {
		t.Fatalf("%d window rows, want 25\n%s", n, stderr)
	}
	if !strings.Contains(stderr, "late_rows=0") {
		t.Fatalf("late rows in the demo:\n%s", stderr)
	}
}

// TestRunReportsBacklog: a finite run whose link is down used to exit 0
// after the drain with its backlog undelivered and no word about it. It
// now names what is left and where, and still exits 0 (the rows are safe).
func TestRunReportsBacklog(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(`
name: p
sources:
  sim: {type: sim, turbines: 10, rows: 100}
sinks:
  cloud:
    type: nats
    input: sim
    url: nats://127.0.0.1:1
    subject: x
    stream: X
    timeout: 100ms
    forward: {drain_timeout: 200ms, retry_min: 10ms, retry_max: 50ms, publish_timeout: 200ms}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "run", file, "--data-dir", filepath.Join(dir, "data"), "--log-level", "error", "--progress", "never")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := "1000 rows ("
	if !strings.Contains(stderr, want) || !strings.Contains(stderr, "left in the buffer of p/cloud") || !strings.Contains(stderr, "sent on the next run") {
		t.Fatalf("no backlog line in:\n%s", stderr)
	}
}
