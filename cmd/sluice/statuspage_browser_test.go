package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/webpage/browsertest"
)

// screenshotEnv, set to 1, makes TestStatusPageInBrowser write the
// page's screenshot to docs/images/edge-status.png.
const screenshotEnv = "SLUICE_UPDATE_SCREENSHOTS"

// browser is a headless Chromium tab whose waits last up to a minute
// and stop at the first expression that fails to evaluate.
type browser struct{ *browsertest.Browser }

// newBrowser starts a tab of width × height pixels, or skips the test
// without Chromium (fails it when browsertest.RequireEnv is set).
func newBrowser(t *testing.T, width, height int64) *browser {
	t.Helper()
	return &browser{browsertest.NewSized(t, width, height)}
}

// fitsNarrowScreen checks that on a small screen (375 px) nothing runs
// off the page's width.
func (b *browser) fitsNarrowScreen(t *testing.T) {
	t.Helper()
	if err := chromedp.Do(b.Ctx, chromedp.EmulateViewport(375, 700)); err != nil {
		t.Fatal(err)
	}
	b.waitJS(t, "no horizontal overflow at 375 px", `document.documentElement.scrollWidth <= window.innerWidth`)
}

// waitJS evaluates the expression until it is true, for at most a
// minute.
func (b *browser) waitJS(t *testing.T, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, err := chromedp.Run(b.Ctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			html, _ := chromedp.Run(b.Ctx, chromedp.OuterHTML(chromedp.CSS("main")))
			t.Fatalf("the page did not show %s within a minute:\n%s", what, html)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// backlogRows is the total backlog the page shows.
func (b *browser) backlogRows(t *testing.T) int64 {
	t.Helper()
	n, err := chromedp.Run(b.Ctx, chromedp.Evaluate[int64](`Number(document.getElementById("backlog-total").dataset.rows || 0)`))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStatusPageInBrowser runs an edge whose cloud sink's broker is down,
// opens its status page in headless Chromium, and checks that the page
// shows the backlog and the link_down health alert, follows the backlog as it
// grows, and clears both once the broker is up — with no console error.
func TestStatusPageInBrowser(t *testing.T) {
	browsertest.Chromium(t)
	nats := enginetest.NewNATSServer(t) // not started: the link is cut
	e := newEdgeSetup(t)
	id := fmt.Sprint(time.Now().UnixNano())
	pipeline := filepath.Join(e.dir, "plant.yaml")
	if err := os.WriteFile(pipeline, []byte(`
name: plant
sources:
  turbines: {type: sim, turbines: 2, rate: 20, rows: 0}
sinks:
  cloud:
    type: nats
    input: turbines
    url: `+nats.URL()+`
    subject: sluice.statuspage.`+id+`
    stream: SLUICE_STATUSPAGE_`+id+`
    forward: {retry_max: 200ms}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	// The command arbiter sends over the machine's MQTT broker to a
	// device that never answers: its commands time out.
	if err := os.WriteFile(e.config, append(cfg, "pipelines: [plant.yaml]\nhealth: {interval: 200ms, link_down_after: 1s, clear_after: 1s}\n"+
		"control: {broker: \"tcp://127.0.0.1:1883\", client_id: sluice-statuspage-"+id+"}\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	var rec agent.EdgeRecord
	data, err := os.ReadFile(filepath.Join(e.data, "agent", "edge.json"))
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(rec.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + rec.Listen + "/status/"

	// Without the token the page is a login form and shows nothing of
	// the edge.
	resp, err := http.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "edge-01") || !strings.Contains(string(body), `name="token"`) {
		t.Fatalf("the page without a token: %d\n%s", resp.StatusCode, body)
	}

	b := newBrowser(t, 1280, 860)
	if err := chromedp.Do(b.Ctx, chromedp.Navigate(base+"?token="+url.QueryEscape(strings.TrimSpace(string(token))))); err != nil {
		t.Fatal(err)
	}
	// The token left the address bar for a session cookie.
	if loc, err := chromedp.Run(b.Ctx, chromedp.Location()); err != nil || strings.Contains(loc, "token") {
		t.Fatalf("the page's address %q (%v) still holds the token", loc, err)
	}
	if err := chromedp.Do(b.Ctx, chromedp.WaitVisible(chromedp.CSS(`#alerts li[data-name="link_down"][data-asset="plant/cloud"]`))); err != nil {
		t.Fatal(err)
	}
	b.waitJS(t, "the edge's name", `document.getElementById("edge").textContent === "edge-01"`)
	b.waitJS(t, "the sink's link down", `!!document.querySelector('#sinks tr[data-sink="plant/cloud"] td.down')`)
	b.waitJS(t, "a backlog", `Number(document.getElementById("backlog-total").dataset.rows) > 0`)
	b.waitJS(t, "the pipeline's steps", `document.querySelectorAll("#pipelines .step").length === 2`)
	b.waitJS(t, "the publish warnings of the log", `document.querySelectorAll("#warnings li").length > 0`)
	// The page follows the backlog as it grows.
	first := b.backlogRows(t)
	b.waitJS(t, fmt.Sprintf("a backlog above %d rows", first), fmt.Sprintf(`Number(document.getElementById("backlog-total").dataset.rows) > %d`, first))

	// A command through the control API: the page lists it, and follows
	// it from sent to timeout.
	req, err := http.NewRequest(http.MethodPost, "http://"+rec.Listen+"/v1/control/commands", strings.NewReader(
		`{"product":"turbine`+id[len(id)-6:]+`","asset":"T1","service":"set_power","origin":"local:hmi","inputs":{"power_setpoint":1500},"timeout":"1s","expire_in":"5m"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var cmd struct{ ID string }
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &cmd) != nil || cmd.ID == "" {
		t.Fatalf("submitting a command: %d %s", resp.StatusCode, body)
	}
	row := `document.querySelector('#commands tr[data-id="` + cmd.ID + `"]')`
	b.waitJS(t, "the command", `!document.getElementById("commands-section").hidden && !!`+row+` && `+row+`.textContent.includes("set_power")`)
	b.waitJS(t, "the command timed out", row+`.dataset.status === "timeout" && !!`+row+`.querySelector("td.down")`)

	if os.Getenv(screenshotEnv) == "1" {
		b.waitJS(t, "a rate", `[...document.querySelectorAll("#pipelines .step")].some(s => !s.textContent.includes("0.0 rows/s"))`)
		b.Screenshot(t, filepath.Join("..", "..", "docs", "images", "edge-status.png"))
	}

	// On a small screen nothing runs off the page's width (tables
	// scroll in their own box).
	b.fitsNarrowScreen(t)

	// The link returns: the backlog drains and the alert clears.
	nats.Start()
	b.waitJS(t, "the link_down alert cleared", `!document.querySelector('#alerts li[data-name="link_down"]') && !document.getElementById("no-alerts").hidden`)
	b.waitJS(t, "the backlog drained", `Number(document.getElementById("backlog-total").dataset.rows) === 0`)
	b.waitJS(t, "the sink's link up", `!!document.querySelector('#sinks tr[data-sink="plant/cloud"] td.up')`)

	if errs := b.Errors(); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
