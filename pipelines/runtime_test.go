package pipelines_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/pipelines"
)

// release writes one pipeline file into a new directory under dir and
// loads it as a release.
func release(t *testing.T, dir, name, yaml string) *pipelines.Release {
	t.Helper()
	rd := filepath.Join(dir, name, "pipelines")
	if err := os.MkdirAll(rd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rd, "p.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, errs := pipelines.LoadRelease(filepath.Join(dir, name), os.LookupEnv)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return rel
}

// lines counts the lines of a file, 0 when it does not exist.
func lines(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(data), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func waitLines(t *testing.T, file string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(lines(t, file)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d lines, want %d", file, len(lines(t, file)), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const runtimeV1 = `
name: p
batch: {size: 16, linger: 2ms}
sources:
  farm: {type: sim, turbines: 4, interval: 1s, rate: 4000, faults: 0}
steps:
  keep: {type: filter, input: farm, expr: "power >= -1000000"}
sinks:
  out: {type: file, input: keep, path: OUT}
`

// TestRuntimeSwitchLosesNothing switches a running release to one whose
// step changed and then to an equal one while a source produces: the
// source keeps running, the sink stays open, the changed step starts
// fresh, and every row the source produced is written exactly once.
func TestRuntimeSwitchLosesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "rows.jsonl")
	v1 := strings.ReplaceAll(runtimeV1, "OUT", out)
	v2 := strings.ReplaceAll(v1, ">= -1000000", ">= -2000000")
	rt := pipelines.NewRuntime(pipelines.Options{DataDir: filepath.Join(dir, "data"), Log: slog.New(slog.DiscardHandler)})
	if err := rt.Start(context.Background(), release(t, dir, "v1", v1)); err != nil {
		t.Fatal(err)
	}
	waitLines(t, out, 200)
	rep, err := rt.Switch(context.Background(), release(t, dir, "v2", v2))
	if err != nil {
		t.Fatal(err)
	}
	want := "p changed (farm: kept running, keep: started fresh, out: kept open)"
	if rep.String() != want {
		t.Fatalf("report %q, want %q", rep, want)
	}
	n := len(lines(t, out))
	waitLines(t, out, n+200)
	rep, err = rt.Switch(context.Background(), release(t, dir, "v3", v2))
	if err != nil {
		t.Fatal(err)
	}
	if rep.String() != "p unchanged" {
		t.Fatalf("report %q, want p unchanged", rep)
	}
	// A release that does not build is refused; the running one goes on.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.ReplaceAll(v2, "power >=", "nosuch >=")), 0o644); err != nil {
		t.Fatal(err)
	}
	defs, errs := pipelines.Load([]string{bad}, os.LookupEnv)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	_, err = rt.Switch(context.Background(), &pipelines.Release{Defs: defs})
	var se *pipelines.SwitchError
	if !errors.As(err, &se) || len(se.Errs) == 0 || !strings.Contains(se.Error(), "nosuch") {
		t.Fatalf("a release with a bad expression: %v, want a SwitchError naming it", err)
	}
	n = len(lines(t, out))
	waitLines(t, out, n+200)
	// A release that adds a pipeline, then one that removes it again.
	other := filepath.Join(dir, "other.jsonl")
	added := release(t, dir, "v5", v2)
	more, errs := pipelines.Parse("q.yaml", []byte(strings.NewReplacer("name: p", "name: q", out, other).Replace(v2)), os.LookupEnv)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	added.Defs = append(added.Defs, more...)
	if rep, err = rt.Switch(context.Background(), added); err != nil || rep.String() != "p unchanged; q added (farm: started fresh, keep: started fresh, out: started fresh)" {
		t.Fatalf("adding a pipeline: %v, %v", rep, err)
	}
	waitLines(t, other, 50)
	if rep, err = rt.Switch(context.Background(), release(t, dir, "v6", v2)); err != nil || rep.String() != "p unchanged; q removed" {
		t.Fatalf("removing a pipeline: %v, %v", rep, err)
	}
	if st := rt.Status(); len(st) != 1 || st[0].Name != "p" || st[0].State != "running" {
		t.Fatalf("status after removing q: %+v", st)
	}
	n = len(lines(t, out))
	waitLines(t, out, n+100)
	if err := rt.Stop(); err != nil {
		t.Fatal(err)
	}
	<-rt.Done()
	// Every (asset, time) once, and per asset in time order.
	seen := map[string]bool{}
	last := map[string]string{}
	for i, l := range lines(t, out) {
		var row struct {
			Time  string `json:"time"`
			Asset string `json:"asset"`
		}
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		k := row.Asset + "@" + row.Time
		if seen[k] {
			t.Fatalf("line %d: %s written twice", i+1, k)
		}
		seen[k] = true
		if row.Time < last[row.Asset] {
			t.Fatalf("line %d: %s out of order after %s", i+1, k, last[row.Asset])
		}
		last[row.Asset] = row.Time
	}
	// No gap: per asset, the times are consecutive seconds.
	for asset, lt := range last {
		count := 0
		for k := range seen {
			if strings.HasPrefix(k, asset+"@") {
				count++
			}
		}
		first, _ := time.Parse(time.RFC3339Nano, "2024-01-01T00:00:00Z")
		end, err := time.Parse(time.RFC3339Nano, lt)
		if err != nil {
			t.Fatal(err)
		}
		if want := int(end.Sub(first)/time.Second) + 1; count != want {
			t.Fatalf("asset %s: %d rows up to %s, want %d (rows lost in a switch)", asset, count, lt, want)
		}
	}
}

// BenchmarkSwitch switches a release of 10 pipelines (a simulated farm
// at 20 000 rows/s each, windowed, into files) to one that changes a sink
// (its output file) of every pipeline, so that every source and window is
// handed over. It
// reports the time of a whole switch (check + stop + build + start) and
// the time data was held back (held_ms: from detaching the first source to
// starting the last graph), and the rows/s flowing meanwhile.
func BenchmarkSwitch(b *testing.B) {
	dir := b.TempDir()
	var pipes strings.Builder
	mk := func(version string) *pipelines.Release {
		rd := filepath.Join(dir, version, "pipelines")
		if err := os.MkdirAll(rd, 0o755); err != nil {
			b.Fatal(err)
		}
		for i := range 10 {
			pipes.Reset()
			fmt.Fprintf(&pipes, `
name: p%d
batch: {size: 256, linger: 5ms}
sources:
  farm: {type: sim, turbines: 20, interval: 1s, rate: 20000, faults: 0, resume: false}
steps:
  stats: {type: window, input: farm, size: 1m, aggregates: {power: [avg, max]}}
sinks:
  out: {type: file, input: stats, path: %s}
`, i, filepath.Join(dir, fmt.Sprintf("out%d-%s.jsonl", i, version)))
			if err := os.WriteFile(filepath.Join(rd, fmt.Sprintf("p%d.yaml", i)), []byte(pipes.String()), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		rel, errs := pipelines.LoadRelease(filepath.Join(dir, version), os.LookupEnv)
		if len(errs) > 0 {
			b.Fatal(errs)
		}
		return rel
	}
	rels := []*pipelines.Release{mk("a"), mk("b")}
	rt := pipelines.NewRuntime(pipelines.Options{DataDir: filepath.Join(dir, "data"), Log: slog.New(slog.DiscardHandler)})
	if err := rt.Start(context.Background(), rels[0]); err != nil {
		b.Fatal(err)
	}
	defer rt.Stop()
	rows := func() int64 { return pipelines.SourceRows(rt.Pipelines()) }
	time.Sleep(200 * time.Millisecond)
	var held time.Duration
	r0, t0 := rows(), time.Now()
	b.ResetTimer()
	for i := range b.N {
		rep, err := rt.Switch(context.Background(), rels[(i+1)%2])
		if err != nil {
			b.Fatal(err)
		}
		held += rep.Took
		if strings.Contains(rep.String(), "started fresh:") || strings.Contains(rep.String(), "farm: started") {
			b.Fatalf("switch %d handed over less than it should: %s", i, rep)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(held.Milliseconds())/float64(b.N), "held_ms/op")
	b.ReportMetric(float64(rows()-r0)/time.Since(t0).Seconds(), "rows/s")
}

// TestRuntimeFinishedPipelineNotRerun switches a release whose pipeline
// has finished (its finite source ended) to one that changes only a step:
// the pipeline is not run again, so its source does not produce its rows
// a second time; a release that changes the source runs it.
func TestRuntimeFinishedPipelineNotRerun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "rows.jsonl")
	v1 := strings.ReplaceAll(strings.Replace(runtimeV1, "rate: 4000,", "rate: 4000, rows: 25, resume: false,", 1), "OUT", out)
	rt := pipelines.NewRuntime(pipelines.Options{DataDir: filepath.Join(dir, "data"), Log: slog.New(slog.DiscardHandler)})
	if err := rt.Start(context.Background(), release(t, dir, "v1", v1)); err != nil {
		t.Fatal(err)
	}
	defer rt.Stop()
	<-rt.Done()
	if n := len(lines(t, out)); n != 100 {
		t.Fatalf("%d rows written, want 100", n)
	}
	rep, err := rt.Switch(context.Background(), release(t, dir, "v2", strings.ReplaceAll(v1, ">= -1000000", ">= -2000000")))
	if err != nil || rep.String() != "p finished, not restarted" {
		t.Fatalf("switch: %v, %v", rep, err)
	}
	if n := len(lines(t, out)); n != 100 {
		t.Fatalf("%d rows after the switch, want the 100 of the run", n)
	}
	rep, err = rt.Switch(context.Background(), release(t, dir, "v3", strings.Replace(v1, "rows: 25", "rows: 30", 1)))
	if err != nil || !strings.HasPrefix(rep.String(), "p changed") {
		t.Fatalf("a changed source: %v, %v", rep, err)
	}
	<-rt.Done()
	if n := len(lines(t, out)); n != 220 {
		t.Fatalf("%d rows after the changed source ran, want 100 + 120", n)
	}
}
