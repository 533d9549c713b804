package pipelines_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-edge/sluice/pipelines"
)

// A pipeline with a cloud sink exposes component counters and the sink's
// forwarding metrics once it has run.
func TestCollectorExposesCountersAndForwarding(t *testing.T) {
	js := newJetStream(t)
	dir := t.TempDir()
	y := fmt.Sprintf(`
name: m
sources:
  s: {type: sim, turbines: 3, rows: 100}
sinks:
  cloud:
    type: nats
    input: s
    url: %s
    subject: metrics.test.%s
    stream: METRICS_%s
    encoding: json_batch
    buffer: {dir: %s}
`, js.url(), strings.ToLower(t.Name()), strings.ToUpper(t.Name()), filepath.Join(dir, "buf"))
	defs, errs := pipelines.Parse(filepath.Join(dir, "m.yaml"), []byte(y), envOf(nil))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ps := runDefs(t, defs)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(pipelines.NewCollector(ps))
	for _, name := range []string{"sluice_component_total", "sluice_sink_backlog_rows", "sluice_sink_published_rows_total", "sluice_sink_publish_seconds", "sluice_sink_link_up"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
			t.Errorf("%s: %d series, %v", name, n, err)
		}
	}
	want := `
# HELP sluice_sink_backlog_rows Rows accepted by a cloud sink and not yet confirmed by the broker.
# TYPE sluice_sink_backlog_rows gauge
sluice_sink_backlog_rows{pipeline="m",sink="cloud"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_sink_backlog_rows"); err != nil {
		t.Error(err)
	}
}
