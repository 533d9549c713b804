package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunReportsRejectedInput: a finite source whose every line is bad
// (numbers written as strings) ends the run with an ERROR naming it and
// exit 1; a source that rejected only some lines ends with a WARN and 0.
// Rows the pipeline's event_time guard refuses count as rejected input of
// their source: a run whose every row was too old fails as well.
func TestRunReportsRejectedInput(t *testing.T) {
	bad := `{"time":1704067200000,"asset":"T1","power":"12.5"}` + "\n" +
		`{"time":1704067201000,"asset":"T1","power":"13.5"}` + "\n"
	good := `{"time":1704067202000,"asset":"T1","power":14.5}` + "\n"
	recent := fmt.Sprintf(`{"time":%d,"asset":"T1","power":15.5}`+"\n", time.Now().UnixMilli())
	for _, tt := range []struct {
		name, input string
		head        string // pipeline settings before the sources
		code        int
		want        []string
	}{
		{"every line bad", bad, "", exitFailed, []string{"level=ERROR", "source=in", "bad_lines=2", "rows_out=0", "every input of p/in was rejected"}},
		{"some lines bad", bad + good, "", 0, []string{"level=WARN", "source=in", "bad_lines=2", "rows_out=1"}},
		{"every row too old", good + good, "event_time: {sources: all}\n", exitFailed,
			[]string{"level=ERROR", "source=in", "past_time_rows=2", "rows_passed=0", "every input of p/in was rejected"}},
		{"every row bad or too old", bad + good, "event_time: {sources: all}\n", exitFailed,
			[]string{"level=ERROR", "source=in", "bad_lines=2", "past_time_rows=1", "every input of p/in was rejected"}},
		{"some rows too old", good + recent, "event_time: {sources: all}\n", 0,
			[]string{"level=WARN", "source=in", "past_time_rows=1", "rows_out=2", "rows_passed=1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "in.jsonl"), []byte(tt.input), 0o644); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "p.yaml")
			yaml := tt.head + "sources: {in: {type: file, path: in.jsonl, format: jsonl, resume: false, schema: {key: asset, fields: {power: float64}}}}\n" +
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
