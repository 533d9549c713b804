package webpage

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

const testToken = "webpage-token-0123456789abcdef"

// testSite is a Site under /p/ whose data path /p/data answers "secret"
// to a request Check lets through.
func testSite(t *testing.T) (*Site, http.Handler, *command.ManualClock, *enginetest.LogBuffer) {
	t.Helper()
	clk := command.NewManualClock(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	logs := &enginetest.LogBuffer{}
	assets := fstest.MapFS{
		PageFile:   {Data: []byte(`<p>page</p>`)},
		ScriptFile: {Data: []byte(`// script`)}, StyleFile: {Data: []byte(`/* style */`)},
	}
	s, err := New(Options{Name: "test page", Prefix: "/p/", Cookie: "sid", Token: testToken, Assets: assets,
		Log: slog.New(slog.NewTextHandler(logs, nil)), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Serve(w, r) {
			return
		}
		if r.URL.Path != "/p/data" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		if !s.Check(w, r) {
			return
		}
		_, _ = io.WriteString(w, "secret")
	})
	return s, h, clk, logs
}

// call runs one request against h from remote.
func call(h http.Handler, remote, method, path string, hdr map[string]string, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://127.0.0.1:7468"+path, strings.NewReader(body))
	r.RemoteAddr = remote
	if method == http.MethodPost {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func sessionOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == "sid" && c.Value != "" {
			return "sid=" + c.Value
		}
	}
	t.Fatalf("no session cookie: %d %v", w.Code, w.Header())
	return ""
}

// TestCrossSiteRequestsRefused: another origin's page — another site, or
// another port of the same host, which SameSite does not tell apart —
// cannot make a signed-in browser sign out, sign in, or read the page's
// data; a plain navigation to the page still shows it (or the login form).
func TestCrossSiteRequestsRefused(t *testing.T) {
	_, h, _, _ := testSite(t)
	const me = "192.0.2.7:40000"
	cookie := sessionOf(t, call(h, me, "GET", "/p/?token="+url.QueryEscape(testToken), nil, ""))
	withCookie := func(kv ...string) map[string]string {
		m := map[string]string{"Cookie": cookie}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, c := range []struct {
		name, method, path string
		hdr                map[string]string
		body               string
		code               int
	}{
		{"logout from another site", "POST", "/p/logout", withCookie("Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"), "", 403},
		{"logout from another port of the host", "POST", "/p/logout", withCookie("Sec-Fetch-Site", "same-site", "Origin", "http://127.0.0.1:8080"), "", 403},
		{"logout with a foreign Origin only", "POST", "/p/logout", withCookie("Origin", "http://evil.example"), "", 403},
		{"sign-in from another site", "POST", "/p/login", map[string]string{"Sec-Fetch-Site": "cross-site"}, "token=" + url.QueryEscape(testToken), 403},
		{"data read by another site", "GET", "/p/data", withCookie("Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors"), "", 403},
		{"data read by another port of the host", "GET", "/p/data", withCookie("Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "cors"), "", 403},
		{"data read by a link from another site", "GET", "/p/data", withCookie("Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate"), "", 403},
		{"data read by the page", "GET", "/p/data", withCookie("Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors"), "", 200},
		{"data typed into the address bar", "GET", "/p/data", withCookie("Sec-Fetch-Site", "none", "Sec-Fetch-Mode", "navigate"), "", 200},
		{"data read by a client that is no browser", "GET", "/p/data", map[string]string{"Authorization": "Bearer " + testToken}, "", 200},
		{"the page by a link from another site", "GET", "/p/", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, "", 401},
		{"the page by the signed-in browser", "GET", "/p/", withCookie("Sec-Fetch-Site", "same-origin"), "", 200},
		{"logout by the page", "POST", "/p/logout", withCookie("Sec-Fetch-Site", "same-origin", "Origin", "http://127.0.0.1:7468"), "", 303},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := call(h, me, c.method, c.path, c.hdr, c.body)
			if w.Code != c.code {
				t.Fatalf("%d %q, want %d", w.Code, w.Body.String(), c.code)
			}
			if c.code == 403 && (strings.Contains(w.Body.String(), "secret") || len(w.Result().Cookies()) > 0) {
				t.Fatalf("a refused request got %q, cookies %v", w.Body.String(), w.Result().Cookies())
			}
		})
	}
	// Only the page's own logout ended the session.
	if w := call(h, me, "GET", "/p/data", map[string]string{"Cookie": cookie}, ""); w.Code != 401 {
		t.Fatalf("data after the page's logout: %d", w.Code)
	}
}

// TestWrongTokensThrottled: an address that sent maxFailures wrong tokens
// (sign-in form, ?token=, bearer) is refused unchecked, the right token
// too, until it earns one try per failureEvery; other addresses are not;
// the log holds one line per wrong token until the block, then one.
func TestWrongTokensThrottled(t *testing.T) {
	s, h, clk, logs := testSite(t)
	const attacker, operator = "198.51.100.9:5555", "192.0.2.7:40000"
	for i := range maxFailures {
		var w *httptest.ResponseRecorder
		switch i % 4 {
		case 3:
			w = call(h, attacker, "GET", "/p/", map[string]string{"Authorization": "Bearer guess-" + fmt.Sprint(i)}, "")
		case 0:
			w = call(h, attacker, "POST", "/p/login", nil, "token=guess-"+fmt.Sprint(i))
		case 1:
			w = call(h, attacker, "GET", "/p/?token=guess-"+fmt.Sprint(i), nil, "")
		default:
			w = call(h, attacker, "GET", "/p/data", map[string]string{"Authorization": "Bearer guess-" + fmt.Sprint(i)}, "")
		}
		if w.Code != 401 {
			t.Fatalf("wrong token %d: %d", i, w.Code)
		}
	}
	for range 100 {
		if w := call(h, attacker, "POST", "/p/login", nil, "token=guess"); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
			t.Fatalf("a guess past the limit: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
		}
	}
	if w := call(h, attacker, "POST", "/p/login", nil, "token="+url.QueryEscape(testToken)); w.Code != http.StatusTooManyRequests {
		t.Fatalf("the right token from a blocked address was checked: %d", w.Code)
	}
	if w := call(h, attacker, "GET", "/p/data", map[string]string{"Authorization": "Bearer " + testToken}, ""); w.Code != http.StatusTooManyRequests {
		t.Fatalf("the right bearer from a blocked address was checked: %d", w.Code)
	}
	if w := call(h, attacker, "GET", "/p/", map[string]string{"Authorization": "Bearer " + testToken}, ""); w.Code != http.StatusTooManyRequests || strings.Contains(w.Body.String(), "page") {
		t.Fatalf("the page for the right bearer from a blocked address: %d", w.Code)
	}
	if w := call(h, operator, "POST", "/p/login", nil, "token="+url.QueryEscape(testToken)); w.Code != http.StatusSeeOther {
		t.Fatalf("another address is blocked too: %d", w.Code)
	}
	clk.Advance(failureEvery)
	if w := call(h, attacker, "POST", "/p/login", nil, "token="+url.QueryEscape(testToken)); w.Code != http.StatusSeeOther {
		t.Fatalf("after failureEvery: %d", w.Code)
	}
	if n := strings.Count(logs.String(), "wrong token"); n > maxFailures+1 {
		t.Fatalf("%d log lines for wrong tokens:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), "guess") || strings.Contains(logs.String(), testToken) {
		t.Fatalf("the log holds a token:\n%s", logs)
	}
	// The table of addresses is bounded.
	for i := range 3 * maxThrottled {
		call(h, fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255), "POST", "/p/login", nil, "token=guess")
	}
	s.mu.Lock()
	n := len(s.failures)
	s.mu.Unlock()
	if n > maxThrottled+1 {
		t.Fatalf("%d addresses held, want at most %d", n, maxThrottled+1)
	}
}

// TestSessionCookie: over TLS the cookie is Secure; a sign-in drops the
// session the browser held before (no fixation, no pile of sessions).
func TestSessionCookie(t *testing.T) {
	_, h, _, _ := testSite(t)
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test's own server
	resp, err := client.Get(srv.URL + "/p/?token=" + url.QueryEscape(testToken))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var c *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == "sid" {
			c = k
		}
	}
	if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/p/" {
		t.Fatalf("cookie over TLS %+v: want Secure, HttpOnly, SameSite=Strict, Path /p/", c)
	}

	const me = "192.0.2.7:40000"
	old := sessionOf(t, call(h, me, "GET", "/p/?token="+url.QueryEscape(testToken), nil, ""))
	if w := call(h, me, "GET", "/p/data", map[string]string{"Cookie": old}, ""); w.Code != 200 {
		t.Fatalf("session: %d", w.Code)
	}
	fresh := sessionOf(t, call(h, me, "POST", "/p/login", map[string]string{"Cookie": old}, "token="+url.QueryEscape(testToken)))
	if fresh == old {
		t.Fatal("a sign-in kept the session id")
	}
	if w := call(h, me, "GET", "/p/data", map[string]string{"Cookie": old}, ""); w.Code != 401 {
		t.Fatalf("the session before the sign-in: %d", w.Code)
	}
	if w := call(h, me, "GET", "/p/data", map[string]string{"Cookie": fresh}, ""); w.Code != 200 {
		t.Fatalf("the new session: %d", w.Code)
	}
}

// TestTossedCookies: a page on another port of the same host can set
// cookies of the page's name (cookies do not tell ports apart), with a
// longer path so that the browser sends them first; the session the
// browser also sends still counts, and a logout ends it.
func TestTossedCookies(t *testing.T) {
	_, h, _, _ := testSite(t)
	const me = "192.0.2.7:40000"
	real := sessionOf(t, call(h, me, "GET", "/p/?token="+url.QueryEscape(testToken), nil, ""))
	tossed := strings.Repeat("sid="+strings.Repeat("0", 64)+"; ", 20) + "sid=junk; " + real
	if w := call(h, me, "GET", "/p/data", map[string]string{"Cookie": tossed}, ""); w.Code != 200 {
		t.Fatalf("data with tossed cookies before the session: %d", w.Code)
	}
	if w := call(h, me, "POST", "/p/logout", map[string]string{"Cookie": tossed}, ""); w.Code != 303 {
		t.Fatalf("logout: %d", w.Code)
	}
	if w := call(h, me, "GET", "/p/data", map[string]string{"Cookie": real}, ""); w.Code != 401 {
		t.Fatalf("the session after a logout with tossed cookies: %d", w.Code)
	}
}

// TestHeaders: every answer forbids framing, inline script and sniffing
// and sends no referrer; answers with data or the page are not stored.
func TestHeaders(t *testing.T) {
	_, h, _, _ := testSite(t)
	const me = "192.0.2.7:40000"
	cookie := sessionOf(t, call(h, me, "GET", "/p/?token="+url.QueryEscape(testToken), nil, ""))
	for _, c := range []struct {
		method, path, cookie string
		store                bool
	}{
		{"GET", "/p/", cookie, false}, {"GET", "/p/", "", false}, {"GET", "/p/data", "", false},
		{"GET", "/p/data", cookie + "x", false}, {"POST", "/p/login", "", false}, {"GET", "/p/app.js", "", true},
	} {
		w := call(h, me, c.method, c.path, map[string]string{"Cookie": c.cookie}, "token=wrong")
		hdr := w.Header()
		csp := hdr.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self';", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s %s: CSP %q lacks %q", c.method, c.path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s %s: CSP %q", c.method, c.path, csp)
		}
		if hdr.Get("X-Frame-Options") != "DENY" || hdr.Get("X-Content-Type-Options") != "nosniff" || hdr.Get("Referrer-Policy") != "no-referrer" ||
			hdr.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s %s: headers %v", c.method, c.path, hdr)
		}
		if !c.store && hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: Cache-Control %q", c.method, c.path, hdr.Get("Cache-Control"))
		}
	}
}

// TestSessionBoundToAddress: cookies do not tell ports apart, so a
// service on another port of the page's host receives the session cookie
// whenever the browser asks it for a path under the page's prefix; the
// session it steals does not work from another address than the one
// that signed in (an IPv6 address's /64).
func TestSessionBoundToAddress(t *testing.T) {
	_, h, _, _ := testSite(t)
	for _, c := range []struct {
		name, signIn, replay string
		code                 int
	}{
		{"the same address", "192.0.2.7:40000", "192.0.2.7:40001", 200},
		{"another address", "192.0.2.7:40000", "198.51.100.9:5555", 401},
		{"the same IPv6 /64", "[2001:db8:1:2::7]:40000", "[2001:db8:1:2::99]:1", 200},
		{"another IPv6 /64", "[2001:db8:1:2::7]:40000", "[2001:db8:1:3::7]:1", 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			cookie := sessionOf(t, call(h, c.signIn, "GET", "/p/?token="+url.QueryEscape(testToken), nil, ""))
			if w := call(h, c.replay, "GET", "/p/data", map[string]string{"Cookie": cookie}, ""); w.Code != c.code {
				t.Fatalf("the session from %s: %d, want %d", c.replay, w.Code, c.code)
			}
		})
	}
}

// TestRefusalsLogBounded: refused requests from anywhere (no token, other
// origins, wrong tokens from many addresses) cannot flood the log — on an
// edge the status page shows the log's newest warnings, which a flood
// would push out: at most MaxRefusalLogs lines at once, then one per
// RefusalLogEvery, saying how many went unlogged.
func TestRefusalsLogBounded(t *testing.T) {
	_, h, clk, logs := testSite(t)
	for i := range 1000 {
		remote := fmt.Sprintf("10.0.%d.%d:1", i>>8, i&255)
		switch i % 3 {
		case 0:
			call(h, remote, "GET", "/p/data", nil, "")
		case 1:
			call(h, remote, "GET", "/p/data", map[string]string{"Sec-Fetch-Site": "cross-site"}, "")
		default:
			call(h, remote, "POST", "/p/login", nil, "token=guess")
		}
	}
	if n := strings.Count(logs.String(), "\n"); n > MaxRefusalLogs {
		t.Fatalf("1000 refused requests logged %d lines, want at most %d:\n%s", n, MaxRefusalLogs, logs)
	}
	clk.Advance(RefusalLogEvery)
	call(h, "10.9.9.9:1", "GET", "/p/data", nil, "")
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "unlogged=") {
		t.Fatalf("the line after the flood does not count the unlogged refusals: %s", last)
	}
}

// TestCrossSiteCannotLockOut: another origin's page cannot spend the
// operator's wrong-token tries by making the browser sign in with wrong
// tokens (an <img> of ?token=, a posted form): such sign-ins are refused
// unchecked and not counted, and the operator then signs in.
func TestCrossSiteCannotLockOut(t *testing.T) {
	_, h, _, _ := testSite(t)
	const me = "192.0.2.7:40000"
	for i := range 3 * maxFailures {
		if w := call(h, me, "GET", "/p/?token=guess", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, ""); w.Code != 403 {
			t.Fatalf("a sign-in by another site's image: %d", w.Code)
		}
		if w := call(h, me, "GET", "/p/?token=guess", map[string]string{"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate"}, ""); w.Code != 403 {
			t.Fatalf("a sign-in by another port's link: %d", w.Code)
		}
		if w := call(h, me, "POST", "/p/login", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, "token=guess"+fmt.Sprint(i)); w.Code != 403 {
			t.Fatalf("a sign-in by another site's form: %d", w.Code)
		}
	}
	if w := call(h, me, "GET", "/p/?token="+url.QueryEscape(testToken), map[string]string{"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}, ""); w.Code != 303 {
		t.Fatalf("the operator's sign-in after another origin's tries: %d", w.Code)
	}
}
