package main

import (
	"strings"
	"testing"
)

// TestHubCommandsAudit: hub commands EDGE --audit lists the edge's lease
// events newest first, with their text made printable; --audit without
// an edge is a bad command line.
func TestHubCommandsAudit(t *testing.T) {
	h := startHubCmd(t, "hubaudit")
	if _, err := h.db.Exec(`INSERT INTO ` + h.schema + `.lease_events (edge, seq, at, asset, origin, reason) VALUES
('edge-01', 3, '2026-12-07T10:00:00Z', 'T1', 'local:hmi', 'lease taken by hmi-1 (class operator)'),
('edge-01', 5, '2026-12-07T10:05:00Z', 'T1', 'local:hmi', E'lease released by hmi-1\x1b[2J'),
('edge-02', 4, '2026-12-07T10:01:00Z', 'T2', 'local:hmi', 'lease taken by other')`); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, append([]string{"hub", "commands", "edge-01", "--audit"}, h.client...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	released, taken := strings.Index(out, "lease released by hmi-1\\x1b[2J"), strings.Index(out, "lease taken by hmi-1")
	if released < 0 || taken < released || strings.Contains(out, "other") || strings.Contains(out, "\x1b") {
		t.Fatalf("hub commands --audit:\n%s", out)
	}
	if code, _, _ := run(t, append([]string{"hub", "commands", "--audit"}, h.client...)...); code != exitUsage {
		t.Fatalf("--audit without an edge: exit %d", code)
	}
}
