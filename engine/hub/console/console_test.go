package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/engine/hub/console"
	"github.com/sluice-edge/sluice/engine/webpage/webpagetest"
)

// TestConsoleAuthAndAPI: the console is a login form without the token;
// a sign-in gives a session cookie; with the session or the bearer the
// page and the API's GET endpoints answer through api/; nothing else of
// the API does (no POST, no path outside v1/).
func TestConsoleAuthAndAPI(t *testing.T) {
	const token = "console-token-0123456789"
	var seen []string
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.RequestURI())
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[{"id":"edge-7"}]`)
	})
	h, err := console.New(console.Options{Token: token, API: api})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	do := func(method, path string, hdr map[string]string, body string) (*http.Response, string) {
		t.Helper()
		return webpagetest.Do(t, method, srv.URL+path, hdr, body)
	}
	resp, _ := do("GET", console.Prefix+"?token="+url.QueryEscape(token), nil, "")
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == console.CookieName {
			cookie = c.Name + "=" + c.Value
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != console.Prefix {
				t.Fatalf("cookie %+v", c)
			}
		}
	}
	if resp.StatusCode != http.StatusSeeOther || cookie == "" {
		t.Fatalf("sign-in: %d, cookie %q", resp.StatusCode, cookie)
	}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for _, c := range []struct {
		name, method, path string
		hdr                map[string]string
		body               string
		code               int
		has, lacks         string
	}{
		{"page without auth is the login form", "GET", console.Prefix, nil, "", 401, `name="token"`, "edge-7"},
		{"page with the session", "GET", console.Prefix, map[string]string{"Cookie": cookie}, "", 200, `src="app.js"`, ""},
		{"API without auth", "GET", console.APIPrefix + "v1/edges", nil, "", 401, "unauthorized", "edge-7"},
		{"API with a wrong bearer", "GET", console.APIPrefix + "v1/edges", map[string]string{"Authorization": "Bearer nope"}, "", 401, "", "edge-7"},
		{"API with a forged cookie", "GET", console.APIPrefix + "v1/edges", map[string]string{"Cookie": console.CookieName + "=" + strings.Repeat("b", 64)}, "", 401, "", "edge-7"},
		{"API with the session", "GET", console.APIPrefix + "v1/edges?limit=5", map[string]string{"Cookie": cookie}, "", 200, "edge-7", ""},
		{"API with the bearer", "GET", console.APIPrefix + "v1/alerts", map[string]string{"Authorization": "Bearer " + token}, "", 200, "edge-7", ""},
		{"API POST is not forwarded", "POST", console.APIPrefix + "v1/releases", map[string]string{"Cookie": cookie}, "x", 404, "", "edge-7"},
		{"only v1 paths", "GET", console.APIPrefix + "metrics", map[string]string{"Cookie": cookie}, "", 404, "", "edge-7"},
		{"login form with a wrong token", "POST", console.Prefix + "login", form, "token=wrong", 401, `name="token"`, ""},
		{"login form with the token", "POST", console.Prefix + "login", form, "token=" + url.QueryEscape(token), 303, "", ""},
		{"script", "GET", console.Prefix + "app.js", nil, "", 200, "getJSON(", "edge-7"},
		{"shared script", "GET", console.Prefix + "common.js", nil, "", 200, "fetch(", ""},
		{"styles", "GET", console.Prefix + "base.css", nil, "", 200, "body", ""},
		{"other files are not served", "GET", console.Prefix + "index.html", nil, "", 404, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(c.method, c.path, c.hdr, c.body)
			if resp.StatusCode != c.code || !strings.Contains(body, c.has) || c.lacks != "" && strings.Contains(body, c.lacks) {
				t.Fatalf("%d %q, want %d with %q without %q", resp.StatusCode, body, c.code, c.has, c.lacks)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Fatalf("CSP %q", csp)
			}
		})
	}
	if strings.Join(seen, ",") != "GET /v1/edges?limit=5,GET /v1/alerts" {
		t.Fatalf("the API saw %v", seen)
	}
}

// TestConsoleAPIAttacks: what reaches the API through api/ from a
// signed-in browser or a client with the token: no path outside v1/ by
// dot segments (plain, escaped, doubled slashes, backslashes), escapes
// kept inside their segment, no read by another origin's page (another
// port of the same host included), and no answer a cache may keep.
func TestConsoleAPIAttacks(t *testing.T) {
	const token = "console-token-0123456789"
	var seen []string
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.EscapedPath()+" "+r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"fleet":"secret"}`)
	})
	h, err := console.New(console.Options{Token: token, API: api})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h) // no ServeMux in front: the console cleans nothing away itself
	defer srv.Close()
	bearer := map[string]string{"Authorization": "Bearer " + token}
	for _, c := range []struct {
		name, path string
		hdr        map[string]string
		code       int
	}{
		{"dot segments", "/console/api/v1/../metrics", bearer, 404},
		{"escaped dot segments", "/console/api/v1/%2e%2e/metrics", bearer, 404},
		{"escaped slashes and dots", "/console/api/v1/edges%2F..%2F..%2Fmetrics", bearer, 404},
		{"doubled slash", "/console/api/v1//edges", bearer, 404},
		{"dot segment at the end", "/console/api/v1/edges/.", bearer, 404},
		{"backslash", "/console/api/v1/edges/..%5C..%5Cmetrics", bearer, 404},
		{"NUL", "/console/api/v1/edges%00", bearer, 404},
		{"another site's page", "/console/api/v1/edges", map[string]string{"Authorization": "Bearer " + token, "Sec-Fetch-Site": "cross-site"}, 403},
		{"another port's page", "/console/api/v1/edges/e1/logs?wait=5m", map[string]string{"Authorization": "Bearer " + token, "Sec-Fetch-Site": "same-site"}, 403},
		{"an escaped slash stays in its segment", "/console/api/v1/edges/a%2Fb/logs?limit=1", bearer, 200},
		{"the page's read", "/console/api/v1/alerts?limit=500", map[string]string{"Authorization": "Bearer " + token, "Sec-Fetch-Site": "same-origin"}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			seen = nil
			req, err := http.NewRequest("GET", srv.URL+c.path, nil) // the path sent as written
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.code {
				t.Fatalf("%d %q, want %d; the API saw %v", resp.StatusCode, b, c.code, seen)
			}
			if c.code != 200 && (len(seen) > 0 || strings.Contains(string(b), "secret")) {
				t.Fatalf("a refused read reached the API: %v %q", seen, b)
			}
			if c.code == 200 && resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("Cache-Control %q on the fleet's data", resp.Header.Get("Cache-Control"))
			}
		})
	}
	want := "GET /v1/edges/a%2Fb/logs /v1/edges/a/b/logs"
	seen = nil
	req, _ := http.NewRequest("GET", srv.URL+"/console/api/v1/edges/a%2Fb/logs", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	if len(seen) != 1 || seen[0] != want {
		t.Fatalf("the API saw %v, want %q", seen, want)
	}
}
