package pipelines_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/pipelines"
)

// StatusView lists every step with its inputs and counts, and every cloud
// sink with its link and backlog.
func TestStatusView(t *testing.T) {
	js := newJetStream(t)
	dir := t.TempDir()
	y := fmt.Sprintf(`
name: sv
sources:
  s: {type: sim, turbines: 2, rows: 100}
sinks:
  cloud:
    type: nats
    input: s
    url: %s
    subject: statusview.test.%s
    stream: STATUSVIEW_%s
    buffer: {dir: %s}
  local: {type: discard, input: s}
`, js.url(), strings.ToLower(t.Name()), strings.ToUpper(t.Name()), filepath.Join(dir, "buf"))
	defs, errs := pipelines.Parse(filepath.Join(dir, "sv.yaml"), []byte(y), envOf(nil))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ps := runDefs(t, defs)
	pipes, sinks := pipelines.StatusView(ps, []pipelines.PipelineStatus{{Name: "sv", State: "stopped"}})
	if len(pipes) != 1 || pipes[0].Name != "sv" || pipes[0].State != "stopped" {
		t.Fatalf("pipelines %+v", pipes)
	}
	steps := map[string]string{}
	for _, s := range pipes[0].Steps {
		steps[s.Name] = fmt.Sprintf("%s %s %v rows=%d late=%d errors=%d", s.Kind, s.Type, s.Inputs, s.Rows, s.Late, s.Errors)
	}
	for name, want := range map[string]string{
		"s":     "source sim [] rows=200 late=0 errors=0",
		"cloud": "sink nats [s] rows=200 late=0 errors=0",
		"local": "sink discard [s] rows=200 late=0 errors=0",
	} {
		if steps[name] != want {
			t.Errorf("step %s: %q, want %q", name, steps[name], want)
		}
	}
	if len(sinks) != 1 {
		t.Fatalf("cloud sinks %+v, want one", sinks)
	}
	if s := sinks[0]; s.Pipeline != "sv" || s.Sink != "cloud" || s.Type != "nats" || !s.LinkUp || s.BacklogRows != 0 || s.QuotaBytes <= 0 {
		t.Fatalf("cloud sink %+v", s)
	}
}
