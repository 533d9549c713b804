package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/pipelines/examples"
)

// sluice --version prints what sluice version prints.
func TestVersionFlag(t *testing.T) {
	_, want, _ := run(t, "version")
	code, got, stderr := run(t, "--version")
	if code != 0 || got != want || !strings.HasPrefix(got, "sluice ") {
		t.Fatalf("--version: exit %d, %q (stderr %q), want %q", code, got, stderr, want)
	}
}

// writeFile writes a test file and returns its path.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A run whose stderr is no terminal logs a short summary every
// --summary-interval (and never with 0), and names the absolute paths its
// file sinks write, at the start and in the summary.
func TestRunLogsSummaryAndFilePaths(t *testing.T) {
	dir := t.TempDir()
	// 2,000 rows at 2,000 rows/s: about a second, ten summary periods.
	file := writeFile(t, dir, "conf/w.yaml", `
name: w
sources:
  s: {type: sim, turbines: 5, rows: 400, rate: 2000, seed: 1}
steps:
  stats: {type: window, input: s, size: 1m, aggregates: {power: [avg]}}
sinks:
  f: {type: file, input: stats, path: out/stats.jsonl}
`)
	want := filepath.Join(dir, "conf", "out", "stats.jsonl")
	code, _, stderr := run(t, "run", file, "--data-dir", filepath.Join(dir, "data"), "--summary-interval", "100ms")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, s := range []string{"msg=progress rows=", `msg="file sink writes" pipeline=w sink=f path=` + want, `msg="file sink wrote" pipeline=w sink=f rows=`, "path=" + want} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr)
		}
	}
	if _, err := os.Stat(want); err != nil {
		t.Errorf("the named file: %v", err)
	}
	code, _, stderr = run(t, "run", file, "--data-dir", filepath.Join(dir, "data"), "--from-start", "--summary-interval", "0")
	if code != 0 || strings.Contains(stderr, "msg=progress") {
		t.Fatalf("--summary-interval 0: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := run(t, "run", file, "--summary-interval", "-1s"); code != exitUsage {
		t.Fatalf("negative --summary-interval: exit %d\n%s", code, stderr)
	}
}

// Log lines written while a live line shows go above it: the line is
// cleared first and drawn again after, never overwritten or glued to.
func TestLiveLineRedrawsAroundLogs(t *testing.T) {
	var b bytes.Buffer
	l := &liveLine{w: &b}
	l.Write([]byte("before\n"))
	l.show("rows 10")
	l.Write([]byte("a log line\n"))
	l.show("rows 20")
	l.clear()
	l.Write([]byte("after\n"))
	want := "before\n" + clearLine + "rows 10" + clearLine + "a log line\nrows 10" + clearLine + "rows 20" + clearLine + "after\n"
	if b.String() != want {
		t.Fatalf("got %q\nwant %q", b.String(), want)
	}
}

// The progress bar shows rows, bytes, rate and ETA.
func TestProgressBarRender(t *testing.T) {
	p := &progressBar{label: "export"}
	got := p.render(250, 1000, 3<<20, 5*time.Second)
	for _, s := range []string{"export [#######.......", " 25%", "250/1000 rows", "3.0 MiB", "50 rows/s", "ETA 15s"} {
		if !strings.Contains(got, s) {
			t.Errorf("%q lacks %q", got, s)
		}
	}
	if got := p.render(1000, 1000, -1, time.Second); strings.Contains(got, "ETA") || strings.Contains(got, "B ") {
		t.Errorf("finished, bytes unknown: %q", got)
	}
}

// export and buffer repair draw a progress bar (rows, bytes) with
// --progress always, and nothing with never or on a non-terminal (auto).
func TestOpsProgressBars(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "stats")
	makeBuffer(t, dir, 2, 1)
	for _, c := range []struct {
		args []string
		bar  string
	}{
		{[]string{"export", dir, "--out", t.TempDir(), "--rows-per-file", "100"}, "export ["},
		{[]string{"buffer", "repair", dir}, "repair ["},
	} {
		code, _, stderr := run(t, append(c.args, "--progress", "always")...)
		if code != 0 || !strings.Contains(stderr, c.bar) || !strings.Contains(stderr, "300/300 rows") || !strings.Contains(stderr, " KiB") || !strings.Contains(stderr, clearLine) {
			t.Errorf("%v --progress always: exit %d, stderr %q", c.args, code, stderr)
		}
		for _, mode := range []string{"never", "auto"} {
			code, _, stderr := run(t, append(c.args, "--progress", mode)...)
			if code != 0 || strings.Contains(stderr, c.bar) || strings.Contains(stderr, clearLine) {
				t.Errorf("%v --progress %s: exit %d, stderr %q", c.args, mode, code, stderr)
			}
		}
	}
}

// sluice sim against a port nobody listens on fails at once with a clear
// message and exit 1, with or without --duration (it neither exits 0
// silently nor waits forever).
func TestSimClosedPortFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, extra := range [][]string{nil, {"--duration", "200ms"}} {
		args := append([]string{"sim", "--broker", "tcp://" + addr, "--connect-timeout", "2s"}, extra...)
		code, stdout, stderr := run(t, args...)
		if code != exitFailed || !strings.Contains(stderr, "cannot connect to the MQTT broker tcp://"+addr) || !strings.Contains(stderr, "refused") {
			t.Errorf("%v: exit %d\nstdout %s\nstderr %s", args, code, stdout, stderr)
		}
	}
	if code, _, stderr := run(t, "sim", "--connect-timeout", "0s"); code != exitUsage {
		t.Errorf("--connect-timeout 0: exit %d %s", code, stderr)
	}
}

// sluice sim shows payloads per second on its live line (--progress
// always here; auto on a terminal).
func TestSimShowsPerSecondStats(t *testing.T) {
	broker, err := mqtt.StartBroker(mqtt.BrokerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	code, stdout, stderr := run(t, "sim", "--broker", broker.URL(), "--devices", "3", "--rate", "50", "--duration", "2500ms", "--progress", "always")
	if code != 0 || !strings.Contains(stderr, clearLine+"sent ") || !strings.Contains(stderr, "/s  acked ") || !strings.Contains(stdout, "sent ") {
		t.Fatalf("exit %d\nstdout %s\nstderr %q", code, stdout, stderr)
	}
}

// validate reports every error of every component in one run: a
// component with one error is still checked for the others, and the
// components reading a component in error are checked against the schema
// it would have.
func TestValidateReportsEveryErrorAtOnce(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "multi.yaml", `name: multi
sources:
  turbines: {type: sim, turbines: 2, rows: 10, seed: 1, interval: -5s, faults: -1}
steps:
  hot:
    type: filter
    input: turbines
    expr: "power >"
  stats:
    type: window
    input: turbines
    size: 1m
    lateness: nonsense
    aggregates: {power: [avg, bogus], nosuch: [max]}
  alerts:
    type: alert
    input: stats
    rules:
      - {name: r, expr: "nosuch_col > 3", severity: extreme}
sinks:
  out: {type: stdout, input: alerts, colour: red}
  f: {type: file, input: stats, path: ""}
`)
	code, _, stderr := run(t, "validate", file)
	if code != exitFailed {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		":3:67: ",  // interval
		":3:80: ",  // faults
		":8:18: ",  // the filter's expression, though its source is in error
		":13:15: ", // lateness
		`:14:31: aggregates.power: unknown function "bogus"`, // an aggregate of the same window
		`:14:39: aggregates: field "nosuch" is not in the input`,
		":19:26: ",               // the alert rule reading the window in error
		":19:53: ",               // severity
		`unknown field "colour"`, // the sink
		":22:39: path is empty",  // the file sink reading the window in error
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validate lacks %q:\n%s", want, stderr)
		}
	}
}

// sluice demo --cloud runs the example with a cloud sink against an
// embedded NATS JetStream: the statistics are delivered through the sink's
// buffer, which the run leaves in the data directory for the Operations
// commands (buffer status here).
func TestDemoCloud(t *testing.T) {
	t.Setenv("SIM_TURBINES", "5")
	t.Setenv("SIM_ROWS", "300")
	data := filepath.Join(t.TempDir(), "data")
	code, stdout, stderr := run(t, "demo", "--cloud", "--data-dir", data, "--progress", "never", "--edge", "demo-cloud")
	dir := filepath.Join(data, "windfarm-cloud", "cloud")
	if code != 0 || !strings.Contains(stderr, "sluice buffer status "+dir) || strings.Contains(stderr, "left in the buffer") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	code, stdout, stderr = run(t, "buffer", "status", dir, "--json")
	var st struct {
		Cursor      uint64 `json:"cursor"`
		BacklogRows int64  `json:"backlog_rows"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &st) != nil {
		t.Fatalf("buffer status: exit %d\n%s%s", code, stdout, stderr)
	}
	// 5 turbines x 5 one-minute windows, every one delivered.
	if st.Cursor != 25 || st.BacklogRows != 0 {
		t.Fatalf("buffer status: %s", stdout)
	}
	if code, _, stderr := run(t, "demo", "--cloud", "--direct"); code != exitUsage {
		t.Fatalf("--cloud --direct: exit %d %s", code, stderr)
	}
	if code, _, stderr := run(t, "demo", "--hub", "--summary-interval", "5s"); code != exitUsage || !strings.Contains(stderr, "--summary-interval has no effect with --hub") {
		t.Fatalf("--hub --summary-interval: exit %d %s", code, stderr)
	}
}

// sluice demo --direct runs the same computation as sluice demo: the steps
// of windfarm.yaml are those of windfarm-mqtt.yaml, and its simulated farm
// has the demo's settings (seed 42, one fault episode per hour, 1 s
// readings, 1,800 per turbine by default).
func TestDirectDemoIsTheSameComputation(t *testing.T) {
	read := func(name string) map[string]any {
		data, err := examples.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	direct, mqtt := read(examples.WindFarm), read(examples.WindFarmMQTT)
	if !reflect.DeepEqual(direct["steps"], mqtt["steps"]) {
		t.Fatalf("the steps differ:\n%v\n%v", direct["steps"], mqtt["steps"])
	}
	sim := direct["sources"].(map[string]any)["devices"].(map[string]any)
	for k, want := range map[string]any{"seed": 42, "faults": 1, "interval": "1s", "rows": "${SIM_ROWS:-1800}", "turbines": "${SIM_TURBINES:-100}"} {
		if sim[k] != want {
			t.Errorf("sim source %s = %v, want %v", k, sim[k], want)
		}
	}
}

// sluice import shows the bundle being sent (bytes) and then the engine
// applying it with --progress always; it is quiet with never and on a
// non-terminal. An offline import shows its checks the same way.
func TestImportProgress(t *testing.T) {
	e := newEdgeSetup(t)
	code, stdout, stderr := run(t, "import", e.bundle(t, 1, simPipeline("turbines")), "--config", e.config, "--progress", "always")
	if code != 0 || !strings.Contains(stdout, "staged w v1") || !strings.Contains(stderr, "import: checking and staging") || strings.Contains(stdout, clearLine) {
		t.Fatalf("offline import: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	stop := e.start(t)
	defer stop()
	code, stdout, stderr = run(t, "import", e.bundle(t, 2, simPipeline("turbines")), "--config", e.config, "--progress", "always")
	if code != 0 || !strings.Contains(stdout, "applied w v2") || !strings.Contains(stderr, "import [") || !strings.Contains(stderr, "100%") ||
		!strings.Contains(stderr, "import: applying") || !strings.HasSuffix(stderr, clearLine) {
		t.Fatalf("import: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = run(t, "import", e.bundle(t, 3, simPipeline("turbines")), "--config", e.config)
	if code != 0 || !strings.Contains(stdout, "applied w v3") || strings.Contains(stderr, "import [") || strings.Contains(stderr, clearLine) {
		t.Fatalf("import, auto on no terminal: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	if code, _, _ := run(t, "import", "x.bundle", "--progress", "sideways"); code != exitUsage {
		t.Fatalf("--progress sideways: exit %d", code)
	}
}

// BenchmarkLiveLineWrite measures a log record's write through the live
// line, with a status line on show (clear, write, redraw).
func BenchmarkLiveLineWrite(b *testing.B) {
	l := &liveLine{w: io.Discard}
	l.show("rows 123456  rows/s 98765  elapsed 1m")
	rec := []byte("time=2026-12-07T03:11:57.820Z level=INFO msg=progress rows=286 rows_per_s=940 elapsed=0s\n")
	b.ReportAllocs()
	for b.Loop() {
		l.Write(rec)
	}
}
