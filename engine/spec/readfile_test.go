//go:build unix

package spec_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/spec"
)

// TestReadConfigFile: a configuration file is read whole up to the limit;
// a larger file, a named pipe without a writer, a device and a directory
// are refused at once with the file and the reason.
func TestReadConfigFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small.yaml")
	big := filepath.Join(dir, "big.yaml")
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := os.WriteFile(small, []byte("pipelines: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, make([]byte, 2048), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, want string
	}{
		{"regular", small, ""},
		{"too large", big, "2048 bytes, larger than the 1 KiB limit"},
		{"named pipe", fifo, "not a regular file (a named pipe)"},
		{"device", "/dev/zero", "not a regular file (a character device)"},
		{"directory", dir, "not a regular file (a directory)"},
		{"missing", filepath.Join(dir, "nope.yaml"), "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan struct{})
			var data []byte
			var err error
			go func() {
				defer close(done)
				data, err = spec.ReadConfigFile(c.path, 1024)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("ReadConfigFile blocks") // the goroutine leaks: the test fails anyway
			}
			if c.want == "" {
				if err != nil || string(data) != "pipelines: {}\n" {
					t.Fatalf("got %q, %v", data, err)
				}
				return
			}
			var pe *fs.PathError
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &pe) || pe.Path != c.path {
				t.Fatalf("got %v, want a path error for %s with %q", err, c.path, c.want)
			}
		})
	}
}

// TestReadConfigFileLimit is the default limit: a file of exactly
// MaxPipelineBytes is read, one byte more is refused.
func TestReadConfigFileLimit(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{spec.MaxPipelineBytes, spec.MaxPipelineBytes + 1} {
		p := filepath.Join(dir, "p.yaml")
		if err := os.WriteFile(p, make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := spec.ReadConfigFile(p, spec.MaxPipelineBytes)
		if (err == nil) != (n <= spec.MaxPipelineBytes) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
}
