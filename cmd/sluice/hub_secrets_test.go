package main

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/logfile"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// TestHubLogFileHoldsNoSecret runs the hub with passwords in its NATS URL
// and PostgreSQL DSN and --log-dir, through the paths that log (start,
// the NATS server lost and back), and scans its log file and stderr for
// them; sluice logs --log-dir reads the file.
func TestHubLogFileHoldsNoSecret(t *testing.T) {
	dsn := outboundtest.PostgresDSN(t) // trust authentication: any password passes
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Skipf("the test DSN %q is not a URL", dsn)
	}
	u.User = url.UserPassword(u.User.Username(), "Hub-Pg-Pass-1")
	srv := enginetest.NewNATSServer(t)
	srv.Start()
	natsURL := strings.Replace(srv.URL(), "nats://", "nats://hub:Hub-Nats-Pass-2@", 1)
	schema := "hub_secret_test_" + strings.ReplaceAll(outboundtest.Suffix(), "-", "_")
	t.Cleanup(func() {
		if db, err := sql.Open("pgx", dsn); err == nil {
			db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE")
			db.Close()
		}
	})
	logDir := filepath.Join(t.TempDir(), "hublog")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr enginetest.LogBuffer
	done := make(chan int, 1)
	go func() {
		done <- executeContext(ctx, []string{"hub", "--nats", natsURL, "--postgres", u.String(), "--schema", schema, "--listen", "127.0.0.1:0",
			"--token-file", filepath.Join(t.TempDir(), "hub.token"), "--log-dir", logDir, "--log-level", "debug"}, &stdout, &stderr)
	}()
	logged := func() string {
		files, _ := logfile.Files(logDir)
		var b strings.Builder
		for _, f := range files {
			data, _ := os.ReadFile(f)
			b.Write(data)
		}
		return b.String()
	}
	waitLogged := func(s string) {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logged(), s) {
			select {
			case code := <-done:
				t.Fatalf("the hub exited %d\n%s", code, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log file:\n%s\nstderr:\n%s", s, logged(), stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLogged("hub running")
	srv.Kill()
	waitLogged("NATS connection lost")
	srv.Start()
	waitLogged("NATS connection back")
	cancel()
	// Stopped at any point, also while it re-reads its resources after
	// the outage, the hub exits 0.
	if code := <-done; code != 0 {
		t.Errorf("the hub stopped after the outage exited %d\n%s", code, stderr.String())
	}
	for _, out := range []string{logged(), stderr.String()} {
		for _, s := range []string{"Hub-Pg-Pass-1", "Hub-Nats-Pass-2"} {
			if strings.Contains(out, s) {
				t.Errorf("the secret %q was logged:\n%s", s, out)
			}
		}
	}
	code, out, errOut := run(t, "logs", "--log-dir", logDir, "--grep", "NATS connection lost", "--level", "warn")
	if code != 0 || !strings.Contains(out, "NATS connection lost") {
		t.Errorf("sluice logs --log-dir: exit %d\n%s%s", code, out, errOut)
	}
}
