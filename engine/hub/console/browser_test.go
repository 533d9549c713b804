package console_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/hub/console"
	"github.com/sluice-edge/sluice/engine/webpage/browsertest"
)

const browserToken = "console-browser-token-0123456789"

// hostileAPI answers the console's reads with what a hostile edge (or a
// compromised hub store) could put in every string: alerts, releases,
// commands and log lines an edge sends.
func hostileAPI(t *testing.T) http.Handler {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	answers := map[string]any{
		"/v1/edges": []map[string]any{{"id": "edge-1", "online": true, "bundle": browsertest.Hostile("edgebundle"), "version": 2,
			"software": browsertest.Hostile("software"), "backlog": 3, "last_seen": now}},
		"/v1/alerts": []map[string]any{{"state": "raised warn up", "severity": "minor up", "edge": "edge-1", "asset": browsertest.Hostile("asset"),
			"rule": browsertest.Hostile("rule"), "type": browsertest.Hostile("alerttype"), "content": browsertest.Hostile("content"), "occur_time": now, "changed_at": now}},
		"/v1/releases": []map[string]any{{"id": browsertest.Hostile("releaseid"), "bundle": browsertest.Hostile("releasebundle"), "version": 2, "target": browsertest.Hostile("target"),
			"released_at": now, "edges": []map[string]any{{"edge": "edge-1", "state": "rejected", "reason": browsertest.Hostile("releasereason")}}}},
		"/v1/commands": []map[string]any{{"id": "c1", "created": now, "updated": now, "edge": "edge-1", "product": browsertest.Hostile("product"),
			"asset": browsertest.Hostile("cmdasset"), "service": browsertest.Hostile("service"), "inputs": map[string]any{browsertest.Hostile("inputkey"): browsertest.Hostile("inputvalue")},
			"origin": browsertest.Hostile("origin"), "class": browsertest.Hostile("class"), "status": browsertest.Hostile("status"), "reason": browsertest.Hostile("cmdreason")}},
		"/v1/edges/edge-1/logs": map[string]any{"records": []map[string]any{{"time": now, "level": "ERROR up", "msg": browsertest.Hostile("logmsg"),
			browsertest.Hostile("logkey"): browsertest.Hostile("logvalue")}}},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := answers[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a)
	})
}

// TestConsoleHostileDataInBrowser: every string the console shows that
// an edge controls (alerts, releases' reasons, commands, log lines and
// their keys) carries markup and a javascript: link; the console shows it
// as text, runs none of it, makes no element of it, and gives hostile
// class names (severities, states, levels) no style.
func TestConsoleHostileDataInBrowser(t *testing.T) {
	b := browsertest.New(t)
	h, err := console.New(console.Options{Token: browserToken, API: hostileAPI(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	b.Go(t, srv.URL+console.Prefix+"?token="+url.QueryEscape(browserToken))
	b.Wait(t, "the commands", `document.querySelectorAll("#commands tbody tr").length === 1`)
	b.Wait(t, "the edge in the log form", `document.getElementById("log-edge").value === "edge-1"`)
	if !browsertest.Eval[bool](t, b, `document.getElementById("log-run").click(), true`) {
		t.Fatal("no log query")
	}
	b.Wait(t, "the log line", `document.querySelectorAll("#log li").length === 1`)
	b.AssertInert(t, "console", []string{"edgebundle", "software", "asset", "rule", "alerttype", "content", "releaseid", "releasebundle", "target",
		"releasereason", "product", "cmdasset", "service", "origin", "class", "status", "cmdreason", "logmsg", "logkey", "logvalue"})
	for _, c := range []struct{ what, expr string }{
		{"an alert's state", `document.querySelector("#alerts tbody tr").className`},
		{"an alert's severity", `document.querySelector("#alerts tbody tr").cells[1].className`},
		{"a log line's level", `document.querySelector("#log li").className`},
	} {
		if cls := browsertest.Eval[string](t, b, c.expr); strings.Contains(cls, "up") || strings.Contains(cls, "raised") {
			t.Errorf("%s gave the classes %q", c.what, cls)
		}
	}
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("console errors: %v", errs)
	}
}

// TestConsoleCrossOriginInBrowser: a page on another port of the hub's
// host — same-site, so SameSite=Strict sends the session cookie — posts
// the logout form and has the browser ask an edge's log (holding the
// hub's connections for minutes with wait=5m); the session survives and
// nothing reaches the API.
func TestConsoleCrossOriginInBrowser(t *testing.T) {
	b := browsertest.New(t)
	var mu sync.Mutex
	var attacked []string
	api := hostileAPI(t)
	h, err := console.New(console.Options{Token: browserToken, API: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("attacker") {
			mu.Lock()
			attacked = append(attacked, r.URL.RequestURI())
			mu.Unlock()
		}
		api.ServeHTTP(w, r)
	})})
	if err != nil {
		t.Fatal(err)
	}
	page := httptest.NewServer(h)
	defer page.Close()
	attacker := browsertest.NewAttacker(t, page.URL, fmt.Sprintf(`<!doctype html><body><iframe name="sink"></iframe>
<form id="f" method="post" action="%[1]s/console/logout" target="sink"></form>
<img src="%[1]s/console/api/v1/edges/edge-1/logs?wait=5m&attacker=img">
<script>
document.getElementById("f").submit();
fetch("%[1]s/console/api/v1/edges?attacker=fetch", {credentials: "include", mode: "no-cors"}).finally(() => setTimeout(() => fetch("/done"), 500));
</script></body>`, page.URL))
	b.Go(t, page.URL+console.Prefix+"?token="+url.QueryEscape(browserToken))
	b.Wait(t, "the console", `document.querySelectorAll("#edges tbody tr").length === 1`)
	b.Go(t, "about:blank")
	attacker.Visit(t, b)
	mu.Lock()
	if len(attacked) > 0 {
		t.Errorf("another origin's page reached the API: %v", attacked)
	}
	mu.Unlock()
	b.Go(t, page.URL+console.Prefix)
	b.Wait(t, "the console or the login form", `!!document.querySelector("input[name=token]") || document.querySelectorAll("#edges tbody tr").length === 1`)
	if browsertest.Eval[bool](t, b, `!!document.querySelector("input[name=token]")`) {
		t.Fatal("another origin's page signed the operator out")
	}
}

// TestConsoleStolenCookieInBrowser: cookies do not tell ports apart, so a
// service on another port of the hub's host (an edge's page tunnelled to
// the same address, say) is sent the console's session cookie as soon as
// its page asks its own /console/ path; the stolen session is refused
// from any other address than the operator's.
func TestConsoleStolenCookieInBrowser(t *testing.T) {
	b := browsertest.New(t)
	h, err := console.New(console.Options{Token: browserToken, API: hostileAPI(t)})
	if err != nil {
		t.Fatal(err)
	}
	page := httptest.NewServer(h)
	defer page.Close()
	stolen := make(chan string, 1)
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/console/steal" {
			if c, err := r.Cookie(console.CookieName); err == nil {
				select {
				case stolen <- c.Value:
				default:
				}
			}
			return
		}
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, `<!doctype html><script>fetch("/console/steal")</script>`)
	}))
	defer attacker.Close()
	b.Go(t, page.URL+console.Prefix+"?token="+url.QueryEscape(browserToken))
	b.Wait(t, "the console", `document.querySelectorAll("#edges tbody tr").length === 1`)
	b.Go(t, attacker.URL+"/")
	var id string
	select {
	case id = <-stolen:
	case <-time.After(30 * time.Second):
		t.Skip("the browser did not send the console's cookie to another port")
	}
	// The thief replays it from another address (127.0.0.2).
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	req, _ := http.NewRequest("GET", page.URL+console.APIPrefix+"v1/edges", nil)
	req.AddCookie(&http.Cookie{Name: console.CookieName, Value: id})
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "edge-1") {
		t.Fatalf("the stolen session from another address: %d %s", resp.StatusCode, body)
	}
}
