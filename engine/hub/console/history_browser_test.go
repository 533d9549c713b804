package console_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/console"
	"github.com/sluice-edge/sluice/engine/webpage/browsertest"
)

// TestAlertHistoryInBrowser: a click on an alert shows its changes in a
// row under it, as text (hostile states and values make neither markup
// nor a style), asked with the alert's edge; a second click hides them.
func TestAlertHistoryInBrowser(t *testing.T) {
	b := browsertest.New(t)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	asked := make(chan string, 16)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a any
		switch r.URL.Path {
		case "/v1/edges", "/v1/releases", "/v1/commands":
			a = []any{}
		case "/v1/alerts":
			a = []map[string]any{{"id": "alert-1", "state": "raised", "severity": "major", "edge": "edge-1", "asset": "T1",
				"rule": browsertest.Hostile("rule"), "type": "t", "content": browsertest.Hostile("content"), "occur_time": now, "changed_at": now}}
		case "/v1/alerts/alert-1/history":
			select {
			case asked <- r.URL.Query().Get("edge"):
			default:
			}
			a = []map[string]any{
				{"id": "alert-1", "edge": "edge-1", "state": "raised up", "time": now, "value": browsertest.Hostile("value")},
				{"id": "alert-1", "edge": "edge-1", "state": "raised", "time": now, "value": 42.5},
				{"id": "alert-1", "edge": "edge-1", "state": "cleared", "time": now, "value": nil},
			}
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a)
	})
	h, err := console.New(console.Options{Token: browserToken, API: api})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	b.Go(t, srv.URL+console.Prefix+"?token="+url.QueryEscape(browserToken))
	b.Wait(t, "the alert", `document.querySelectorAll("#alerts tbody tr").length === 1`)
	if !browsertest.Eval[bool](t, b, `document.querySelector("#alerts tbody tr").click(), true`) {
		t.Fatal("no click")
	}
	b.Wait(t, "the history", `document.querySelectorAll("#alerts tbody tr.history li").length === 3`)
	if edge := <-asked; edge != "edge-1" {
		t.Fatalf("the history was asked for edge %q", edge)
	}
	if !browsertest.Eval[bool](t, b, `document.querySelector("#alerts tr.history").textContent.includes(`+browsertest.JSString(browsertest.Hostile("value"))+`)`) {
		t.Error("the hostile value is not shown as text")
	}
	if !browsertest.Eval[bool](t, b, `document.querySelector("#alerts tr.history li.raised") !== null && document.querySelector("#alerts tr.history li.up") === null`) {
		t.Error("a change's state gave it a class the style does not expect")
	}
	time.Sleep(300 * time.Millisecond) // an image's onerror fires after its load fails
	if !browsertest.Eval[bool](t, b, browsertest.NoMarkupJS) {
		t.Fatalf("hostile data ran or made markup: __xss=%q", browsertest.Eval[string](t, b, `String(window.__xss)`))
	}
	if !browsertest.Eval[bool](t, b, `document.querySelector("#alerts tbody tr").click(), true`) {
		t.Fatal("no click")
	}
	b.Wait(t, "the history hidden", `document.querySelectorAll("#alerts tbody tr.history").length === 0`)
}
