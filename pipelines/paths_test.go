package pipelines_test

import (
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/pipelines"
)

// TestFilePathClashes: two sinks writing one file, or a sink writing the
// file its source reads, used to pass validation; they are located errors.
func TestFilePathClashes(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"two sinks one file", `
name: p
sources: {s: {type: sim, turbines: 1, rows: 1}}
sinks:
  a: {type: file, input: s, path: out.jsonl}
  b: {type: file, input: s, path: ./sub/../out.jsonl}
`, `sink "b" writes`},
		{"sink writes what its source reads", `
name: p
sources: {s: {type: file, path: "data/*.jsonl", format: jsonl, schema: {fields: {v: float64}}}}
sinks:
  a: {type: file, input: s, path: data/out.jsonl}
`, `which source "s" of pipeline "p" reads`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := write(t, "p.yaml", tc.yaml)
			_, errs := pipelines.Validate([]string{f}, func(string) (string, bool) { return "", false }, pipelines.Options{DataDir: t.TempDir()})
			if len(errs) == 0 || !strings.Contains(errs.Error(), tc.want) || !strings.Contains(errs.Error(), "p.yaml:") {
				t.Fatalf("errors %v, want %q located in p.yaml", errs, tc.want)
			}
		})
	}
	ok := write(t, "ok.yaml", `
name: ok
sources: {s: {type: sim, turbines: 1, rows: 1}}
sinks:
  a: {type: file, input: s, path: a.jsonl}
  b: {type: file, input: s, path: b.jsonl}
`)
	if _, errs := pipelines.Validate([]string{ok}, func(string) (string, bool) { return "", false }, pipelines.Options{DataDir: t.TempDir()}); len(errs) > 0 {
		t.Fatalf("distinct paths: %v", errs)
	}
}
