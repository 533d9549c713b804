package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestInferScenario runs the infer scenario small (3 batches of 1,024 rows
// per measurement): every model is measured the three ways, with rates
// and a ratio reported (never checked: they depend on the machine), and
// the model calls of the dense MLP allocate nothing per row.
func TestInferScenario(t *testing.T) {
	r, err := Run(context.Background(), Options{Rows: 3000, Scenarios: []string{Infer}})
	if err != nil {
		t.Fatal(err)
	}
	f := r.Infer
	if f == nil || f.Rows != 3*InferBatchRows || f.BatchRows != InferBatchRows || len(f.Models) != 4 || len(r.Results) != 0 {
		t.Fatalf("infer result: %+v, %d results", f, len(r.Results))
	}
	for i, want := range []string{"mlp-10-32-16-1", "mlp-10-32-16-1-gonnx", "trees-100x6", "gru-seq10x10-16"} {
		m := f.Models[i]
		if m.Model != want || m.Path != []string{"dense", "gonnx", "leaves", "gonnx, sequence"}[i] || m.StepRowsPerSec <= 0 || m.BatchRowsPerSec <= 0 || m.PerRowRowsPerSec <= 0 || m.Ratio <= 0 {
			t.Errorf("model %d: %+v", i, m)
		}
		// The step allocates per batch (output columns), not per row;
		// gonnx allocates its intermediate tensors per call.
		if !strings.HasPrefix(m.Path, "gonnx") && m.StepAllocsPerRow > 0.1 {
			t.Errorf("%s: the step allocates %.3f times per row", m.Model, m.StepAllocsPerRow)
		}
	}
	if mlp := f.Models[0]; mlp.BatchAllocsPerRow > 0.01 || mlp.PerRowAllocsPerRow > 0.01 {
		t.Errorf("the dense MLP allocates: %+v", mlp)
	}
	if f.MeetsGoal != (f.Models[0].StepRowsPerSec >= f.Goal) {
		t.Errorf("goal: %+v", f)
	}
	var out bytes.Buffer
	if err := r.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"infer: 3,072 rows per measurement in batches of 1024", "mlp-10-32-16-1", "mlp-10-32-16-1-gonnx", "gonnx", "trees-100x6", "gru-seq10x10-16", "per-row rows/s", "ratio"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())
	out.Reset()
	if err := r.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Infer *InferResult `json:"infer"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.Infer == nil || len(doc.Infer.Models) != 4 {
		t.Fatalf("JSON infer: %v %+v", err, doc.Infer)
	}
}
