package pipelines_test

import (
	"os"
	"path/filepath"
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

// TestFilePathClashesThroughLinks: a symbolic link used to hide a clash: a
// sink writing link.jsonl -> data.csv overwrote the file its source read.
func TestFilePathClashesThroughLinks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "data.csv"), []byte("time,v\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("data.csv", filepath.Join(dir, "link.jsonl")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".", filepath.Join(dir, "here")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"sink through a link to the source's file", `
name: p
sources: {s: {type: file, path: data.csv, format: csv, schema: {fields: {v: float64}}}}
sinks: {a: {type: file, input: s, path: link.jsonl}}
`, `which source "s" of pipeline "p" reads`},
		{"two sinks, one through a linked directory", `
name: p
sources: {s: {type: sim, turbines: 1, rows: 1}}
sinks:
  a: {type: file, input: s, path: out.jsonl}
  b: {type: file, input: s, path: here/out.jsonl}
`, `as sink "a" of pipeline "p" does`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, "p.yaml")
			if err := os.WriteFile(f, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, errs := pipelines.Validate([]string{f}, func(string) (string, bool) { return "", false }, pipelines.Options{DataDir: t.TempDir()})
			if len(errs) == 0 || !strings.Contains(errs.Error(), tc.want) {
				t.Fatalf("errors %v, want %q", errs, tc.want)
			}
		})
	}
}
