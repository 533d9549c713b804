package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/uplink"
	"github.com/sluice-edge/sluice/engine/logfile"
	"github.com/sluice-edge/sluice/engine/logquery"
)

// writeLog writes n records, one a second from t0, into dir's current log
// file: every 10th an error naming its number.
func writeLog(t *testing.T, dir string, t0 time.Time, n int) {
	t.Helper()
	w, err := logfile.Open(logfile.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < n; i++ {
		lvl, msg := "INFO", "rows forwarded"
		if i%10 == 0 {
			lvl, msg = "ERROR", fmt.Sprintf("publish failed %d", i)
		}
		line := fmt.Sprintf(`{"time":%q,"level":%q,"msg":%q,"pipeline":"p%d","pad":%q}`+"\n", t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), lvl, msg, i%2, strings.Repeat("x", 100))
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEdgeLogs: the hub asks an online edge for its log through NATS
// request/reply and answers within the size cap; an offline edge, a bad
// query and a hostile answer are errors, not crashes.
func TestEdgeLogs(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	edge := fmt.Sprintf("logs-edge-%d", seqNo.Add(1))
	dir := filepath.Join(t.TempDir(), "logs")
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	writeLog(t, dir, t0, 2000)
	ctx := context.Background()

	var apiErr *server.APIError
	if _, err := in.client.EdgeLogs(ctx, edge, logquery.Request{Level: "error"}, 0); !errors.As(err, &apiErr) || apiErr.Code != http.StatusServiceUnavailable {
		t.Fatalf("offline edge: %v, want a 503", err)
	}

	// Asked with a wait, the hub asks again until the edge comes online.
	waited := make(chan error, 1)
	go func() {
		ans, err := in.client.EdgeLogs(ctx, edge, logquery.Request{Level: "error", Limit: 3}, time.Minute)
		if err == nil && len(ans.Records) != 3 {
			err = fmt.Errorf("%d records", len(ans.Records))
		}
		waited <- err
	}()
	if _, err := in.client.EdgeLogs(ctx, edge, logquery.Request{}, server.MaxLogsWait+time.Second); !errors.As(err, &apiErr) || apiErr.Code != http.StatusBadRequest {
		t.Fatalf("a wait over the bound: %v, want a 400", err)
	}

	enc, _ := e.connect()
	stop, err := uplink.ServeLogs(enc, edge, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := <-waited; err != nil {
		t.Fatalf("the query that waited for the edge: %v", err)
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}

	since, until := t0.Add(100*time.Second), t0.Add(200*time.Second)
	tests := []struct {
		name      string
		req       logquery.Request
		records   int
		truncated bool
		status    int
	}{
		{"errors of a window and pipeline", logquery.Request{Level: "error", Since: &since, Until: &until, Pipeline: "p0"}, 11, false, 0},
		{"pattern", logquery.Request{Level: "error", Grep: `failed 1950"`}, 1, false, 0},
		{"limit", logquery.Request{Level: "error", Limit: 5}, 5, true, 0},
		{"size cap", logquery.Request{Level: "info", Limit: logquery.MaxLimit, MaxBytes: logquery.MinAnswerBytes}, -1, true, 0},
		{"bad pattern", logquery.Request{Grep: "(("}, 0, false, http.StatusBadRequest},
		{"bad level", logquery.Request{Level: "loud"}, 0, false, http.StatusBadRequest},
		{"cap too large", logquery.Request{MaxBytes: 1 << 30}, 0, false, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ans, err := in.client.EdgeLogs(ctx, edge, tt.req, 0)
			if tt.status != 0 {
				if !errors.As(err, &apiErr) || apiErr.Code != tt.status {
					t.Fatalf("%v, want status %d", err, tt.status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.records >= 0 && len(ans.Records) != tt.records {
				t.Errorf("%d records, want %d", len(ans.Records), tt.records)
			}
			if ans.Truncated != tt.truncated {
				t.Errorf("truncated %v, want %v", ans.Truncated, tt.truncated)
			}
			size := 0
			for _, r := range ans.Records {
				size += len(r)
			}
			if tt.req.MaxBytes != 0 && (size > tt.req.MaxBytes || len(ans.Records) == 0) {
				t.Errorf("%d records of %d bytes under a cap of %d", len(ans.Records), size, tt.req.MaxBytes)
			}
		})
	}
}

// TestEdgeLogsHostileAnswer: what answers on an edge's logs subject is
// hostile: too large, not JSON, records without a head.
func TestEdgeLogsHostileAnswer(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	nc, _ := e.connect()
	tests := []struct {
		name, answer string
		ok           bool
		records      int
	}{
		{"not json", "\x00garbage", false, 0},
		{"too large", `{"records":[],"pad":"` + strings.Repeat("a", logquery.DefaultAnswerBytes) + `"}`, false, 0},
		{"error", `{"records":[],"error":"disk on fire"}`, false, 0},
		{"records without a head", `{"records":[{"msg":"x"},"y",{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"ok"}]}`, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edge := fmt.Sprintf("hostile-%d", seqNo.Add(1))
			subj, _ := protocol.LogsSubject(edge)
			sub, err := nc.Subscribe(subj, func(m *natsgo.Msg) { _ = m.Respond([]byte(tt.answer)) })
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			nc.Flush()
			ans, err := in.client.EdgeLogs(context.Background(), edge, logquery.Request{}, 0)
			if tt.ok != (err == nil) {
				t.Fatalf("err %v, want ok %v", err, tt.ok)
			}
			if err == nil && len(ans.Records) != tt.records {
				t.Errorf("%d records, want %d", len(ans.Records), tt.records)
			}
		})
	}
}
