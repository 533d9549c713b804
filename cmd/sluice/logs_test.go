package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/logfile"
)

// readLogFiles returns the content of the log files under dataDir.
func readLogFiles(t *testing.T, dataDir string) string {
	t.Helper()
	files, err := logfile.Files(logfile.Dir(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

// TestRunWritesLogFileAndLogsQueriesIt: sluice run writes its records to
// <data-dir>/logs (info and above even when stderr shows only warnings),
// and sluice logs finds them by level, pipeline, component and pattern.
func TestRunWritesLogFileAndLogsQueriesIt(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte("name: wind\nsources: {s: {type: sim, turbines: 2, rows: 5, resume: false}}\nsinks: {o: {type: discard, input: s}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if code, _, stderr := run(t, "run", "--log-level", "warn", "--progress", "never", "--data-dir", data, file); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, stderr)
	}
	if content := readLogFiles(t, data); !strings.Contains(content, `"msg":"finished"`) {
		t.Fatalf("log file lacks the run's info records:\n%s", content)
	}
	tests := []struct {
		name      string
		args      []string
		code      int
		has, lack []string
	}{
		{"all as json", []string{"--json"}, 0, []string{`"msg":"running"`, `"msg":"finished"`}, nil},
		{"text", nil, 0, []string{" INFO  finished rows=10"}, []string{`"msg"`}},
		{"warnings only", []string{"--level", "warn"}, 0, nil, []string{"finished"}},
		{"pattern", []string{"--grep", `"rows":10\b`, "--json"}, 0, []string{`"msg":"finished"`}, []string{`"msg":"running"`}},
		{"pipeline and component", []string{"--pipeline", "wind", "--component", "o", "--json"}, 0, []string{`"component":"o"`}, []string{`"component":"s"`, `"msg":"finished"`}},
		{"window in the future", []string{"--since", "2999-01-01T00:00:00Z"}, 0, nil, []string{"finished"}},
		{"last hour", []string{"--since", "1h", "--limit", "1", "--json"}, 0, []string{`"msg":"finished"`}, []string{`"msg":"running"`}},
		{"bad level", []string{"--level", "loud"}, exitUsage, nil, nil},
		{"bad time", []string{"--since", "yesterday-ish"}, exitUsage, nil, nil},
		{"bad pattern", []string{"--grep", "(("}, exitUsage, nil, nil},
		{"bad limit", []string{"--limit", "0"}, exitUsage, nil, nil},
		{"until before since", []string{"--since", "1h", "--until", "2h"}, exitUsage, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, append([]string{"logs", "--data-dir", data}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, stdout, stderr)
			}
			for _, s := range tt.has {
				if !strings.Contains(stdout, s) {
					t.Errorf("output lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.lack {
				if strings.Contains(stdout, s) {
					t.Errorf("output holds %q:\n%s", s, stdout)
				}
			}
		})
	}
	if code, _, _ := run(t, "logs", "--data-dir", filepath.Join(dir, "none")); code != exitFailed {
		t.Errorf("a data directory without a log: exit %d, want %d", code, exitFailed)
	}
}

// TestLogsSkipsDamagedLines: a record cut short by a kill and garbage in
// the log file are skipped and counted; the records around them show.
func TestLogsSkipsDamagedLines(t *testing.T) {
	data := t.TempDir()
	dir := logfile.Dir(data)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	content := `{"time":"2026-01-01T00:00:00Z","level":"ERROR","msg":"first"}` + "\n\x00\x01garbage\x1b[2J\n" +
		strings.Repeat("z", 100<<10) + "\n" + `{"time":"2026-01-01T00:00:01Z","level":"ERROR","msg":"second"}` + "\n" + `{"time":"2026-01-01T00:00:02Z","level":"ERROR","msg":"cut`
	if err := os.WriteFile(filepath.Join(dir, logfile.Current), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "logs", "--data-dir", data, "--level", "error")
	if code != 0 || !strings.Contains(stdout, "first") || !strings.Contains(stdout, "second") || strings.Contains(stdout, "cut") || strings.Contains(stdout, "\x1b") {
		t.Fatalf("exit %d\n%s", code, stdout)
	}
	if !strings.Contains(stderr, "skipped 2 lines that are not log records and 1 lines longer than") {
		t.Errorf("stderr %q", stderr)
	}
}

// TestLogsFollow: sluice logs --follow prints the matching records, then
// new ones as they are written, until cancelled (as by SIGINT), exit 0.
func TestLogsFollow(t *testing.T) {
	data := t.TempDir()
	w, err := logfile.Open(logfile.Options{Dir: logfile.Dir(data)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write := func(msg string) {
		fmt.Fprintf(w, `{"time":%q,"level":"WARN","msg":%q}`+"\n", time.Now().UTC().Format(time.RFC3339Nano), msg)
	}
	write("before")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr enginetest.LogBuffer
	done := make(chan int, 1)
	go func() {
		done <- executeContext(ctx, []string{"logs", "--follow", "--level", "warn", "--json", "--data-dir", data}, &stdout, &stderr)
	}()
	waitOut := func(s string) {
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(stdout.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the output:\n%s%s", s, stdout.String(), stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitOut(`"msg":"before"`)
	write("after")
	waitOut(`"msg":"after"`)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	if n := strings.Count(stdout.String(), "\n"); n != 2 {
		t.Errorf("%d lines, want 2:\n%s", n, stdout.String())
	}
}
