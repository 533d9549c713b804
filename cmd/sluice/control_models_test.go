package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/control/controlclient"
)

// TestReleaseModelsCheckSetPoints: once a release with thing models runs
// on an edge, a set-point for one of its assets outside the model's range
// is rejected by the arbiter, naming the range and the model, and never
// reaches the device; one within it is executed. A later release without
// models checks nothing again.
func TestReleaseModelsCheckSetPoints(t *testing.T) {
	br, err := mqtt.StartBroker(mqtt.BrokerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	sim := answerDevices(t, br.URL(), "dev-models", "pkmodels")
	e := newEdgeSetup(t)
	e.appendConfig(t, "control: {broker: \""+br.URL()+"\", timeout: 10s}\n")
	e.start(t)
	files := simPipeline("turbines")
	files["models/turbines.yaml"] = `models:
  - id: turbine
    points:
      power_limit: {type: float64, unit: kW, min: 0, max: 2000}
assets:
  - {id: T0001, model: turbine}
`
	if code, stdout, stderr := run(t, "import", e.bundle(t, 1, files), "--config", e.config); code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, stdout, stderr)
	}
	c := controlClientOf(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	limit := func(kW float64) (control.Record, error) {
		return c.Submit(ctx, control.Command{Product: "pkmodels", Asset: "T0001", Origin: "local:hmi", Inputs: map[string]any{"power_limit": kW}})
	}
	rec, err := limit(15000)
	if !errors.Is(err, control.ErrRejected) || rec.Status != command.Rejected ||
		!strings.Contains(rec.Reason, "asset T0001 (thing model turbine): power_limit = 15000 kW is outside the allowed range [0, 2000] kW") {
		t.Fatalf("15000 kW: %s %q %v", rec.Status, rec.Reason, err)
	}
	rec, err = limit(1500)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Wait(ctx, rec.ID); err != nil || got.Status != command.Acked {
		t.Fatalf("1500 kW: %s %v", got.Status, err)
	}
	if kW := sim.SetPoints("T0001")["power_limit"]; kW != 1500 {
		t.Fatalf("device power_limit %v, want 1500", kW)
	}

	if code, stdout, stderr := run(t, "import", e.bundle(t, 2, simPipeline("turbines")), "--config", e.config); code != 0 {
		t.Fatalf("import v2: exit %d\n%s%s", code, stdout, stderr)
	}
	rec, err = limit(1800)
	if err != nil || strings.Contains(rec.Reason, "model") {
		t.Fatalf("without models: %s %q %v", rec.Status, rec.Reason, err)
	}
}

// controlClientOf returns a client of the running edge's control API.
func controlClientOf(t *testing.T, e *edgeSetup) *controlclient.Client {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(e.data, "agent", "edge.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec agent.EdgeRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	token, err := agent.ReadToken(filepath.Join(e.data, "agent", "api.token"))
	if err != nil {
		t.Fatal(err)
	}
	return controlclient.New("http://"+rec.Listen, token, nil)
}
