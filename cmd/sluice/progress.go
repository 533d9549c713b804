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
	// bytes: done and total count bytes (an upload), not rows.
	bytes bool
	start time.Time
	last  time.Time
	// stopPhase stops the phase on show (see phase).
	mu        sync.Mutex
	stopPhase func()
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
	fmt.Fprintf(&b, "%s [%s%s] %3.0f%%  ", p.label, strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac)
	if p.bytes {
		fmt.Fprintf(&b, "%s/%s  %s/s", ops.Bytes(done), ops.Bytes(total), ops.Bytes(int64(rate)))
	} else {
		fmt.Fprintf(&b, "%d/%d rows", done, total)
		if bytes >= 0 {
			fmt.Fprintf(&b, "  %s", ops.Bytes(bytes))
		}
		fmt.Fprintf(&b, "  %.0f rows/s", rate)
	}
	if done < total && rate > 0 {
		fmt.Fprintf(&b, "  ETA %s", ops.Age(time.Duration(float64(total-done)/rate*float64(time.Second))))
	}
	return b.String()
}

// reader returns r counting through the bar the bytes read of total.
func (p *progressBar) reader(r io.Reader, total int64) io.Reader {
	p.bytes = true
	return &progressReader{r: r, total: total, bar: p}
}

type progressReader struct {
	r        io.Reader
	n, total int64
	bar      *progressBar
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.bar.update(p.n, p.total, -1)
	return n, err
}

// phase shows what, and how long it has taken so far, once a second
// until done: a step whose progress is not known (a bundle being verified,
// dry-run and switched to). It may be called from another goroutine.
func (p *progressBar) phase(what string) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopPhase != nil {
		p.stopPhase()
	}
	start := time.Now()
	p.live.show(fmt.Sprintf("%s: %s", p.label, what))
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				p.live.show(fmt.Sprintf("%s: %s  %s", p.label, what, ops.Age(now.Sub(start).Round(time.Second))))
			}
		}
	}()
	p.stopPhase = func() { close(done); <-stopped }
}

// done removes the bar (and stops its phase); it may be called more than
// once.
func (p *progressBar) done() {
	if !p.on {
		return
	}
	p.mu.Lock()
	if p.stopPhase != nil {
		p.stopPhase()
		p.stopPhase = nil
	}
	p.mu.Unlock()
	p.live.clear()
}
