// Package browsertest drives the web pages in headless Chromium for
// tests: a tab that records console errors, and waits on the page's
// state.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"sync"
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

// New starts a headless Chromium tab, or skips t without one (fails it
// when RequireEnv is set). The tab closes when t ends.
func New(t *testing.T) *Browser {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("no Chromium on the PATH and %s=1", RequireEnv)
		}
		t.Skipf("no Chromium on the PATH; set %s=1 to fail instead", RequireEnv)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
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
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
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
func (b *Browser) Go(t *testing.T, url string) {
	t.Helper()
	if err := chromedp.Do(b.Ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigating to %s: %v", url, err)
	}
}

// Eval evaluates a JavaScript expression of type T.
func Eval[T any](t *testing.T, b *Browser, expr string) T {
	t.Helper()
	v, err := chromedp.Run(b.Ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// Wait evaluates expr until it is true, for at most 30 seconds.
func (b *Browser) Wait(t *testing.T, what, expr string) {
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
