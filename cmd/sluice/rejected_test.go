package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunReportsRejectedInput: a finite source whose every line is bad
// (numbers written as strings) ends the run with an ERROR naming it and
// exit 1; a source that rejected only some lines ends with a WARN and 0.
func TestRunReportsRejectedInput(t *testing.T) {
	bad := `{"time":1704067200000,"asset":"T1","power":"12.5"}` + "\n" +
		`{"time":1704067201000,"asset":"T1","power":"13.5"}` + "\n"
	good := `{"time":1704067202000,"asset":"T1","power":14.5}` + "\n"
	for _, tt := range []struct {
		name, input string
		code        int
		want        []string
	}{
		{"every line bad", bad, exitFailed, []string{"level=ERROR", "source=in", "bad_lines=2", "rows_out=0", "every input of p/in was rejected"}},
		{"some lines bad", bad + good, 0, []string{"level=WARN", "source=in", "bad_lines=2", "rows_out=1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "in.jsonl"), []byte(tt.input), 0o644); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "p.yaml")
			yaml := "sources: {in: {type: file, path: in.jsonl, format: jsonl, resume: false, schema: {key: asset, fields: {power: float64}}}}\n" +
				"sinks: {o: {type: discard, input: in}}\n"
			if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := run(t, "run", file, "--data-dir", filepath.Join(dir, "data"), "--progress", "never")
			if code != tt.code {
				t.Errorf("exit %d, want %d:\n%s", code, tt.code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}
