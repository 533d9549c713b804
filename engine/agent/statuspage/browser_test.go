package statuspage_test

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/agent/statuspage"
	"github.com/sluice-edge/sluice/engine/webpage/browsertest"
)

// TestStatusPageHostileDataInBrowser: every string of the snapshot a
// device, a bundle or the log controls carries markup and a javascript:
// link; the page shows it as text, runs none of it, makes no element of
// it, and gives hostile class names (severities, levels, kinds) no style.
func TestStatusPageHostileDataInBrowser(t *testing.T) {
	b := browsertest.New(t)
	now := time.Now().UTC()
	v := statuspage.View{
		Edge: browsertest.Hostile("edge"), Software: browsertest.Hostile("software"), Bundle: browsertest.Hostile("bundle"), Version: 3,
		Pipelines: []statuspage.Pipeline{{Name: browsertest.Hostile("pipeline"), State: "failed", Err: browsertest.Hostile("err"),
			Steps: []statuspage.Step{{Name: browsertest.Hostile("step"), Kind: "source up", Type: browsertest.Hostile("type"), Inputs: []string{browsertest.Hostile("input")}, Rows: 5}}}},
		Sinks: []statuspage.Sink{{Pipeline: browsertest.Hostile("sinkpipeline"), Sink: browsertest.Hostile("sink"), Type: browsertest.Hostile("sinktype"), BacklogRows: 7}},
		Alerts: []statuspage.Alert{{Asset: browsertest.Hostile("asset"), Type: browsertest.Hostile("alerttype"), Name: browsertest.Hostile("alertname"),
			Severity: "minor up login", Message: browsertest.Hostile("message")}},
		HealthAlerts: true,
		Applies:      []statuspage.Apply{{Time: now, Bundle: browsertest.Hostile("applybundle"), Version: 2, Outcome: browsertest.Hostile("outcome"), Reason: browsertest.Hostile("reason")}},
		Pending:      []string{browsertest.Hostile("pending")},
		Warnings:     []statuspage.Warning{{Time: now, Level: "ERROR up", Text: browsertest.Hostile("logline")}},
		Control:      true,
		Commands: []statuspage.Command{{ID: browsertest.Hostile("cmdid"), Product: browsertest.Hostile("product"), Asset: browsertest.Hostile("cmdasset"), Service: browsertest.Hostile("service"),
			Inputs: browsertest.Hostile("inputs"), Origin: browsertest.Hostile("origin"), Class: browsertest.Hostile("class"), Status: browsertest.Hostile("status"), Reason: browsertest.Hostile("cmdreason"),
			Created: now, Updated: now}},
	}
	h, err := statuspage.New(statuspage.Options{Token: token, Snapshot: func() statuspage.View { return v }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	b.Go(t, srv.URL+statuspage.Prefix+"?token="+url.QueryEscape(token))
	b.Wait(t, "the hostile edge name as text", `document.getElementById("edge").textContent === `+browsertest.JSString(browsertest.Hostile("edge")))
	b.Wait(t, "the log line", `document.querySelectorAll("#warnings li").length === 1`)
	b.AssertInert(t, "page", []string{"software", "err", "step", "type", "input", "sinkpipeline", "sinktype", "asset", "alerttype", "alertname",
		"message", "applybundle", "outcome", "reason", "pending", "logline", "product", "cmdasset", "service", "inputs", "origin", "class",
		"status", "cmdreason"})
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
	attacker := browsertest.NewAttacker(t, page.URL, fmt.Sprintf(`<!doctype html><body><iframe name="sink"></iframe>
<form id="f" method="post" action="%[1]s/status/logout" target="sink"></form>
<img src="%[1]s/status/data?img" onerror="fetch('/done?img')">
<script>
document.getElementById("f").submit();
fetch("%[1]s/status/data", {credentials: "include", mode: "no-cors"}).finally(() => setTimeout(() => fetch("/done"), 500));
</script></body>`, page.URL))

	b.Go(t, page.URL+statuspage.Prefix+"?token="+url.QueryEscape(token))
	b.Wait(t, "the page", `document.getElementById("edge").textContent === "edge-01"`)
	b.Go(t, "about:blank")
	before := reads.Load()
	attacker.Visit(t, b)
	if n := reads.Load() - before; n != 0 {
		t.Errorf("another origin's page read the edge's data %d times", n)
	}
	b.Go(t, page.URL+statuspage.Prefix)
	b.Wait(t, "the page or the login form", `!!document.querySelector("input[name=token]") || document.getElementById("edge").textContent === "edge-01"`)
	if browsertest.Eval[bool](t, b, `!!document.querySelector("input[name=token]")`) {
		t.Fatal("another origin's page signed the operator out")
	}
}
