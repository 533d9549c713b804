package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// TestHubAlertsFlood floods the hub's store with the alerts one hostile
// edge can make (5,000 distinct ids with 4 KiB contents, some 20 MiB of
// JSON): `sluice hub alerts` still succeeds and prints every one of them,
// page after page; --limit stops early and --json prints one array.
func TestHubAlertsFlood(t *testing.T) {
	dsn := outboundtest.PostgresDSN(t)
	n := enginetest.NewNATSServer(t)
	n.Start()
	schema := fmt.Sprintf("hub_flood_test_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE")
		db.Close()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	tokenFile := filepath.Join(t.TempDir(), "hub.token")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- executeContext(ctx, []string{"hub", "--nats", n.URL(), "--postgres", dsn, "--schema", schema, "--listen", addr,
			"--token-file", tokenFile, "--log-format", "json"}, &stdout, &stderr)
	}()
	t.Cleanup(func() { cancel(); <-done })
	hub := []string{"--hub", "http://" + addr, "--token-file", tokenFile}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _, _ := run(t, append([]string{"hub", "alerts"}, hub...)...); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub's API did not answer\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
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
