package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFlagValues: a bad flag value is a bad command line (64) with a
// message naming the flag, found before anything runs; a missing or
// unusable input named on a correct command line is a failure (1).
func TestFlagValues(t *testing.T) {
	dir := t.TempDir()
	pipe := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(pipe, []byte("sources: {s: {type: sim, turbines: 1, rows: 1, resume: false}}\nsinks: {o: {type: discard, input: s}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"run progress", []string{"run", pipe, "--data-dir", data, "--progress", "sideways"}, exitUsage, "--progress"},
		{"run progress ok", []string{"run", pipe, "--data-dir", data, "--progress", "never"}, 0, ""},
		{"run metrics-addr", []string{"run", pipe, "--data-dir", data, "--progress", "never", "--metrics-addr", "nonsense"}, exitUsage, "--metrics-addr"},
		{"run metrics-addr port", []string{"run", pipe, "--data-dir", data, "--progress", "never", "--metrics-addr", "127.0.0.1:99999"}, exitUsage, "--metrics-addr"},
		{"run metrics token device", []string{"run", pipe, "--data-dir", data, "--progress", "never", "--metrics-addr", "127.0.0.1:0", "--metrics-token-file", "/dev/zero"}, exitFailed, "not a regular file"},
		{"run metrics token fifo", []string{"run", pipe, "--data-dir", data, "--progress", "never", "--metrics-addr", "127.0.0.1:0", "--metrics-token-file", fifo}, exitFailed, "not a regular file"},
		{"sim devices", []string{"sim", "--devices", "-5"}, exitUsage, "--devices"},
		{"sim devices zero", []string{"sim", "--devices", "0"}, exitUsage, "--devices"},
		{"sim connections", []string{"sim", "--connections", "0"}, exitUsage, "--connections"},
		{"sim points", []string{"sim", "--points", "-1"}, exitUsage, "--points"},
		{"sim rate", []string{"sim", "--rate", "-1"}, exitUsage, "--rate"},
		{"sim qos", []string{"sim", "--qos", "2"}, exitUsage, "--qos"},
		{"sim bad", []string{"sim", "--bad", "1.5"}, exitUsage, "--bad"},
		{"sim replay missing file", []string{"sim", "--replay", filepath.Join(dir, "missing.csv"), "--device-key", "d"}, exitFailed, "missing.csv"},
		{"sim replay without key", []string{"sim", "--replay", filepath.Join(dir, "missing.csv")}, exitUsage, "--key-column"},
		{"replay missing input", []string{"replay", filepath.Join(dir, "missing.parquet"), "--type", "nats", "--set", "subject=x"}, exitFailed, "missing.parquet"},
		{"replay progress", []string{"replay", filepath.Join(dir, "missing.parquet"), "--progress", "sideways"}, exitUsage, "--progress"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			type result struct {
				code   int
				stderr string
			}
			done := make(chan result, 1)
			go func() {
				code, _, stderr := run(t, tt.args...)
				done <- result{code, stderr}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the command does not return") // the goroutine leaks: the test fails anyway
			}
			if r.code != tt.code {
				t.Errorf("exit %d, want %d:\n%s", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
		})
	}
}
