package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/server"
)

// TestHubCommandCLI: sluice hub command EDGE --set ... --wait reaches a
// simulated turbine behind a running edge (hub and control sections) and
// ends acked; sluice hub commands lists it with its status; bad command
// lines exit 64.
func TestHubCommandCLI(t *testing.T) {
	h := startHubCmd(t, "hub_command_test")
	pk := fmt.Sprintf("hubcmd%d", time.Now().UnixNano()%1e9)
	sim := answerDevices(t, "tcp://127.0.0.1:1883", "dev-"+pk, pk)

	e := newEdgeSetup(t)
	e.appendConfig(t, fmt.Sprintf("hub: {url: %q, heartbeat: 200ms}\ncontrol: {broker: \"tcp://127.0.0.1:1883\", client_id: ctl-%s}\n", h.nats.URL(), pk))
	stop := e.start(t)
	defer stop()

	for _, bad := range [][]string{
		{"hub", "command", "edge-01", "--set", "power_limit=1"},                             // no asset
		{"hub", "command", "edge-01", "--asset", "T0001", "--set", "power_limit"},           // no value
		{"hub", "command", "edge-01", "--asset", "T0001", "--set", "p=1", "--expire", "0s"}, // no deadline
	} {
		if code, out, errOut := run(t, append(bad, h.client...)...); code != exitUsage {
			t.Errorf("%v: exit %d\n%s%s", bad, code, out, errOut)
		}
	}
	code, out, errOut := run(t, append([]string{"hub", "command", "edge-01", "--asset", "T0001", "--product", pk,
		"--set", "power_limit=150", "--expire", "1m", "--wait", "--wait-for", "30s", "--json"}, h.client...)...)
	var v server.CommandView
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Status != "acked" || v.Origin != "cloud:hub" {
		t.Fatalf("hub command: exit %d\n%s%s", code, out, errOut)
	}
	if kW := sim.SetPoints("T0001")["power_limit"]; kW != 150 {
		t.Fatalf("device power_limit %v", kW)
	}
	code, out, errOut = run(t, append([]string{"hub", "commands", "edge-01", "--status", "acked"}, h.client...)...)
	if code != 0 || !strings.Contains(out, v.ID) || !strings.Contains(out, "power_limit=150") || !strings.Contains(out, "cloud:hub (cloud)") {
		t.Fatalf("hub commands: exit %d\n%s%s", code, out, errOut)
	}
	if code, stderr := stop(); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, stderr)
	}
}
