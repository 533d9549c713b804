package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/server"
	"github.com/sluice-edge/sluice/engine/hub/store"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/engine/webpage/browsertest"
)

// TestHubConsoleInBrowser runs the whole loop — a NATS JetStream server
// of the test's own, a hub process on the machine's PostgreSQL and an
// edge agent whose data sink's broker is down while its alerts and
// heartbeats reach the hub — and opens the hub's console in headless
// Chromium. The console shows the edge online with a backlog, its
// link_down health alert, a release the edge rejected, the (empty)
// command records and the edge's log on demand; once the data broker is
// up it follows the backlog to zero and the alert to cleared — with no
// console error.
func TestHubConsoleInBrowser(t *testing.T) {
	browsertest.Chromium(t)
	l := newLoop(t)
	addr := freeAddr(t)
	l.hubs["a"] = startChild(t, "hub a", filepath.Join(l.dir, "hub-a.log"), nil,
		"hub", "--nats", l.nats.URL(), "--postgres", l.dsn, "--schema", l.schema, "--listen", addr,
		"--token-file", filepath.Join(l.dir, "hub.token"), "--log-format", "json")
	c, err := server.NewClient("http://"+addr, l.token)
	if err != nil {
		t.Fatal(err)
	}
	l.client, l.api = c, "a"
	l.eventually("the hub answers", func() (bool, string) {
		_, err := c.Health(context.Background())
		return err == nil, fmt.Sprint(err)
	})

	// The edge: its cloud sink's broker is down (not started), its
	// alerts (the health alerts among them) and heartbeats go to the hub.
	cut := enginetest.NewNATSServer(t)
	e := newEdgeSetup(t)
	id := outboundtest.Suffix()
	if err := os.WriteFile(filepath.Join(e.dir, "plant.yaml"), []byte(`
name: plant
sources:
  turbines: {type: sim, turbines: 2, rate: 20, rows: 0}
steps:
  hot:
    type: alert
    input: turbines
    rules:
      - {name: never, expr: "power < -1000000", severity: minor, type: test}
sinks:
  cloud:
    type: nats
    input: turbines
    url: `+cut.URL()+`
    subject: sluice.console.`+id+`
    stream: SLUICE_CONSOLE_`+id+`
    forward: {retry_max: 200ms}
  alerts_out:
    type: nats
    input: hot
    url: `+l.nats.URL()+`
    subject: sluice.edge-01.alerts
    stream: SLUICE_DATA
    provision: false
    message_stream: alerts
    timeout: 1s
    forward: {retry_min: 20ms, retry_max: 300ms}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = fmt.Appendf(cfg, "pipelines: [plant.yaml]\nhub: {url: %q, heartbeat: 300ms}\nhealth: {interval: 200ms, link_down_after: 1s, clear_after: 1s}\n", l.nats.URL())
	if err := os.WriteFile(e.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	e.start(t)

	// A release signed by a key the edge does not trust: rejected.
	f, err := os.Open(l.bundle(1, l.key, loopRulesV1))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	rv, err := c.Release(context.Background(), f, fi.Size(), server.Target{Kind: store.TargetEdge, Selector: "edge-01"})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	l.waitStates(rv, map[string]string{"edge-01": store.ReleaseRejected})

	// A command to the edge: the hub records it (issued) before the edge
	// answers.
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+server.CommandsPath, strings.NewReader(
		`{"edge":"edge-01","product":"turbine","asset":"T1","service":"set_power","inputs":{"power_setpoint":1500},"expire_in":"10m"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+l.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var cmd struct{ ID string }
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 || json.Unmarshal(body, &cmd) != nil || cmd.ID == "" {
		t.Fatalf("issuing a command: %d %s", resp.StatusCode, body)
	}

	base := "http://" + addr + "/console/"
	// Without the token the console is a login form and shows nothing
	// of the fleet; the API still wants its bearer.
	for _, p := range []string{"", "api/v1/edges"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "edge-01") {
			t.Fatalf("%s without a token: %d\n%s", base+p, resp.StatusCode, body)
		}
	}
	if resp, err := http.Get("http://" + addr + server.EdgesPath); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the API without its token: %v %v", resp, err)
	}

	b := newBrowser(t, 1280, 1000)
	if err := chromedp.Do(b.Ctx, chromedp.Navigate(base+"?token="+url.QueryEscape(l.token))); err != nil {
		t.Fatal(err)
	}
	if loc, err := chromedp.Run(b.Ctx, chromedp.Location()); err != nil || strings.Contains(loc, "token") {
		t.Fatalf("the console's address %q (%v) still holds the token", loc, err)
	}
	edgeRow := `document.querySelector('#edges tr[data-edge="edge-01"]')`
	b.waitJS(t, "the edge online", `!!document.querySelector('#edges tr[data-edge="edge-01"][data-state="online"]')`)
	b.waitJS(t, "the edge's backlog", `Number(`+edgeRow+`.dataset.backlog) > 0`)
	b.waitJS(t, "the link_down health alert", `!!document.querySelector('#alerts tr[data-edge="edge-01"][data-rule="link_down"][data-state="raised"]')`)
	b.waitJS(t, "the edge's active alerts", `Number(`+edgeRow+`.dataset.alerts) > 0`)
	b.waitJS(t, "the rejected release", `!!document.querySelector('#releases tr[data-release="`+rv.ID+`"] span[data-edge="edge-01"][data-state="rejected"]') && `+edgeRow+`.dataset.release === "rejected"`)
	b.waitJS(t, "the command record", `!document.getElementById("commands-section").hidden && !!document.querySelector('#commands tr[data-id="`+cmd.ID+`"]') && document.querySelector('#commands tr[data-id="`+cmd.ID+`"]').textContent.includes("set_power")`)
	// The page follows the backlog as it grows.
	var first int64
	if first, err = chromedp.Run(b.Ctx, chromedp.Evaluate[int64](`Number(`+edgeRow+`.dataset.backlog)`)); err != nil {
		t.Fatal(err)
	}
	b.waitJS(t, fmt.Sprintf("a backlog above %d rows", first), fmt.Sprintf(`Number(`+edgeRow+`.dataset.backlog) > %d`, first))

	// The edge's log, asked through the hub.
	if err := chromedp.Do(b.Ctx, chromedp.SetValue(chromedp.CSS(`#log-edge`), "edge-01")); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b.Ctx, chromedp.SetValue(chromedp.CSS(`#log-grep`), "publish failed")); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b.Ctx, chromedp.Click(chromedp.CSS(`#log-run`))); err != nil {
		t.Fatal(err)
	}
	b.waitJS(t, "the edge's failed publishes in its log", `document.getElementById("log").dataset.edge === "edge-01" && document.querySelectorAll("#log li").length > 0 && [...document.querySelectorAll("#log li")].every(li => li.textContent.includes("publish failed"))`)

	if os.Getenv(screenshotEnv) == "1" {
		b.Screenshot(t, filepath.Join("..", "..", "docs", "images", "hub-console.png"))
	}

	// On a small screen nothing runs off the page's width.
	b.fitsNarrowScreen(t)

	// The data broker comes up: the backlog drains and the alert clears.
	cut.Start()
	b.waitJS(t, "the backlog drained", `Number(`+edgeRow+`.dataset.backlog) === 0`)
	b.waitJS(t, "the link_down alert cleared", `!!document.querySelector('#alerts tr[data-edge="edge-01"][data-rule="link_down"][data-state="cleared"]') && !document.querySelector('#alerts tr[data-rule="link_down"][data-state="raised"]')`)

	if errs := b.Errors(); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
