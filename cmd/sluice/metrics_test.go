package main

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/pipelines"
)

// TestMetricsEndpointLockedDown: ":port" binds the loopback interface only,
// and with a token every request must carry it.
func TestMetricsEndpointLockedDown(t *testing.T) {
	if got := metricsListenAddr(":9464"); got != "127.0.0.1:9464" {
		t.Errorf(":9464 listens on %s, want 127.0.0.1:9464", got)
	}
	if got := metricsListenAddr("0.0.0.0:9464"); got != "0.0.0.0:9464" {
		t.Errorf("0.0.0.0:9464 listens on %s", got)
	}
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte("s3cret-metrics-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := metricsToken(tokFile)
	if err != nil || tok != "s3cret-metrics-token" {
		t.Fatalf("token %q, %v", tok, err)
	}
	if _, err := metricsToken(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing token file was accepted")
	}
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	// Port 0 on the loopback interface: find the address in the log.
	stop, err := serveMetrics("127.0.0.1:0", tok, pipelines.NewCollector(nil), log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	_, rest, _ := strings.Cut(logged.String(), "url=")
	url, _, _ := strings.Cut(rest, " ")
	for _, tc := range []struct {
		auth string
		code int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer s3cret-metrics-token", 200}} {
		req, _ := http.NewRequest("GET", url, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%q: %d, want %d", tc.auth, resp.StatusCode, tc.code)
		}
		if tc.code == 200 && !strings.Contains(string(body), "go_goroutines") {
			t.Errorf("no metrics in the answer")
		}
	}
	if strings.Contains(logged.String(), "s3cret-metrics-token") {
		t.Error("the token reached the log")
	}
}
