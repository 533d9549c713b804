package pipelines_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/health"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/pipelines"
)

// TestHealthAlertAfterSourcesEnded: a release whose sources end (a sim of
// a fixed number of rows) finishes while the engine runs on; a health
// alert raised then (a refused apply) still reaches the broker through
// the finished pipeline's sink carrying alerts. A switch to another
// release closes that sink and its successor, in the same buffer
// directory, carries the clear. Before, the finished graph had closed
// every sink: the alert route had no target and the alert waited in the
// watcher's memory until the engine stopped, never sent.
func TestHealthAlertAfterSourcesEnded(t *testing.T) {
	srv := enginetest.NewNATSServer(t)
	srv.Start()
	sfx := outboundtest.Suffix()
	dir := t.TempDir()
	rel := func(rule string) *pipelines.Release {
		return release(t, dir, rule, fmt.Sprintf(`
name: farm
batch: {size: 16, linger: 5ms}
sources:
  s: {type: sim, turbines: 2, rate: 2000, rows: 40, resume: false}
steps:
  hot:
    type: alert
    input: s
    rules:
      - {name: %[3]s, expr: "power < -1000000", severity: minor, type: test}
sinks:
  alerts:
    type: nats
    input: hot
    url: %[1]q
    subject: af%[2]s.alerts
    stream: AF%[2]s_ALERTS
    forward: {retry_min: 20ms, retry_max: 200ms, publish_timeout: 1s, drain_timeout: 2s}
`, srv.URL(), sfx, rule))
	}
	rt := pipelines.NewRuntime(pipelines.Options{DataDir: filepath.Join(dir, "data"), Edge: "e1"})
	if err := rt.Start(context.Background(), rel("never")); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := rt.Stop(); err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-rt.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("the release did not finish: %+v", rt.Status())
	}

	w, err := pipelines.NewHealthWatcher(rt.Shared(), rt.Pipelines, health.Thresholds{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	apply := &health.Apply{Failed: true, Since: time.Now(), Text: "rejected bundle farm v3: signed by an untrusted key"}
	w.WatchEngine(func(time.Time) *health.Engine { return &health.Engine{Edge: "e1", Apply: apply} })
	if as := w.Check(time.Now()); len(as) != 1 || as[0].Rule != health.RuleApplyFailed || as[0].State != engine.AlertRaised {
		t.Fatalf("alerts %v, want apply_failed raised", rules(as))
	}

	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	atBroker := func(want ...string) func() bool {
		return func() bool {
			all := string(bytes.Join(streamData(js, "AF"+sfx+"_ALERTS"), nil))
			for _, w := range want {
				if !strings.Contains(all, w) {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, 20*time.Second, "apply_failed raised at the broker", atBroker(`"rule":"apply_failed"`, `"state":"raised"`))

	// A switch closes the kept sink; its successor opens the same buffer
	// and carries the clear.
	if _, err := rt.Switch(context.Background(), rel("other")); err != nil {
		t.Fatal(err)
	}
	apply = &health.Apply{Text: "applied farm v4"}
	var cleared bool
	waitFor(t, 20*time.Second, "apply_failed cleared", func() bool {
		for _, a := range w.Check(time.Now()) {
			cleared = cleared || (a.Rule == health.RuleApplyFailed && a.State == engine.AlertCleared)
		}
		return cleared
	})
	waitFor(t, 20*time.Second, "apply_failed cleared at the broker", atBroker(`"rule":"apply_failed"`, `"state":"cleared"`))
}
