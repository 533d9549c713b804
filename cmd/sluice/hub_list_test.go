package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/hub/server"
)

// TestHubAlertsFlood floods the hub's store with the alerts one hostile
// edge can make (5,000 distinct ids with 4 KiB contents, some 20 MiB of
// JSON): `sluice hub alerts` still succeeds and prints every one of them,
// page after page; --limit stops early and --json prints one array.
func TestHubAlertsFlood(t *testing.T) {
	h := startHubCmd(t, "hub_flood_test")
	db, schema, hub := h.db, h.schema, h.client
	const flood = 5000
	if _, err := db.Exec(`
INSERT INTO `+schema+`.alerts_current (id, edge, asset, rule, severity, type, content, value, occur_time, state, changed_at, updated_at)
SELECT 'flood-' || lpad(g::text, 5, '0'), 'edge-bad', 'T1', 'r', 'high', 'threshold', repeat('x', 4096), g, now(), 'raised', now(), now()
FROM generate_series(1, $1) g`, flood); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, append([]string{"hub", "alerts"}, hub...)...)
	if code != 0 {
		t.Fatalf("hub alerts: exit %d\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var rows int
	for _, line := range lines {
		if strings.Contains(line, "edge-bad") {
			rows++
		}
	}
	if rows != flood {
		t.Fatalf("hub alerts printed %d alerts, want %d", rows, flood)
	}
	code, out, errOut = run(t, append([]string{"hub", "alerts", "--json"}, hub...)...)
	if code != 0 {
		t.Fatalf("hub alerts --json: exit %d\n%s", code, errOut)
	}
	var got []server.AlertView
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("hub alerts --json is not one JSON array: %v", err)
	}
	if len(got) != flood {
		t.Fatalf("hub alerts --json: %d alerts, want %d", len(got), flood)
	}
	for i, a := range got {
		if want := fmt.Sprintf("flood-%05d", i+1); a.ID != want || len(a.Content) != 4096 {
			t.Fatalf("hub alerts --json: alert %d is %s (%d bytes of content), want %s", i, a.ID, len(a.Content), want)
		}
	}
	code, out, errOut = run(t, append([]string{"hub", "alerts", "--limit", "7"}, hub...)...)
	if code != 0 || strings.Count(out, "edge-bad") != 7 {
		t.Fatalf("hub alerts --limit 7: exit %d, %d alerts\n%s", code, strings.Count(out, "edge-bad"), errOut)
	}
	if code, _, _ := run(t, append([]string{"hub", "alerts", "--limit", "-1"}, hub...)...); code != exitUsage {
		t.Fatalf("hub alerts --limit -1: exit %d, want %d", code, exitUsage)
	}
}
