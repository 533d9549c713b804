package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/sluice-edge/sluice/engine/buffer/ops"
)

// liveLine is stderr shared by log records and one live status line (a
// progress bar, rows and rows/s): a write clears the status line, writes,
// and draws the status line again under it, so that log lines never
// overwrite it nor end up glued to it.
type liveLine struct {
	mu   sync.Mutex
	w    io.Writer
	line string // the status line on show, "" when none
}

const clearLine = "\r\033[K"

// Write writes p above the status line.
func (l *liveLine) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.line == "" {
		return l.w.Write(p)
	}
	io.WriteString(l.w, clearLine)
	n, err := l.w.Write(p)
	io.WriteString(l.w, l.line)
	return n, err
}

// show replaces the status line with s.
func (l *liveLine) show(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.line = s
	io.WriteString(l.w, clearLine+s)
}

// clear removes the status line.
func (l *liveLine) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.line != "" {
		io.WriteString(l.w, clearLine)
	}
	l.line = ""
}

// errOut is stderr as the logger and the status lines share it.
func (g *globals) errOut() *liveLine {
	g.liveOnce.Do(func() { g.live = &liveLine{w: g.stderr} })
	return g.live
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// showLive reports whether a --progress mode shows a live line on w.
func showLive(w io.Writer, mode string) bool {
	return mode == "always" || mode == "auto" && isTerminal(w)
}

// progressBar draws the progress of a long operation (rows, bytes, rate
// and ETA) on the live line, when shown.
type progressBar struct {
	live  *liveLine
	label string
	on    bool
	start time.Time
	last  time.Time
}

// newProgressBar returns a bar for g's stderr: shown with --progress
// always, or auto on a terminal; quiet otherwise.
func newProgressBar(g *globals, mode, label string) *progressBar {
	return &progressBar{live: g.errOut(), label: label, on: showLive(g.stderr, mode), start: time.Now()}
}

// update shows done of total rows and the bytes handled so far (bytes < 0:
// unknown); at most ten times a second, and always at the end.
func (p *progressBar) update(done, total, bytes int64) {
	if !p.on {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = now
	p.live.show(p.render(done, total, bytes, now.Sub(p.start)))
}

// render formats one state of the bar.
func (p *progressBar) render(done, total, bytes int64, elapsed time.Duration) string {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = min(1, float64(done)/float64(total))
	}
	n := int(frac * width)
	rate := float64(done) / max(elapsed.Seconds(), 1e-9)
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s%s] %3.0f%%  %d/%d rows", p.label, strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac, done, total)
	if bytes >= 0 {
		fmt.Fprintf(&b, "  %s", ops.Bytes(bytes))
	}
	fmt.Fprintf(&b, "  %.0f rows/s", rate)
	if done < total && rate > 0 {
		fmt.Fprintf(&b, "  ETA %s", ops.Age(time.Duration(float64(total-done)/rate*float64(time.Second))))
	}
	return b.String()
}

// done removes the bar.
func (p *progressBar) done() {
	if p.on {
		p.live.clear()
	}
}
