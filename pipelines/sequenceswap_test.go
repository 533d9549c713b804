package pipelines_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/bundle"
	"github.com/sluice-edge/sluice/operators/infer"
	"github.com/sluice-edge/sluice/operators/infer/infertest"
)

// sequencePipeline scores simulated turbines with a GRU over the last 4
// rows of each turbine (ml/gru.onnx) and writes every row, scored or not
// yet, to one file.
const sequencePipeline = `
name: sequences
batch: {size: 16, linger: 5ms}
sources:
  feed: {type: sim, turbines: 6, interval: 1s, rows: 0, rate: 300, seed: 7}
steps:
  scored:
    type: infer
    input: feed
    model: ml/gru.onnx
    features: [wind_speed, pitch_angle, ambient_temp]
    on_invalid: pass
    sequence: {length: 4}
sinks:
  out: {type: file, input: scored, path: "{{OUT}}"}
`

// TestSequenceSurvivesModelSwap applies, through the edge agent, a
// release that changes only the sequence model of an infer step: the
// switch rebuilds the step with the new model and hands it the histories
// of the turbines (the step reports "kept state for the sequences of 6
// assets"), so that the first row every turbine has after the switch is
// scored by the new model at once, not passed with null outputs as a
// turbine whose sequence starts again would be.
func TestSequenceSurvivesModelSwap(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "scored.jsonl")
	models := map[int][]byte{1: infertest.NewSeqGRU(21, 4, 3, 6).ONNX(), 2: infertest.NewSeqGRU(22, 4, 3, 6).ONNX()}
	yaml := strings.ReplaceAll(sequencePipeline, "{{OUT}}", out)
	pub, key, err := bundle.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	build := func(version int) string {
		rd := filepath.Join(dir, fmt.Sprintf("v%d", version))
		writeFiles(t, rd, map[string][]byte{"pipelines/s.yaml": []byte(yaml), "ml/gru.onnx": models[version]})
		name := rd + ".bundle"
		buildBundle(t, name, rd, "seq", uint64(version), key)
		return name
	}
	rt, a := startAgent(t, dir, "edge-seq", pub)
	defer rt.Stop()
	if rep, err := a.Apply(build(1)); err != nil || rep.Outcome != agent.Applied {
		t.Fatalf("apply v1: %v %v", rep, err)
	}
	rows := func() []map[string]any {
		f, err := os.Open(out)
		if err != nil {
			return nil
		}
		defer f.Close()
		var rs []map[string]any
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r map[string]any
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				break // a line being written
			}
			rs = append(rs, r)
		}
		return rs
	}
	deadline := time.Now().Add(30 * time.Second)
	waitFor := func(what string, ok func([]map[string]any) bool) []map[string]any {
		t.Helper()
		for {
			rs := rows()
			if ok(rs) {
				return rs
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d rows", what, len(rs))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Every turbine has a full sequence under v1.
	waitFor("v1 scores", func(rs []map[string]any) bool { return len(rs) >= 60 })
	rep, err := a.Apply(build(2))
	if err != nil || rep.Outcome != agent.Applied {
		t.Fatalf("apply v2: %v %v", rep, err)
	}
	if want := "scored: kept state for the sequences of 6 assets"; !strings.Contains(rep.Steps, want) {
		t.Errorf("switch report %q lacks %q", rep.Steps, want)
	}
	v2 := infer.Digest(models[2])
	rs := waitFor("v2 rows of every turbine", func(rs []map[string]any) bool {
		seen := map[any]bool{}
		for _, r := range rs {
			if r["model_version"] == v2 {
				seen[r["asset"]] = true
			}
		}
		return len(seen) == 6
	})
	first := map[any]bool{}
	for _, r := range rs {
		if r["model_version"] != v2 || first[r["asset"]] {
			continue
		}
		first[r["asset"]] = true
		if r["prediction"] == nil {
			t.Errorf("the first v2 row of %v has no prediction: its history was lost: %v", r["asset"], r)
		}
	}
}
