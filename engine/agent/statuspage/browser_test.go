package statuspage_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/agent/statuspage"
	"github.com/sluice-edge/sluice/engine/webpage/browsertest"
)

// hostile is markup that runs a script wherever a page turns data into
// HTML (or a link), each setting window.__xss to the field's name.
func hostile(field string) string {
	return fmt.Sprintf(`<img src=x onerror="window.__xss='%[1]s'">"><svg onload="window.__xss='%[1]s'"><script>window.__xss='%[1]s'</script><a href="javascript:window.__xss='%[1]s'">%[1]s</a>`, field)
}

// noMarkupJS is true when the page holds no element data could have
// made: no image, svg, script in the body, link, frame or object.
const noMarkupJS = `window.__xss === undefined && document.querySelectorAll("body img, body svg, body script, a, iframe, object, embed").length === 0`

// TestStatusPageHostileDataInBrowser: every string of the snapshot a
// device, a bundle or the log controls carries markup and a javascript:
// link; the page shows it as text, runs none of it, makes no element of
// it, and gives hostile class names (severities, levels, kinds) no style.
func TestStatusPageHostileDataInBrowser(t *testing.T) {
	b := browsertest.New(t)
	now := time.Now().UTC()
	v := statuspage.View{
		Edge: hostile("edge"), Software: hostile("software"), Bundle: hostile("bundle"), Version: 3,
		Pipelines: []statuspage.Pipeline{{Name: hostile("pipeline"), State: "failed", Err: hostile("err"),
			Steps: []statuspage.Step{{Name: hostile("step"), Kind: "source up", Type: hostile("type"), Inputs: []string{hostile("input")}, Rows: 5}}}},
		Sinks: []statuspage.Sink{{Pipeline: hostile("sinkpipeline"), Sink: hostile("sink"), Type: hostile("sinktype"), BacklogRows: 7}},
		Alerts: []statuspage.Alert{{Asset: hostile("asset"), Type: hostile("alerttype"), Name: hostile("alertname"),
			Severity: "minor up login", Message: hostile("message")}},
		HealthAlerts: true,
		Applies:      []statuspage.Apply{{Time: now, Bundle: hostile("applybundle"), Version: 2, Outcome: hostile("outcome"), Reason: hostile("reason")}},
		Pending:      []string{hostile("pending")},
		Warnings:     []statuspage.Warning{{Time: now, Level: "ERROR up", Text: hostile("logline")}},
		Control:      true,
		Commands: []statuspage.Command{{ID: hostile("cmdid"), Product: hostile("product"), Asset: hostile("cmdasset"), Service: hostile("service"),
			Inputs: hostile("inputs"), Origin: hostile("origin"), Class: hostile("class"), Status: hostile("status"), Reason: hostile("cmdreason"),
			Created: now, Updated: now}},
	}
	h, err := statuspage.New(statuspage.Options{Token: token, Snapshot: func() statuspage.View { return v }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	b.Go(t, srv.URL+statuspage.Prefix+"?token="+url.QueryEscape(token))
	b.Wait(t, "the hostile edge name as text", `document.getElementById("edge").textContent === `+jsString(hostile("edge")))
	b.Wait(t, "the log line", `document.querySelectorAll("#warnings li").length === 1`)
	for _, field := range []string{"software", "err", "step", "type", "input", "sinkpipeline", "sinktype", "asset", "alerttype", "alertname",
		"message", "applybundle", "outcome", "reason", "pending", "logline", "product", "cmdasset", "service", "inputs", "origin", "class",
		"status", "cmdreason"} {
		if !browsertest.Eval[bool](t, b, `document.body.textContent.includes(`+jsString(hostile(field))+`)`) {
			t.Errorf("the page does not show %s as text", field)
		}
	}
	time.Sleep(300 * time.Millisecond) // an image's onerror fires after its load fails
	if !browsertest.Eval[bool](t, b, noMarkupJS) {
		t.Fatalf("hostile data ran or made markup: __xss=%q", browsertest.Eval[string](t, b, `String(window.__xss)`))
	}
	for _, c := range []struct{ what, expr string }{
		{"an alert's severity", `document.querySelector("#alerts li").className`},
		{"a log line's level", `document.querySelector("#warnings li").className`},
		{"a step's kind", `document.querySelector("#pipelines .step").className`},
	} {
		if cls := browsertest.Eval[string](t, b, c.expr); strings.Contains(cls, "up") || strings.Contains(cls, "login") {
			t.Errorf("%s gave the classes %q", c.what, cls)
		}
	}
}

// TestStatusPageCrossOriginInBrowser: a page on another port of the same
// host — same-site, so SameSite=Strict sends the session cookie — posts
// the logout form and reads the data with the operator's browser; the
// session survives and the data is not served.
func TestStatusPageCrossOriginInBrowser(t *testing.T) {
	b := browsertest.New(t)
	var reads atomic.Int64
	h, err := statuspage.New(statuspage.Options{Token: token, Snapshot: func() statuspage.View {
		reads.Add(1)
		return statuspage.View{Edge: "edge-01"}
	}})
	if err != nil {
		t.Fatal(err)
	}
	page := httptest.NewServer(h)
	defer page.Close()
	var attackerDone atomic.Bool
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/done" {
			attackerDone.Store(true)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><body><iframe name="sink"></iframe>
<form id="f" method="post" action="%[1]s/status/logout" target="sink"></form>
<img src="%[1]s/status/data?img" onerror="fetch('/done?img')">
<script>
document.getElementById("f").submit();
fetch("%[1]s/status/data", {credentials: "include", mode: "no-cors"}).finally(() => setTimeout(() => fetch("/done"), 500));
</script></body>`, page.URL)
	}))
	defer attacker.Close()
	if !strings.HasPrefix(attacker.URL, "http://127.0.0.1:") || !strings.HasPrefix(page.URL, "http://127.0.0.1:") {
		t.Fatalf("the servers %s and %s are not on one host", page.URL, attacker.URL)
	}

	b.Go(t, page.URL+statuspage.Prefix+"?token="+url.QueryEscape(token))
	b.Wait(t, "the page", `document.getElementById("edge").textContent === "edge-01"`)
	b.Go(t, "about:blank")
	before := reads.Load()
	b.Go(t, attacker.URL+"/")
	deadline := time.Now().Add(30 * time.Second)
	for !attackerDone.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the attacker's page did not finish")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if n := reads.Load() - before; n != 0 {
		t.Errorf("another origin's page read the edge's data %d times", n)
	}
	b.Go(t, page.URL+statuspage.Prefix)
	b.Wait(t, "the page or the login form", `!!document.querySelector("input[name=token]") || document.getElementById("edge").textContent === "edge-01"`)
	if browsertest.Eval[bool](t, b, `!!document.querySelector("input[name=token]")`) {
		t.Fatal("another origin's page signed the operator out")
	}
}

// jsString quotes s as a JavaScript string.
func jsString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r < 0x20 || r == '<':
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}
