package pipelines_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/operators/infer/infertest"
	"github.com/sluice-edge/sluice/pipelines"
)

// sequenceCheckpointPipeline scores simulated turbines with a GRU over the
// last 5 rows of each turbine, passing the rows before a turbine has 5
// with null outputs.
const sequenceCheckpointPipeline = `
name: seqcp
batch: {size: 32, linger: 1ms}
%s
sources:
  farm: {type: sim, turbines: 5, interval: 1s, rows: 200, rate: %d, seed: 9}
steps:
  scored:
    type: infer
    input: farm
    model: gru.onnx
    features: [wind_speed, pitch_angle, ambient_temp]
    on_invalid: pass
    sequence: {length: 5}
sinks:
  out: {type: file, input: scored, path: scored.jsonl}
`

// TestSequenceContinuesAfterStops stops a checkpointing pipeline with a
// sequence model several times and runs it again each time: the turbines'
// histories come back from the checkpoint, so no turbine starts its
// sequence again (which would pass rows with null outputs) and the output
// equals that of a run that never stopped.
func TestSequenceContinuesAfterStops(t *testing.T) {
	model := infertest.NewSeqGRU(31, 5, 3, 6).ONNX()
	run := func(dir, section string, rate int, stopAfter time.Duration) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "gru.onnx"), model, 0o644); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, "seqcp.yaml")
		src := strings.Replace(strings.Replace(sequenceCheckpointPipeline, "%s", section, 1), "%d", strconv.Itoa(rate), 1)
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		runFor(t, buildFile(t, file, pipelines.Options{DataDir: filepath.Join(dir, "data"), Log: slog.New(slog.DiscardHandler)}), stopAfter)
		out, err := os.ReadFile(filepath.Join(dir, "scored.jsonl"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return string(out)
	}
	want := run(t.TempDir(), "", 0, 0)
	if n := strings.Count(want, "\n"); n != 5*200 {
		t.Fatalf("reference run wrote %d rows, want 1000", n)
	}
	if n := strings.Count(want, `"prediction"`); n != 5*(200-4) {
		t.Fatalf("reference run scored %d rows, want %d", n, 5*196)
	}
	dir := t.TempDir()
	const section = "checkpoint: {interval: 20ms}"
	stops := 0
	for i := range 4 {
		got := run(dir, section, 1500, time.Duration(120+40*i)*time.Millisecond)
		if n := strings.Count(got, "\n"); n > 0 && n < 1000 {
			stops++
		}
	}
	if stops == 0 {
		t.Fatal("no run stopped mid-stream")
	}
	if got := run(dir, section, 0, 0); got != want {
		t.Fatalf("after %d stops the output has %d rows, %d scored; want %d, %d:\n%s", stops, strings.Count(got, "\n"),
			strings.Count(got, `"prediction"`), strings.Count(want, "\n"), strings.Count(want, `"prediction"`), firstLineDiff(got, want))
	}
}
