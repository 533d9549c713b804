package pipelines_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-edge/sluice/pipelines"
)

// TestRerunReadsNothingTwice runs a pipeline over a CSV file to its end,
// then again: the second run reads nothing and leaves the output as it is
// (the source position used to be cleared at the end, so every rerun read
// and wrote the whole input again). Lines appended to the input are read
// once by the next run; --from-start reads everything again and, no
// longer resuming, replaces the output.
func TestRerunReadsNothingTwice(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	var csv strings.Builder
	csv.WriteString("time,asset,power\n")
	for i := range 300 {
		fmt.Fprintf(&csv, "%d,T%d,%d\n", 1700000000000+int64(i)*1000, i%3, i)
	}
	if err := os.WriteFile(in, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(`
name: p
batch: {size: 32, linger: 5ms}
sources:
  in: {type: file, path: in.csv, format: csv, schema: {time: time, key: asset, fields: {power: float64}}}
sinks:
  out: {type: file, input: in, path: rows.jsonl}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var read int64 // rows the source read in the last run
	run := func(fromStart bool) []string {
		t.Helper()
		ps := buildFile(t, file, pipelines.Options{DataDir: filepath.Join(dir, "data"), FromStart: fromStart,
			Log: slog.New(slog.DiscardHandler)})
		runFor(t, ps, 0)
		for _, b := range ps[0].Components {
			if b.Def.Name == "in" {
				read = b.Counters.Counter("rows").Load()
			}
		}
		data, err := os.ReadFile(filepath.Join(dir, "rows.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	if lines := run(false); len(lines) != 300 {
		t.Fatalf("first run wrote %d lines, want 300", len(lines))
	}
	if lines := run(false); len(lines) != 300 || read != 0 {
		t.Fatalf("a rerun read %d rows again; the output holds %d lines, want the 300 of the first run", read, len(lines))
	}
	f, err := os.OpenFile(in, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%d,T9,9999\n", 1700000000000+int64(300)*1000)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	lines := run(false)
	if len(lines) != 301 || read != 1 || !strings.Contains(lines[300], `"T9"`) {
		t.Fatalf("after an append the output holds %d lines (last %q), want 301 ending with T9", len(lines), lines[len(lines)-1])
	}
	if lines := run(true); len(lines) != 301 || read != 301 {
		t.Fatalf("--from-start: the output holds %d lines, want all 301 once", len(lines))
	}
}
