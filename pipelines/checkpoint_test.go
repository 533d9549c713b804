package pipelines_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/pipelines"
)

// checkpointPipeline is a simulated farm -> one-minute windows -> a file,
// checkpointing every few milliseconds.
const checkpointPipeline = `
name: cp
batch: {size: 64, linger: 1ms}
%s
sources:
  farm: {type: sim, turbines: 5, interval: 1s, rows: 1200, rate: %d, seed: 7}
steps:
  stats: {type: window, input: farm, size: 1m, key: asset, aggregates: {power: [avg, max, count]}}
sinks:
  out: {type: file, input: stats, path: stats.jsonl}
`

// buildFile loads the pipeline file file (with the process's environment)
// and builds its pipelines with opts, failing the test on any error.
func buildFile(t *testing.T, file string, opts pipelines.Options) []*pipelines.Pipeline {
	t.Helper()
	defs, errs := pipelines.Load([]string{file}, os.LookupEnv)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ps, errs := pipelines.BuildAll(defs, opts)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return ps
}

// runFor runs ps until their sources end or, if stopAfter > 0, for at
// most stopAfter, failing the test on an error.
func runFor(t *testing.T, ps []*pipelines.Pipeline, stopAfter time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if stopAfter > 0 {
		time.AfterFunc(stopAfter, cancel)
	}
	if err := pipelines.RunAll(ctx, ps); err != nil {
		t.Fatal(err)
	}
}

// runCheckpointed builds and runs the pipeline in dir once; stopAfter > 0
// cancels the run that long after it starts (a graceful stop).
func runCheckpointed(t *testing.T, dir, section string, rate int, stopAfter time.Duration, fromStart bool) string {
	t.Helper()
	file := filepath.Join(dir, "cp.yaml")
	src := strings.Replace(strings.Replace(checkpointPipeline, "%s", section, 1), "%d", strconv.Itoa(rate), 1)
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ps := buildFile(t, file, pipelines.Options{DataDir: filepath.Join(dir, "data"), FromStart: fromStart, Log: slog.New(slog.DiscardHandler)})
	runFor(t, ps, stopAfter)
	st, ok := ps[0].CheckpointStats()
	if ok != (section != "") || ok && stopAfter > 0 && (st.Count == 0 || st.MaxPause <= 0 || st.Last.IsZero()) {
		t.Fatalf("checkpoint stats %+v, %v", st, ok)
	}
	out, err := os.ReadFile(filepath.Join(dir, "stats.jsonl"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(out)
}

// TestCheckpointedPipelineContinuesAfterStops stops a checkpointing
// pipeline several times while its windows are open and runs it again each
// time: the windows are not flushed half-full at a stop but continued, so
// the output equals that of a run that never stopped. --from-start then
// forgets the checkpoints and produces the same output afresh.
func TestCheckpointedPipelineContinuesAfterStops(t *testing.T) {
	want := runCheckpointed(t, t.TempDir(), "", 0, 0, false)
	if strings.Count(want, "\n") != 5*20 {
		t.Fatalf("reference run wrote %d windows, want 100", strings.Count(want, "\n"))
	}
	dir := t.TempDir()
	const section = "checkpoint: {interval: 20ms}"
	var got string
	for i := range 4 {
		got = runCheckpointed(t, dir, section, 2000, time.Duration(150+50*i)*time.Millisecond, false)
	}
	got = runCheckpointed(t, dir, section, 0, 0, false)
	if got != want {
		t.Fatalf("after stops the output has %d windows, want %d:\n%s", strings.Count(got, "\n"), strings.Count(want, "\n"), firstLineDiff(got, want))
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "data", "cp", "checkpoints", "*.ckpt")); len(names) == 0 || len(names) > 2 {
		t.Fatalf("checkpoint files: %v, want one or two", names)
	}
	if again := runCheckpointed(t, dir, section, 0, 0, true); again != want {
		t.Fatalf("--from-start wrote %d windows, want %d", strings.Count(again, "\n"), strings.Count(want, "\n"))
	}
}

func firstLineDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return "line " + strconv.Itoa(i+1) + ":\n got " + la[i] + "\nwant " + lb[i]
		}
	}
	return "one is a prefix of the other"
}
