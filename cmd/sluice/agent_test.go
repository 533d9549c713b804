package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle/bundletest"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// edgeSetup writes a signing key and an edge configuration whose API
// listens on a port of loopback the system picks.
type edgeSetup struct {
	dir, key, config, data string
	log                    *enginetest.LogBuffer // the running engine's stderr
}

func newEdgeSetup(t *testing.T) *edgeSetup {
	t.Helper()
	dir := t.TempDir()
	e := &edgeSetup{dir: dir, key: filepath.Join(dir, "release"), config: filepath.Join(dir, "sluice.yaml"), data: filepath.Join(dir, "data")}
	if code, _, stderr := run(t, "bundle", "keygen", "--out", e.key); code != 0 {
		t.Fatal(stderr)
	}
	if err := os.WriteFile(e.config, []byte(`
edge: edge-01
data_dir: data
trust: release.pub
labels: {site: north}
api: {listen: "127.0.0.1:0"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// appendConfig adds text to the edge's configuration.
func (e *edgeSetup) appendConfig(t *testing.T, text string) {
	t.Helper()
	f, err := os.OpenFile(e.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// bundle builds release v of name w with the given pipeline files.
func (e *edgeSetup) bundle(t *testing.T, v int, files map[string]string) string {
	t.Helper()
	src := filepath.Join(e.dir, fmt.Sprintf("src-%d-%d", v, time.Now().UnixNano()))
	bundletest.WriteTree(t, src, files)
	out := src + ".bundle"
	code, _, stderr := run(t, "bundle", "build", src, "--name", "w", "--version", fmt.Sprint(v), "--key", e.key+".key", "--out", out)
	if code != 0 {
		t.Fatal(stderr)
	}
	return out
}

// simPipeline runs until stopped.
func simPipeline(name string) map[string]string {
	return simPipelineRate(name, 50)
}

func simPipelineRate(name string, rate int) map[string]string {
	return map[string]string{"pipelines/" + name + ".yaml": fmt.Sprintf("sources:\n  s: {type: sim, turbines: 2, rate: %d, rows: 0}\nsinks:\n  o: {type: discard, input: s}\n", rate)}
}

// start runs `sluice run --config` in the test's process until the
// returned function cancels it; that function returns the exit code and
// stderr.
func (e *edgeSetup) start(t *testing.T, args ...string) func() (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr enginetest.LogBuffer
	e.log = &stderr
	done := make(chan int, 1)
	go func() {
		done <- executeContext(ctx, append([]string{"run", "--config", e.config, "--log-format", "json", "--log-level", "debug"}, args...), &stdout, &stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, _ := run(t, "status", "--data-dir", e.data, "--json")
		var st agent.Status
		if code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.Engine {
			break
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("the engine exited %d\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the engine's API did not answer\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopped := false
	stop := func() (int, string) {
		if stopped {
			return 0, ""
		}
		stopped = true
		cancel()
		return <-done, stderr.String()
	}
	t.Cleanup(func() { stop() })
	return stop
}

func (e *edgeSetup) status(t *testing.T) agent.Status {
	t.Helper()
	code, out, stderr := run(t, "status", "--data-dir", e.data, "--json")
	var st agent.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: exit %d\n%s%s", code, out, stderr)
	}
	return st
}

func TestImportToRunningEngine(t *testing.T) {
	e := newEdgeSetup(t)
	stop := e.start(t)

	code, stdout, stderr := run(t, "import", e.bundle(t, 1, simPipeline("turbines")), "--config", e.config)
	if code != 0 || !strings.Contains(stdout, "applied w v1 on edge edge-01") {
		t.Fatalf("import v1: exit %d\n%s%s", code, stdout, stderr)
	}
	st := e.status(t)
	if !st.Engine || st.Current == nil || st.Current.Version != 1 || len(st.Pipelines) != 1 || st.Pipelines[0].Name != "turbines" || st.Pipelines[0].State != "running" {
		t.Fatalf("status after v1: %+v", st)
	}

	// The same version again, and a release whose pipeline is invalid, are
	// rejected; v1 keeps running.
	code, _, stderr = run(t, "import", e.bundle(t, 1, simPipeline("turbines")), "--data-dir", e.data)
	if code != exitFailed || !strings.Contains(stderr, "rejected w v1: not newer than the applied version") {
		t.Fatalf("import v1 again: exit %d\n%s", code, stderr)
	}
	bad := map[string]string{"pipelines/turbines.yaml": "sources:\n  s: {type: sim, rowz: 3}\nsinks:\n  o: {type: discard, input: s}\n"}
	code, _, stderr = run(t, "import", e.bundle(t, 2, bad), "--config", e.config)
	if code != exitFailed || !strings.Contains(stderr, "rejected w v2") || !strings.Contains(stderr, `pipelines/turbines.yaml:2:`) {
		t.Fatalf("import a broken v2: exit %d\n%s", code, stderr)
	}
	if st := e.status(t); st.Current.Version != 1 || st.Last.Outcome != agent.Rejected || st.Pipelines[0].State != "running" {
		t.Fatalf("status after the rejection: %+v", st)
	}
	code, stdout, _ = run(t, "status", "--config", e.config)
	for _, want := range []string{"edge edge-01: engine running", "release: w v1, applied", "turbines  running since", "last apply: rejected w v2"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}

	// A new version with a changed pipeline and new configuration switches.
	files := simPipelineRate("turbines", 60)
	files["config/site.json"] = "{}"
	v3 := e.bundle(t, 3, files)
	code, stdout, _ = run(t, "bundle", "inspect", v3, "--against", e.data)
	if code != 0 || !strings.Contains(stdout, "runs w v1; this is w v3 (+2, would apply)") || !strings.Contains(stdout, "added    config/site.json") || !strings.Contains(stdout, "changed  pipelines/turbines.yaml") {
		t.Errorf("inspect --against: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr = run(t, "import", v3, "--config", e.config)
	if code != 0 || !strings.Contains(stdout, "applied w v3") {
		t.Errorf("import v3: exit %d\n%s%s", code, stdout, stderr)
		t.Fatal(e.log.String())
	}
	if st := e.status(t); st.Current.Version != 3 || len(st.Pipelines) != 1 || st.Pipelines[0].Name != "turbines" || st.Pipelines[0].State != "running" {
		t.Fatalf("status after v3: %+v", st)
	}
	if code, stderr := stop(); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, stderr)
	}

	// The reports hold every outcome, in order.
	rs, err := agent.ReadReports(filepath.Join(e.data, "agent"), agent.DefaultMaxReportBytes)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.Outcome+fmt.Sprint(r.Version))
	}
	if strings.Join(got, " ") != "applied1 rejected1 rejected2 applied3" {
		t.Errorf("reports: %v", got)
	}
}

func TestImportToStoppedEngine(t *testing.T) {
	e := newEdgeSetup(t)
	// No engine has run: there is no record of the data directory yet.
	if code, _, stderr := run(t, "import", e.bundle(t, 1, simPipeline("turbines")), "--data-dir", e.data); code != exitFailed || !strings.Contains(stderr, "give --config") {
		t.Fatalf("import without a record: exit %d\n%s", code, stderr)
	}
	code, stdout, stderr := run(t, "import", e.bundle(t, 1, simPipeline("turbines")), "--config", e.config)
	if code != 0 || !strings.Contains(stdout, "staged w v1 for edge edge-01: no engine runs") {
		t.Fatalf("offline import: exit %d\n%s%s", code, stdout, stderr)
	}
	// The same checks as a running engine: another key is refused.
	other := filepath.Join(e.dir, "other")
	run(t, "bundle", "keygen", "--out", other)
	src := filepath.Join(e.dir, "src-other")
	os.MkdirAll(filepath.Join(src, "pipelines"), 0o755)
	os.WriteFile(filepath.Join(src, "pipelines", "p.yaml"), []byte(simPipeline("p")["pipelines/p.yaml"]), 0o644)
	run(t, "bundle", "build", src, "--name", "w", "--version", "5", "--key", other+".key", "--out", src+".bundle")
	if code, _, stderr := run(t, "import", src+".bundle", "--config", e.config); code != exitFailed || !strings.Contains(stderr, "rejected bundle src-other.bundle: entry \"MANIFEST.sig\": signed by an untrusted key") {
		t.Fatalf("offline import of a foreign bundle: exit %d\n%s", code, stderr)
	}
	code, stdout, _ = run(t, "status", "--config", e.config)
	if code != 0 || !strings.Contains(stdout, "no engine running") || !strings.Contains(stdout, "pending: 1 bundle(s)") || !strings.Contains(stdout, "release: none applied") {
		t.Fatalf("offline status: exit %d\n%s", code, stdout)
	}

	// The next start applies the staged bundle.
	stop := e.start(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := e.status(t)
		if st.Current != nil && st.Current.Version == 1 && len(st.Pending) == 0 && len(st.Pipelines) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the staged bundle was not applied: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, stderr := stop(); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, stderr)
	}
	// Stopped, status reads the data directory.
	st := e.status(t)
	if st.Engine || st.Current == nil || st.Current.Version != 1 || st.Last.String() != "applied w v1" {
		t.Fatalf("status of the stopped engine: %+v", st)
	}
	// A restart runs the applied release, not the command line's files.
	p := filepath.Join(e.dir, "cli.yaml")
	os.WriteFile(p, []byte(simPipeline("cli")["pipelines/cli.yaml"]), 0o644)
	stop = e.start(t, p)
	if st := e.status(t); st.Current.Version != 1 || len(st.Pipelines) != 1 || st.Pipelines[0].Name != "turbines" {
		t.Fatalf("status after a restart: %+v", st)
	}
	stop()
}

func TestRunConfigWithoutRelease(t *testing.T) {
	e := newEdgeSetup(t)
	p := filepath.Join(e.dir, "turbines.yaml")
	os.WriteFile(p, []byte(simPipelineRate("turbines", 40)["pipelines/turbines.yaml"]), 0o644)
	stop := e.start(t, p)
	if st := e.status(t); st.Current != nil || len(st.Pipelines) != 1 || st.Pipelines[0].Name != "turbines" {
		t.Fatalf("status: %+v", st)
	}
	// The first release replaces the command line's pipelines.
	code, stdout, stderr := run(t, "import", e.bundle(t, 1, simPipeline("turbines")), "--config", e.config)
	if code != 0 || !strings.Contains(stdout, "applied w v1") {
		t.Fatalf("import: exit %d\n%s%s", code, stdout, stderr)
	}
	if st := e.status(t); st.Current == nil || st.Current.Version != 1 || len(st.Pipelines) != 1 || st.Pipelines[0].Name != "turbines" {
		t.Fatalf("status after v1: %+v", st)
	}
	// A second engine on the same data directory is refused.
	if code, _, stderr := run(t, "run", "--config", e.config); code != exitFailed || !strings.Contains(stderr, "another engine runs") {
		t.Errorf("second engine: exit %d\n%s", code, stderr)
	}
	stop()

	for _, c := range []string{"import", "status"} {
		if code, stdout, _ := run(t, c, "--help"); code != 0 || !strings.Contains(stdout, "--config") || !strings.Contains(stdout, "--data-dir") {
			t.Errorf("%s --help: exit %d\n%s", c, code, stdout)
		}
	}
	for _, args := range [][]string{
		{"run", "--config", e.config, "--data-dir", "x"},
		{"run", "--config", e.config, "--metrics-addr", "nonsense"},
		{"import"},
		{"import", "a", "--config", e.config, "--data-dir", e.data},
		{"status", "extra"},
	} {
		if code, _, stderr := run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, exitUsage, stderr)
		}
	}
}

// A recorded release that can no longer start (its environment changed)
// stops the engine with exit 1, unless a release staged by an offline
// import replaces it.
func TestRecordedReleaseThatCannotStart(t *testing.T) {
	e := newEdgeSetup(t)
	t.Setenv("SLUICE_TEST_EDGE_RATE", "50")
	needsEnv := map[string]string{"pipelines/turbines.yaml": "sources:\n  s: {type: sim, turbines: 2, rate: \"${SLUICE_TEST_EDGE_RATE}\", rows: 0}\nsinks:\n  o: {type: discard, input: s}\n"}
	stop := e.start(t)
	if code, stdout, stderr := run(t, "import", e.bundle(t, 1, needsEnv), "--config", e.config); code != 0 {
		t.Fatalf("import v1: exit %d\n%s%s", code, stdout, stderr)
	}
	stop()

	os.Unsetenv("SLUICE_TEST_EDGE_RATE")
	code, _, stderr := run(t, "run", "--config", e.config)
	if code != exitFailed || !strings.Contains(stderr, "start release w v1") || !strings.Contains(stderr, "SLUICE_TEST_EDGE_RATE") {
		t.Fatalf("start without the variable: exit %d\n%s", code, stderr)
	}
	if code, stdout, stderr := run(t, "import", e.bundle(t, 2, simPipeline("turbines")), "--config", e.config); code != 0 || !strings.Contains(stdout, "staged w v2") {
		t.Fatalf("offline import v2: exit %d\n%s%s", code, stdout, stderr)
	}
	stop = e.start(t)
	if st := e.status(t); st.Current.Version != 2 || len(st.Pipelines) != 1 || st.Pipelines[0].State != "running" {
		t.Fatalf("status: %+v", st)
	}
	stop()
}
