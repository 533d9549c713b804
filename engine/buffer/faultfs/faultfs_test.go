package faultfs_test

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer/faultfs"
)

func write(t *testing.T, f *faultfs.FS, name, data string, sync bool) {
	t.Helper()
	h, err := f.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := h.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

func content(f *faultfs.FS, name string) string {
	b, err := f.ReadFile(name)
	if err != nil {
		return "<missing>"
	}
	return string(b)
}

func TestCrashSemantics(t *testing.T) {
	f := faultfs.New()
	if err := f.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, f, "/d/synced", "hello", true)
	write(t, f, "/d/unsynced", "lost", false)
	if err := f.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	write(t, f, "/d/noentry", "data", true) // entry never synced
	// Append after the sync.
	h, _ := f.OpenFile("/d/synced", os.O_RDWR, 0)
	h.WriteAt([]byte(" world"), 5)
	h.Close()
	// An unsynced rename.
	if err := f.Rename("/d/unsynced", "/d/renamed"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode faultfs.CrashMode
		want map[string]string
	}{
		{faultfs.PowerLoss, map[string]string{"/d/synced": "hello", "/d/unsynced": "", "/d/renamed": "<missing>", "/d/noentry": "<missing>"}},
		{faultfs.TornWrites, map[string]string{"/d/synced": "hello wo", "/d/unsynced": "lo", "/d/renamed": "<missing>", "/d/noentry": "<missing>"}},
		{faultfs.ProcessCrash, map[string]string{"/d/synced": "hello world", "/d/unsynced": "<missing>", "/d/renamed": "lost", "/d/noentry": "data"}},
	} {
		c := tc.mode
		got := f.Crash(c)
		for name, want := range tc.want {
			if g := content(got, name); g != want {
				t.Errorf("%s: %s holds %q, want %q", c, name, g, want)
			}
		}
	}
}

func TestInjection(t *testing.T) {
	f := faultfs.New()
	f.MkdirAll("/d", 0o755)
	h, err := f.OpenFile("/d/x", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.FailAt(1, false) // the Write after the next operation
	if _, err := h.Size(); err != nil {
		t.Fatal(err)
	}
	n, err := h.Write([]byte("abcdef"))
	if !errors.Is(err, faultfs.ErrInjected) || n != 3 || content(f, "/d/x") != "abc" {
		t.Fatalf("failed write: %d, %v, %q", n, err, content(f, "/d/x"))
	}
	if err := h.Sync(); err != nil {
		t.Fatalf("a one-shot failure failed again: %v", err)
	}
	f.FailAt(0, true)
	for _, op := range []func() error{h.Sync, func() error { _, err := f.ReadDir("/d"); return err }, func() error { return f.SyncDir("/d") }} {
		if err := op(); !errors.Is(err, faultfs.ErrInjected) {
			t.Fatalf("sticky failure: %v", err)
		}
	}
	if got := f.Injected(); len(got) != 4 {
		t.Fatalf("injected %v", got)
	}
	f.FailAt(-1, false)
	if names, err := f.ReadDir("/d"); err != nil || !slices.Equal(names, []string{"x"}) {
		t.Fatalf("ReadDir: %v %v", names, err)
	}
	if _, err := f.OpenFile("/d/x", os.O_CREATE|os.O_EXCL|os.O_RDWR, 0); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("O_EXCL: %v", err)
	}
	if _, err := f.OpenFile("/nodir/x", os.O_CREATE|os.O_RDWR, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open in a missing directory: %v", err)
	}
	// A removed file stays readable through an open handle.
	f.Remove("/d/x")
	buf := make([]byte, 3)
	if _, err := h.ReadAt(buf, 0); err != nil || string(buf) != "abc" {
		t.Fatalf("read after remove: %q %v", buf, err)
	}
	h.Close()
	if err := h.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
}
