package infer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

const benchRows = 1024

type benchModel struct {
	name, runtime string
	data          []byte
	gonnx         bool // run the MLP in gonnx rather than as a dense chain
}

// load loads the model, in gonnx when m.gonnx.
func (m benchModel) load(b *testing.B) Model {
	model, err := LoadBytesWith(m.data, m.runtime, LoadOptions{Gonnx: m.gonnx})
	if err != nil {
		b.Fatal(err)
	}
	return model
}

// benchModels are the benchmarked models: the MLP 10->32->16->1 (as a
// dense chain, and in gonnx) and an ensemble of 100 trees of depth 6 over
// 10 features.
func benchModels() []benchModel {
	mlp := newMLP(71, "Relu", true, 10, 32, 16, 1).ONNX()
	return []benchModel{
		{"mlp-10-32-16-1", "onnx", mlp, false},
		{"mlp-10-32-16-1-gonnx", "onnx", mlp, true},
		{"trees-100x6", "trees", newEnsemble(72, 100, 6, 10, "regression").Text(nil), false},
	}
}

// BenchmarkInferStep runs the infer step over batches of 1,024 rows: one
// model call per batch. allocs/op are per batch of 1,024 rows.
func BenchmarkInferStep(b *testing.B) {
	for _, m := range benchModels() {
		b.Run(m.name, func(b *testing.B) {
			mem := memory.NewGoAllocator()
			rec := enginetest.Record(mem, in, streamRows(randRows(73, benchRows, 10), benchRows)...)
			defer rec.Release()
			cfg := parse(b, fmt.Sprintf("model: m\nfeatures: [%s]\nthresholds: [{column: high, above: 0.5}]", strings.Join(featureNames, ", ")))
			op, err := NewWithModel(cfg, in, engine.BuildContext{Mem: mem}, m.load(b), "v1")
			if err != nil {
				b.Fatal(err)
			}
			defer op.Close()
			sink := func(port int, bt engine.Batch) error { bt.Release(); return nil }
			b.ReportAllocs()
			for b.Loop() {
				rec.Retain()
				if err := op.Process(engine.Batch{Rec: rec}, sink); err != nil {
					b.Fatal(err)
				}
			}
			perRow := float64(b.Elapsed().Nanoseconds()) / float64(b.N*benchRows)
			b.ReportMetric(perRow, "ns/row")
			b.ReportMetric(1e9/perRow, "rows/s")
		})
	}
}

// BenchmarkBatchVsPerRow calls the same model, in the same run, once for a
// batch of 1,024 rows and once per row for the same 1,024 rows, and
// reports both throughputs and their ratio. Run with -cpu 1 for figures
// per core.
func BenchmarkBatchVsPerRow(b *testing.B) {
	for _, m := range benchModels() {
		b.Run(m.name, func(b *testing.B) {
			model := m.load(b)
			f, w := model.Features(), model.Width()
			x := randRows(74, benchRows, f)
			y := make([]float64, benchRows*w)
			var batch, single time.Duration
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				if err := model.Predict(x, benchRows, y); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				for r := range benchRows {
					if err := model.Predict(x[r*f:(r+1)*f], 1, y[r*w:(r+1)*w]); err != nil {
						b.Fatal(err)
					}
				}
				batch += t1.Sub(t0)
				single += time.Since(t1)
			}
			rows := float64(b.N * benchRows)
			b.ReportMetric(rows/batch.Seconds(), "batch-rows/s")
			b.ReportMetric(rows/single.Seconds(), "per-row-rows/s")
			b.ReportMetric(single.Seconds()/batch.Seconds(), "ratio")
		})
	}
}
