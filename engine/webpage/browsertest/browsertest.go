// Package browsertest drives the web pages in headless Chromium for
// tests: a tab that records console errors, and waits on the page's
// state.
package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// RequireEnv, set to 1 (as CI does), turns the skip for a missing
// Chromium into a failure.
const RequireEnv = "SLUICE_REQUIRE_BROWSER"

// Browser is a headless Chromium tab that records console errors and
// uncaught exceptions.
type Browser struct {
	// Ctx is the tab's context for chromedp calls.
	Ctx    context.Context
	mu     sync.Mutex
	errors []string
}

// Chromium returns the path of the system Chromium, or skips t without
// one (fails it when RequireEnv is set).
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("no Chromium on the PATH and %s=1 (apt-get install -y chromium)", RequireEnv)
	}
	t.Skipf("no Chromium on the PATH (apt-get install -y chromium); set %s=1 to fail instead", RequireEnv)
	return ""
}

// New starts a headless Chromium tab of 1280 × 900 pixels, or skips t
// without one (fails it when RequireEnv is set). The tab closes when t
// ends.
func New(t testing.TB) *Browser {
	t.Helper()
	return NewSized(t, 1280, 900)
}

// NewSized is New with a window of width × height pixels.
func NewSized(t testing.TB, width, height int64) *Browser {
	t.Helper()
	path := Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(int(width), int(height)))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &Browser{Ctx: ctx}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" || m.Type == "assert" {
				b.mu.Lock()
				b.errors = append(b.errors, m.String())
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); cancelAlloc(); <-done })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return b
}

// Errors returns the console errors and exceptions seen so far.
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// Go navigates to url.
func (b *Browser) Go(t testing.TB, url string) {
	t.Helper()
	if err := chromedp.Do(b.Ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigating to %s: %v", url, err)
	}
}

// Eval evaluates a JavaScript expression of type T.
func Eval[T any](t testing.TB, b *Browser, expr string) T {
	t.Helper()
	v, err := chromedp.Run(b.Ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// Wait evaluates expr until it is true, for at most 30 seconds.
func (b *Browser) Wait(t testing.TB, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := chromedp.Run(b.Ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			html, _ := chromedp.Run(b.Ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
			t.Fatalf("the page did not show %s within 30 s (%v):\n%s", what, err, html)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Screenshot writes a screenshot of the whole page to the PNG file out,
// making its directory.
func (b *Browser) Screenshot(t testing.TB, out string) {
	t.Helper()
	png, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", out, len(png))
}

// Hostile is markup that runs a script wherever a page turns data into
// HTML (or a link), each setting window.__xss to field.
func Hostile(field string) string {
	return fmt.Sprintf(`<img src=x onerror="window.__xss='%[1]s'">"><svg onload="window.__xss='%[1]s'"><script>window.__xss='%[1]s'</script><a href="javascript:window.__xss='%[1]s'">%[1]s</a>`, field)
}

// NoMarkupJS is true when the page holds no element Hostile data could
// have made (no image, svg, script in the body, link, frame or object)
// and none of it ran.
const NoMarkupJS = `window.__xss === undefined && document.querySelectorAll("body img, body svg, body script, a, iframe, object, embed").length === 0`

// AssertInert fails t unless the page shows the Hostile markup of every
// field as text (page names it in the failure) and none of it ran or made
// an element (NoMarkupJS, checked once an image's onerror could fire).
func (b *Browser) AssertInert(t testing.TB, page string, fields []string) {
	t.Helper()
	for _, field := range fields {
		if !Eval[bool](t, b, `document.body.textContent.includes(`+JSString(Hostile(field))+`)`) {
			t.Errorf("the %s does not show %s as text", page, field)
		}
	}
	time.Sleep(300 * time.Millisecond) // an image's onerror fires after its load fails
	if !Eval[bool](t, b, NoMarkupJS) {
		t.Fatalf("hostile data ran or made markup: __xss=%q", Eval[string](t, b, `String(window.__xss)`))
	}
}

// JSString quotes s as a JavaScript string literal.
func JSString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Attacker is another origin's page: a server on another port of
// 127.0.0.1 that answers page at / and is told at /done that the page has
// done its work (the page ends with fetch("/done")).
type Attacker struct {
	// URL is the attacker's address.
	URL  string
	done atomic.Bool
}

// NewAttacker starts an attacker serving page, on the host of the page
// under attack at pageURL (same-site, so SameSite=Strict sends its
// cookies). It stops when t ends.
func NewAttacker(t testing.TB, pageURL, page string) *Attacker {
	t.Helper()
	a := &Attacker{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/done" {
			a.done.Store(true)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, page)
	}))
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	if !strings.HasPrefix(a.URL, "http://127.0.0.1:") || !strings.HasPrefix(pageURL, "http://127.0.0.1:") {
		t.Fatalf("the servers %s and %s are not on one host", pageURL, a.URL)
	}
	return a
}

// Visit opens the attacker's page in b and waits, for at most 30
// seconds, until it is done, and 300 ms more for what it set off.
func (a *Attacker) Visit(t testing.TB, b *Browser) {
	t.Helper()
	b.Go(t, a.URL+"/")
	deadline := time.Now().Add(30 * time.Second)
	for !a.done.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the attacker's page did not finish")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
}
