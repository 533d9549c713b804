package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCheckpointScenario runs the checkpoint scenario small, checkpointing
// every 10ms: both runs produce the window rows and alerts of the baseline,
// the run with checkpoints logs every row in its ingest log, and the
// report carries its checkpoints (their number and pauses depend on the
// machine's speed beyond the first and the last; they are reported, not
// checked).
func TestCheckpointScenario(t *testing.T) {
	opts := small
	opts.Scenarios = []string{Baseline, Checkpoint}
	opts.CheckpointInterval = 10 * time.Millisecond
	r, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, res := range r.Results {
		names = append(names, res.Scenario)
	}
	if strings.Join(names, ",") != "baseline,checkpoint-off,checkpoint-on" {
		t.Fatalf("results %v", names)
	}
	base, off, on := r.Results[0], r.Results[1], r.Results[2]
	for _, res := range []*Result{off, on} {
		if res.Rows != r.Workload.Rows || res.WindowRows != r.Workload.ExpectedWindows ||
			res.AlertsRaised != base.AlertsRaised || res.AlertsCleared != base.AlertsCleared {
			t.Errorf("%s: %d rows, %d windows, %d/%d alerts; want %d, %d, %d/%d", res.Scenario, res.Rows, res.WindowRows,
				res.AlertsRaised, res.AlertsCleared, r.Workload.Rows, r.Workload.ExpectedWindows, base.AlertsRaised, base.AlertsCleared)
		}
	}
	if base.Alerts() == 0 {
		t.Fatal("the run raised no alerts; the check needs some")
	}
	if off.Checkpoint != nil {
		t.Errorf("the run without checkpoints reports some: %+v", off.Checkpoint)
	}
	c := r.Checkpoint
	if c == nil || c.Stats == nil || c.Stats != on.Checkpoint {
		t.Fatalf("checkpoint result: %+v", c)
	}
	s := c.Stats
	// The first checkpoint before any input and the last at its end.
	if s.Checkpoints < 2 || s.Pauses != s.Checkpoints-1 || s.SizeMaxBytes <= 0 || s.IntervalSeconds != 0.01 || s.IngestFsync != "always" {
		t.Errorf("stats: %+v", s)
	}
	if s.IngestRowsLogged != r.Workload.Rows {
		t.Errorf("the ingest log holds %d rows, want %d", s.IngestRowsLogged, r.Workload.Rows)
	}
	if c.Throughput <= 0 || c.NsPerRowOn <= 0 || c.NsPerRowOff <= 0 || c.Goal != CheckpointGoal || c.MeetsGoal != (c.Throughput >= c.Goal) {
		t.Errorf("comparison: %+v", c)
	}
	if len(r.Ratios) != 2 {
		t.Errorf("ratios to the baseline: %+v", r.Ratios)
	}

	var out bytes.Buffer
	if err := r.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"checkpoint-off", "checkpoint-on", "checkpoint: enos without and with checkpoint {interval: 10ms, ingest_fsync: always}",
		"throughput with checkpoints:", "(goal >= 90%", "pause max", "ingest log: 25,200 rows logged"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := r.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Checkpoint *CheckpointResult `json:"checkpoint"`
		Results    []*Result         `json:"results"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.Checkpoint == nil || doc.Checkpoint.Stats == nil ||
		doc.Checkpoint.Stats.Checkpoints != s.Checkpoints || len(doc.Results) != 3 || doc.Results[2].Checkpoint == nil {
		t.Fatalf("JSON checkpoint: %v %+v", err, doc.Checkpoint)
	}
}
