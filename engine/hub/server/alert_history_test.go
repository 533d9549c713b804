package server_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
)

// TestAlertHistory: GET /v1/alerts/{id}/history?edge= answers the
// recorded changes of one edge's alert, newest first, page after page; the
// same id of another edge is not among them; a request without a valid
// edge is refused.
func TestAlertHistory(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	for i := range 7 {
		for _, edge := range []string{"e1", "e2"} {
			a := store.AlertRecord{ID: "a/1", Edge: edge, Asset: "T1", Rule: "r", Severity: "major", Type: "t", Content: "c",
				Value: float64(i), Occur: t0.Add(time.Duration(i) * time.Minute), State: store.AlertRaised}
			if i%2 == 1 {
				a.State, a.Recover = store.AlertCleared, t0.Add(time.Duration(i)*time.Minute)
			}
			if err := in.st.ApplyAlert(ctx, a, fmt.Sprintf("%s-m%d", edge, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []server.AlertTransitionView
	after, pages := "", 0
	for {
		page, next, err := in.client.AlertHistoryPage(ctx, "e1", "a/1", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		pages++
		if next == "" {
			break
		}
		after = next
	}
	if len(got) != 7 || pages != 3 {
		t.Fatalf("%d transitions in %d pages: %+v", len(got), pages, got)
	}
	for i, tr := range got {
		want := 6 - i
		state := store.AlertRaised
		if want%2 == 1 {
			state = store.AlertCleared
		}
		if tr.Edge != "e1" || tr.ID != "a/1" || tr.State != state || tr.Value == nil || *tr.Value != float64(want) {
			t.Fatalf("transition %d: %+v, want value %d %s", i, tr, want, state)
		}
	}
	for _, q := range []string{"", "edge=", "edge=e.1", "edge=e1&limit=0", "edge=e1&after=!!"} {
		if code, _, body := get(t, in, server.AlertsPath+"/a1/history", q); code != http.StatusBadRequest {
			t.Errorf("GET history?%s: %d %s, want 400", q, code, body)
		}
	}
	if code, next, body := get(t, in, server.AlertsPath+"/nope/history", "edge=e1"); code != http.StatusOK || next != "" || string(body) != "[]\n" {
		t.Errorf("history of an unknown alert: %d %q %s", code, next, body)
	}
}
