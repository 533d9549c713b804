package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/connectors/devsim"
	"github.com/sluice-edge/sluice/connectors/devsim/devsimtest"
	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
)

// answerDevices runs two simulated turbines of product pk on the broker
// at url, answering commands until the test ends, and returns them.
func answerDevices(t *testing.T, url, clientID, pk string) *devsim.Sim {
	t.Helper()
	return devsimtest.Answering(t, devsim.Config{URLs: []string{url}, ClientID: clientID, ProductKey: pk, Devices: 2})
}

// TestRunConfigControl: an edge with a control section serves the control
// API beside its local API; a command submitted there goes through the
// arbiter and the MQTT downlink to a simulated device, which acknowledges
// it; the records survive a restart of the engine.
func TestRunConfigControl(t *testing.T) {
	br, err := mqtt.StartBroker(mqtt.BrokerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	sim := answerDevices(t, br.URL(), "dev-ctl", "pkctl")

	e := newEdgeSetup(t)
	e.appendConfig(t, "control: {broker: \""+br.URL()+"\", timeout: 10s}\n")
	stop := e.start(t)
	c := controlClientOf(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.TakeLease(ctx, control.LeaseRequest{Asset: "T0002", Holder: "hmi", Origin: "local:hmi", Class: control.ClassSafety, For: time.Hour}); err != nil {
		t.Fatal(err)
	}
	blocked, err := c.Submit(ctx, control.Command{Product: "pkctl", Asset: "T0002", Origin: "cloud", Inputs: map[string]any{"q": 1.0}})
	if !errors.Is(err, control.ErrLeased) || blocked.Status != command.Rejected {
		t.Fatalf("under a lease: %s %v", blocked.Status, err)
	}
	rec, err := c.Submit(ctx, control.Command{Product: "pkctl", Asset: "T0001", Origin: "cloud", Inputs: map[string]any{"q": 7.0}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Wait(ctx, rec.ID)
	if err != nil || got.Status != command.Acked {
		t.Fatalf("%s %v", got.Status, err)
	}
	if v := sim.SetPoints("T0001")["q"]; v != 7 {
		t.Fatalf("the device holds q=%v", v)
	}
	if code, log := stop(); code != 0 {
		t.Fatalf("exit %d\n%s", code, log)
	}

	// After a restart the records and the lease are there; a pipeline's
	// command sink now submits to the arbiter too, as a rule.
	pipe := filepath.Join(e.dir, "rules.yaml")
	os.WriteFile(pipe, []byte(`sources:
  s: {type: sim, turbines: 2, rows: 3, resume: false}
sinks:
  cmds: {type: mqtt, input: s, urls: ["`+br.URL()+`"], product_key: pkctl, params: {probe: wind_speed}}
`), 0o644)
	e.start(t, pipe)
	c = controlClientOf(t, e)
	for id, want := range map[string]command.Status{rec.ID: command.Acked, blocked.ID: command.Rejected} {
		if r, err := c.Get(ctx, id); err != nil || r.Status != want {
			t.Fatalf("%s after a restart: %s %v", id, r.Status, err)
		}
	}
	if ls, err := c.Leases(ctx); err != nil || len(ls) != 1 || ls[0].Holder != "hmi" {
		t.Fatalf("leases after a restart: %v %v", ls, err)
	}
	audit, err := c.Audit(ctx, control.Filter{ID: blocked.ID})
	if err != nil || len(audit) == 0 || !strings.Contains(audit[len(audit)-1].Reason, "leased by hmi") {
		t.Fatalf("audit: %v %v", audit, err)
	}

	var rules []control.Record
	deadline := time.Now().Add(30 * time.Second)
	for {
		rules, err = c.List(ctx, control.Filter{Origin: control.OriginRule})
		if err != nil {
			t.Fatal(err)
		}
		done := len(rules) == 6
		for _, r := range rules {
			done = done && r.Status.Final()
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pipeline's commands: %+v", rules)
		}
		time.Sleep(20 * time.Millisecond)
	}
	acked := 0
	for _, r := range rules {
		switch {
		case r.Asset == "T0002" && (r.Status != command.Rejected || !strings.Contains(r.Reason, "leased by hmi")):
			t.Errorf("a rule's command for the leased T0002: %s %q", r.Status, r.Reason)
		case r.Origin != "rule:rules.cmds":
			t.Errorf("origin %q", r.Origin)
		case r.Status == command.Acked:
			acked++
		}
	}
	if acked == 0 {
		t.Errorf("no command of the rule was acknowledged: %+v", rules)
	}
}
