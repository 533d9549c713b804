package statuspage_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/agent/statuspage"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/webpage/webpagetest"
)

const token = "s3cret-token-0123456789abcdef"

// fixture is a handler over a settable view, with its log.
type fixture struct {
	h    *statuspage.Handler
	srv  *httptest.Server
	log  *enginetest.LogBuffer
	clk  *command.ManualClock
	mu   sync.Mutex
	view statuspage.View
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{log: &enginetest.LogBuffer{}, clk: command.NewManualClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	f.view = statuspage.View{Edge: "edge-01", Sinks: []statuspage.Sink{{Pipeline: "p", Sink: "cloud", Type: "nats", BacklogRows: 42}}}
	h, err := statuspage.New(statuspage.Options{Token: token, Log: slog.New(slog.NewTextHandler(f.log, nil)), Now: f.clk.Now,
		Snapshot: func() statuspage.View { f.mu.Lock(); defer f.mu.Unlock(); return f.view }})
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

// do sends a request to the page's server (a redirect is answered, not
// followed).
func (f *fixture) do(t *testing.T, method, path string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	return webpagetest.Do(t, method, f.srv.URL+path, hdr, body)
}

// session signs in with ?token= and returns the session cookie.
func (f *fixture) session(t *testing.T) *http.Cookie {
	t.Helper()
	resp, _ := f.do(t, "GET", statuspage.Prefix+"?token="+url.QueryEscape(token), nil, "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != statuspage.Prefix {
		t.Fatalf("sign-in: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, c := range resp.Cookies() {
		if c.Name == statuspage.CookieName {
			return c
		}
	}
	t.Fatal("sign-in set no session cookie")
	return nil
}

func TestAuth(t *testing.T) {
	f := newFixture(t)
	c := f.session(t)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != statuspage.Prefix || c.MaxAge <= 0 {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path %s, MaxAge", c, statuspage.Prefix)
	}
	cookie := c.Name + "=" + c.Value
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		body               string
		code               int
		want, not          string
	}{
		{"page without auth is the login form", "GET", statuspage.Prefix, nil, "", 401, `name="token"`, "edge-01"},
		{"data without auth", "GET", statuspage.DataPath, nil, "", 401, "unauthorized", "edge-01"},
		{"data with a wrong bearer", "GET", statuspage.DataPath, map[string]string{"Authorization": "Bearer nope"}, "", 401, "", "edge-01"},
		{"data with the token but no Bearer scheme", "GET", statuspage.DataPath, map[string]string{"Authorization": token}, "", 401, "", "edge-01"},
		{"data with a forged cookie", "GET", statuspage.DataPath, map[string]string{"Cookie": statuspage.CookieName + "=" + strings.Repeat("a", 64)}, "", 401, "", "edge-01"},
		{"data with the bearer", "GET", statuspage.DataPath, map[string]string{"Authorization": "Bearer " + token}, "", 200, `"edge-01"`, ""},
		{"data with the session", "GET", statuspage.DataPath, map[string]string{"Cookie": cookie}, "", 200, `"backlog_rows": 42`, ""},
		{"page with the session", "GET", statuspage.Prefix, map[string]string{"Cookie": cookie}, "", 200, `src="app.js"`, ""},
		{"wrong token in the query", "GET", statuspage.Prefix + "?token=badtok-XYZ", nil, "", 401, `name="token"`, "edge-01"},
		{"login form with a wrong token", "POST", statuspage.LoginPath, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "token=badtok-XYZ", 401, `name="token"`, ""},
		{"login form with the token", "POST", statuspage.LoginPath, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "token=" + url.QueryEscape(token), 303, "", ""},
		{"oversized login form", "POST", statuspage.LoginPath, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "token=" + strings.Repeat("x", 1<<20), 401, "", ""},
		{"script needs no session and holds no data", "GET", statuspage.Prefix + "app.js", nil, "", 200, "getJSON(", "edge-01"},
		{"shared script", "GET", statuspage.Prefix + "common.js", nil, "", 200, "fetch(", "edge-01"},
		{"shared style", "GET", statuspage.Prefix + "base.css", nil, "", 200, "body", ""},
		{"style", "GET", statuspage.Prefix + "style.css", nil, "", 200, ".pipeline", ""},
		{"other files are not served", "GET", statuspage.Prefix + "index.html", nil, "", 404, "", "edge-01"},
		{"data by POST", "POST", statuspage.DataPath, map[string]string{"Cookie": cookie}, "", 404, "", "edge-01"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(t, tc.method, tc.path, tc.hdr, tc.body)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d\n%s", resp.StatusCode, tc.code, body)
			}
			if tc.want != "" && !strings.Contains(body, tc.want) {
				t.Fatalf("body lacks %q:\n%s", tc.want, body)
			}
			if tc.not != "" && strings.Contains(body, tc.not) {
				t.Fatalf("body leaks %q:\n%s", tc.not, body)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Fatalf("Content-Security-Policy %q", csp)
			}
			if !resp.Close {
				t.Fatal("the connection is kept open after the answer")
			}
		})
	}
	// Sign out ends the session.
	if resp, _ := f.do(t, "POST", statuspage.LogoutPath, map[string]string{"Cookie": cookie}, ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", statuspage.DataPath, map[string]string{"Cookie": cookie}, ""); resp.StatusCode != 401 {
		t.Fatalf("data after logout: %d", resp.StatusCode)
	}
	if strings.Contains(f.log.String(), token) || strings.Contains(f.log.String(), "badtok-XYZ") {
		t.Fatalf("the log holds what a client sent:\n%s", f.log)
	}
	if !strings.Contains(f.log.String(), "status page: sign-in with a wrong token") {
		t.Fatalf("a wrong sign-in is not logged:\n%s", f.log)
	}
}

func TestSessionsExpireAndAreBounded(t *testing.T) {
	f := newFixture(t)
	first := f.session(t)
	get := func(c *http.Cookie) int {
		resp, _ := f.do(t, "GET", statuspage.DataPath, map[string]string{"Cookie": c.Name + "=" + c.Value}, "")
		return resp.StatusCode
	}
	if get(first) != 200 {
		t.Fatal("a new session is refused")
	}
	f.clk.Advance(statuspage.SessionTTL + time.Second)
	if get(first) != 401 {
		t.Fatal("an expired session is accepted")
	}
	// More sign-ins than MaxSessions: the oldest sessions go, the newest stay.
	var cs []*http.Cookie
	for i := range statuspage.MaxSessions + 5 {
		cs = append(cs, f.session(t))
		f.clk.Advance(time.Duration(i+1) * time.Millisecond)
	}
	if get(cs[0]) != 401 {
		t.Fatal("the oldest session survived more than MaxSessions sign-ins")
	}
	if get(cs[len(cs)-1]) != 200 {
		t.Fatal("the newest session is refused")
	}
}

func TestViewRatesConditionsAndETA(t *testing.T) {
	f := newFixture(t)
	f.view = statuspage.View{Edge: "e",
		Pipelines: []statuspage.Pipeline{{Name: "p", State: "running", Steps: []statuspage.Step{{Name: "s", Kind: "source", Rows: 100}}},
			{Name: "q", State: "failed", Err: "boom"}},
		Sinks: []statuspage.Sink{
			{Pipeline: "p", Sink: "down", LinkUp: false, BacklogRows: 10},
			{Pipeline: "p", Sink: "draining", LinkUp: true, BacklogRows: 300, DrainRate: 100},
			{Pipeline: "p", Sink: "full", LinkUp: true, QuotaBytes: 100, QuotaUsed: 81, DeadLetterRows: 2},
		}}
	v := f.h.View()
	if got := v.Pipelines[0].Steps[0].RowsPerSec; got != 0 {
		t.Fatalf("first rate %v, want 0", got)
	}
	if v.Sinks[0].ETASeconds != -1 || v.Sinks[1].ETASeconds != 3 || v.Sinks[2].ETASeconds != 0 {
		t.Fatalf("ETAs %v %v %v", v.Sinks[0].ETASeconds, v.Sinks[1].ETASeconds, v.Sinks[2].ETASeconds)
	}
	var names []string
	for _, a := range v.Alerts {
		names = append(names, a.Asset+":"+a.Name)
	}
	want := "q:pipeline_failed p/down:link_down p/full:buffer_quota p/full:sink_dead_lettering"
	if strings.Join(names, " ") != want {
		t.Fatalf("alerts %q, want %q", strings.Join(names, " "), want)
	}
	since := v.Alerts[1].Since
	f.clk.Advance(2 * time.Second)
	f.view.Pipelines[0].Steps[0].Rows = 300
	v = f.h.View()
	if got := v.Pipelines[0].Steps[0].RowsPerSec; got != 100 {
		t.Fatalf("rate %v, want 100 rows/s", got)
	}
	if !v.Alerts[1].Since.Equal(since) {
		t.Fatalf("an alert's since moved from %v to %v", since, v.Alerts[1].Since)
	}
	// A cleared condition is gone, and raised again it starts anew.
	f.view.Sinks[0].LinkUp = true
	if v = f.h.View(); len(v.Alerts) != 3 {
		t.Fatalf("alerts after the link returned: %+v", v.Alerts)
	}
	f.clk.Advance(time.Second)
	f.view.Sinks[0].LinkUp = false
	if v = f.h.View(); !v.Alerts[1].Since.After(since) {
		t.Fatalf("a raised-again alert kept its old since %v", v.Alerts[1].Since)
	}
	// With the engine's health alerts the page derives none.
	f.view.HealthAlerts = true
	f.view.Alerts = []statuspage.Alert{{Asset: "p/down", Type: "health", Name: "link_down", Since: since}}
	if v = f.h.View(); len(v.Alerts) != 1 || !v.Alerts[0].Since.Equal(since) {
		t.Fatalf("alerts with health alerts: %+v", v.Alerts)
	}
	// Empty lists are JSON arrays, not null, for the page.
	f.view = statuspage.View{Edge: "e"}
	b, _ := json.Marshal(f.h.View())
	for _, k := range []string{`"pipelines":[]`, `"sinks":[]`, `"alerts":[]`, `"applies":[]`, `"warnings":[]`, `"commands":[]`, `"control":false`} {
		if !bytes.Contains(b, []byte(k)) {
			t.Fatalf("%s lacks %s", b, k)
		}
	}
}

func TestNewNeedsTokenAndSnapshot(t *testing.T) {
	if _, err := statuspage.New(statuspage.Options{Snapshot: func() statuspage.View { return statuspage.View{} }}); err == nil {
		t.Fatal("no token accepted")
	}
	if _, err := statuspage.New(statuspage.Options{Token: "t"}); err == nil {
		t.Fatal("no snapshot accepted")
	}
}

func BenchmarkView(b *testing.B) {
	v := statuspage.View{Edge: "e"}
	for p := range 4 {
		pl := statuspage.Pipeline{Name: fmt.Sprint("p", p), State: "running"}
		for s := range 8 {
			pl.Steps = append(pl.Steps, statuspage.Step{Name: fmt.Sprint("s", s), Kind: "step", Rows: int64(s)})
		}
		v.Pipelines = append(v.Pipelines, pl)
		v.Sinks = append(v.Sinks, statuspage.Sink{Pipeline: pl.Name, Sink: "cloud", BacklogRows: 5})
	}
	h, err := statuspage.New(statuspage.Options{Token: token, Snapshot: func() statuspage.View { return v }})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", statuspage.DataPath, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
