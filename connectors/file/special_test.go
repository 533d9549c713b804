//go:build unix

package file_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-edge/sluice/engine"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSourceSpecialFiles: a named pipe is read as it is written, waiting
// (and saying so) for a writer; a device is refused; a line that never
// ends is counted once it passes max_line; and cancelling the context
// stops the source promptly in every case.
func TestSourceSpecialFiles(t *testing.T) {
	const decl = "format: csv\nmax_line: 1000\nschema: {fields: {v: float64}}\n"
	cases := []struct {
		name    string
		path    func(t *testing.T, dir string) string
		feed    func(t *testing.T, path string, stop <-chan struct{}) // writes into the pipe until stop
		waitFor func(e *env, rows func() int64) bool                  // before cancelling
		wantErr string
	}{
		{name: "pipe without a writer", path: mkfifo,
			waitFor: func(e *env, _ func() int64) bool {
				return strings.Contains(e.logs.String(), "waiting for a writer")
			}},
		{name: "pipe with an idle writer", path: mkfifo,
			feed: func(t *testing.T, path string, stop <-chan struct{}) {
				w := openWriter(t, path)
				defer w.Close()
				_, _ = w.WriteString("time,v\n1,1\n2,2\n")
				<-stop
			},
			waitFor: func(_ *env, rows func() int64) bool { return rows() == 2 }},
		{name: "pipe with a line that never ends", path: mkfifo,
			feed: func(t *testing.T, path string, stop <-chan struct{}) {
				w := openWriter(t, path)
				defer w.Close()
				_, _ = w.WriteString("time,v\n1,1\n")
				zeros := make([]byte, 64<<10)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := w.Write(zeros); err != nil {
						return // the reader is gone
					}
				}
			},
			waitFor: func(e *env, rows func() int64) bool { return e.counters.Snapshot()["bad_lines"] == 1 && rows() == 1 }},
		{name: "character device", path: func(*testing.T, string) string { return "/dev/zero" },
			wantErr: "/dev/zero: not a regular file or a named pipe (a character device)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.batch = engine.BatchPolicy{Size: 1}
			path := c.path(t, e.dir)
			s, err := e.build(t, "path: "+path+"\n"+decl)
			if err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			fed := make(chan struct{})
			go func() {
				defer close(fed)
				if c.feed != nil {
					c.feed(t, path, stop)
				}
			}()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var rows atomicRows
			done := make(chan error, 1)
			go func() {
				done <- s.Run(ctx, func(rec arrow.RecordBatch, _ *engine.Ack) error {
					rows.add(rec.NumRows())
					rec.Release()
					return nil
				})
			}()
			if c.waitFor != nil {
				eventually(t, "the source to get going", func() bool { return c.waitFor(e, rows.load) })
			}
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the source does not stop when its context is cancelled")
			}
			close(stop)
			<-fed
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("Run: %v, want %q", err, c.wantErr)
			}
			if strings.Contains(c.name, "never ends") && !strings.Contains(e.logs.String(), "line longer than 1000 bytes") {
				t.Errorf("logs:\n%s", e.logs)
			}
		})
	}
}

func mkfifo(t *testing.T, dir string) string {
	p := filepath.Join(dir, "pipe.csv")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// openWriter opens the writing end of a named pipe once the source has
// opened the reading end.
func openWriter(t *testing.T, path string) *os.File {
	var w *os.File
	eventually(t, "a reader on the pipe", func() bool {
		f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if errors.Is(err, syscall.ENXIO) {
			return false // no reader yet
		}
		if err != nil {
			t.Error(err)
			return true
		}
		w = f
		return true
	})
	if w != nil {
		// Blocking writes: the test writes as fast as the source reads.
		if err := syscall.SetNonblock(int(w.Fd()), false); err != nil {
			t.Error(err)
		}
	}
	return w
}

// atomicRows counts rows emitted from the source's goroutine.
type atomicRows struct{ n atomic.Int64 }

func (r *atomicRows) add(n int64) { r.n.Add(n) }
func (r *atomicRows) load() int64 { return r.n.Load() }
