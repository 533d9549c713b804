package pipelines_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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

// TestHealthUnsentKeptAcrossRestart: health alerts raised while no sink
// carries alerts (no release applied yet) are kept next to the raised
// alerts; after the engine stops and starts again with a sink carrying
// alerts, they reach the broker once each, in the order they were raised,
// with their ids, and the restored conditions raise nothing anew. Before,
// they waited only in the watcher's memory and were lost at the stop.
func TestHealthUnsentKeptAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "data", "health", "raised.json")
	if err := os.MkdirAll(filepath.Dir(keep), 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// The engine restarts in a loop and the newest apply failed: both hold
	// throughout.
	figures := func(at time.Time) *health.Engine {
		return &health.Engine{Edge: "e1",
			Restarts: []time.Time{at.Add(-3 * time.Minute), at.Add(-2 * time.Minute), at.Add(-time.Minute)},
			Apply:    &health.Apply{Failed: true, Since: now.Add(-time.Minute), Text: "rejected bundle farm v3: signed by an untrusted key"}}
	}

	// First run: no release, so no sink carries alerts.
	w, err := pipelines.NewHealthWatcher(engine.NewShared(), func() []*pipelines.Pipeline { return nil }, health.Thresholds{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Keep(keep)
	w.WatchEngine(figures)
	first := w.Check(now)
	if fmt.Sprint(rules(first)) != "[raised engine_restarts raised apply_failed]" {
		t.Fatalf("first run raised %v", rules(first))
	}
	// The run stops: the watcher and its memory are gone.

	// Second run, with a release whose sink carries alerts.
	srv := enginetest.NewNATSServer(t)
	srv.Start()
	sfx := outboundtest.Suffix()
	rel := release(t, dir, "r1", fmt.Sprintf(`
name: farm
batch: {size: 16, linger: 5ms}
sources:
  s: {type: sim, turbines: 1, rate: 20, rows: 0, resume: false}
steps:
  hot:
    type: alert
    input: s
    rules:
      - {name: never, expr: "power < -1000000", severity: minor, type: test}
sinks:
  alerts:
    type: nats
    input: hot
    url: %[1]q
    subject: hu%[2]s.alerts
    stream: HU%[2]s_ALERTS
    forward: {retry_min: 20ms, retry_max: 200ms, publish_timeout: 1s, drain_timeout: 2s}
`, srv.URL(), sfx))
	rt := pipelines.NewRuntime(pipelines.Options{DataDir: filepath.Join(dir, "data"), Edge: "e1"})
	if err := rt.Start(context.Background(), rel); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := rt.Stop(); err != nil {
			t.Error(err)
		}
	}()
	// The test clock runs ahead of the sim source: no input_stalled.
	w2, err := pipelines.NewHealthWatcher(rt.Shared(), rt.Pipelines, health.Thresholds{StallAfter: 7 * 24 * time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w2.Keep(keep)
	w2.WatchEngine(figures)
	clk := &clock{now: now}
	check := func() {
		if as := w2.Check(clk.next(10 * time.Second)); len(as) != 0 {
			t.Fatalf("second run: %v, want nothing new (the conditions were restored)", rules(as))
		}
	}

	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	// atBroker returns the ids of the health alerts at the broker, in
	// order.
	atBroker := func() []string {
		var ids []string
		for _, data := range streamData(js, "HU"+sfx+"_ALERTS") {
			var batch struct {
				Rows []struct {
					Measurepoints struct{ ID, Type string }
				}
			}
			if err := json.Unmarshal(data, &batch); err != nil {
				t.Fatalf("alert batch %s: %v", data, err)
			}
			for _, r := range batch.Rows {
				if r.Measurepoints.Type == health.Type {
					ids = append(ids, r.Measurepoints.ID)
				}
			}
		}
		return ids
	}
	waitFor(t, 20*time.Second, "the kept alerts at the broker", func() bool {
		check()
		return len(atBroker()) >= len(first)
	})
	// Nothing more follows: a check offers nothing twice.
	check()
	check()
	time.Sleep(300 * time.Millisecond)
	ids := atBroker()
	want := []string{first[0].ID, first[1].ID}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("health alerts at the broker %v, want %v once each", ids, want)
	}
}
