package uplink

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestCursorNotRegular: a cursor file that is a named pipe, or larger
// than a cursor can be, counts as no cursor (every kept report is sent
// again) and never blocks the edge's start.
func TestCursorNotRegular(t *testing.T) {
	dir := t.TempDir()
	u := &Uplink{opts: Options{Dir: dir}}
	if err := syscall.Mkfifo(filepath.Join(dir, CursorFile), 0o600); err != nil {
		t.Skip(err)
	}
	done := make(chan bool, 1)
	go func() { _, ok := u.readCursor(); done <- ok }()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("a named pipe read as a cursor")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a cursor that is a named pipe blocks")
	}
	if err := os.Remove(filepath.Join(dir, CursorFile)); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 8<<10)
	if err := os.WriteFile(filepath.Join(dir, CursorFile), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := u.readCursor(); ok {
		t.Fatal("an 8 KiB file read as a cursor")
	}
}
