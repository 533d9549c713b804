//go:build !sluice_lean

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/operators/infer"
	"github.com/sluice-edge/sluice/operators/infer/infertest"
)

// inferModel is a model the scenario runs.
type inferModel struct {
	name, runtime string
	data          []byte
	// gonnx runs the graph in gonnx rather than as a dense chain.
	gonnx bool
	// seq is the sequence length of a sequence model (the step's sequence
	// option over the rows of each asset), 0 for none.
	seq int
}

// inferSeqLength is the sequence length of the scenario's GRU.
const inferSeqLength = 10

// inferSeqBatches bounds the batches a measurement of the sequence model
// scores: a recurrent model in gonnx costs ~50 us per row.
const inferSeqBatches = 16

// inferPerRowBatches bounds the batches a once-per-row measurement of a
// gonnx model scores (~20 us per call): the rate needs no more.
const inferPerRowBatches = 16

// inferFeatures is the number of inputs of the scenario's models.
const inferFeatures = 10

// inferModels are the models of the infer scenario, built by infertest
// (the same as the infer package's benchmarks).
func inferModels() []inferModel {
	mlp := infertest.NewMLP(71, "Relu", true, inferFeatures, 32, 16, 1).ONNX()
	return []inferModel{
		{"mlp-10-32-16-1", "onnx", mlp, false, 0},
		{"mlp-10-32-16-1-gonnx", "onnx", mlp, true, 0},
		{"trees-100x6", "trees", infertest.NewEnsemble(72, 100, 6, inferFeatures, "regression").Text(nil), false, 0},
		{"gru-seq10x10-16", "onnx", infertest.NewSeqGRU(73, inferSeqLength, inferFeatures, 16).ONNX(), true, inferSeqLength},
	}
}

// runInfer runs the infer scenario.
func runInfer(ctx context.Context, opts Options) (*InferResult, error) {
	rows := int64(DefaultInferRows)
	if opts.Rows > 0 {
		rows = opts.Rows
	}
	batches := int((rows + InferBatchRows - 1) / InferBatchRows)
	rows = int64(batches) * InferBatchRows
	res := &InferResult{Rows: rows, BatchRows: InferBatchRows, Features: inferFeatures, Goal: InferGoal}

	// The input: one batch of random features (as float64 columns of a
	// stream keyed by asset), scored again and again.
	names := make([]string, inferFeatures)
	fields := []engine.Field{{Name: "asset", Type: engine.String}}
	for i := range names {
		names[i] = fmt.Sprintf("f%d", i)
		fields = append(fields, engine.Field{Name: names[i], Type: engine.Float64})
	}
	schema, err := engine.NewSchema(fields, "", "asset")
	if err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(opts.Seed, 5))
	x := make([]float64, InferBatchRows*inferFeatures)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	mem := memory.NewGoAllocator()
	rb := engine.NewRecordBuilder(mem, schema)
	for row := range InferBatchRows {
		rb.String(0).Append(fmt.Sprintf("T%04d", row))
		for f := range inferFeatures {
			rb.Float64(1 + f).Append(x[row*inferFeatures+f])
		}
		rb.RowDone()
	}
	rec := rb.NewRecord()
	rb.Release()
	defer rec.Release()

	var node yaml.Node
	src := fmt.Sprintf("model: m\nfeatures: [%s]\nthresholds: [{column: high, above: 0.5}]\n", strings.Join(names, ", "))
	if err := yaml.Unmarshal([]byte(src), &node); err != nil {
		return nil, err
	}
	cfg, errs := infer.Spec.Parse("bench.yaml", &node)
	if errs != nil {
		return nil, errs
	}
	var seqNode yaml.Node
	if err := yaml.Unmarshal([]byte(src+fmt.Sprintf("sequence: {length: %d}\n", inferSeqLength)), &seqNode); err != nil {
		return nil, err
	}
	seqCfg, errs := infer.Spec.Parse("bench.yaml", &seqNode)
	if errs != nil {
		return nil, errs
	}

	for _, m := range inferModels() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		model, err := infer.LoadBytesWith(m.data, m.runtime, infer.LoadOptions{Gonnx: m.gonnx})
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", m.name, err)
		}
		run := InferRun{Model: m.name, Runtime: m.runtime, Path: "leaves"}
		if m.runtime == "onnx" {
			run.Path = "dense"
			if m.gonnx {
				run.Path = "gonnx"
			}
		}

		stepCfg, stepBatches, warm := cfg, batches, 1
		if m.seq > 0 {
			// Every asset of the batch has one row in it: after seq
			// batches every row is scored.
			stepCfg, stepBatches, warm = seqCfg, min(batches, inferSeqBatches), m.seq
			run.Path = "gonnx, sequence"
		}
		step, err := infer.NewWithModel(stepCfg, schema, engine.BuildContext{Mem: mem}, model, "v1")
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", m.name, err)
		}
		sink := func(port int, b engine.Batch) error { b.Release(); return nil }
		process := func() error {
			rec.Retain()
			return step.Process(engine.Batch{Rec: rec}, sink)
		}
		for range warm { // warm up: the step's buffers, the assets' histories
			if err := process(); err != nil {
				step.Close()
				return nil, fmt.Errorf("model %s: %w", m.name, err)
			}
		}
		run.StepRowsPerSec, run.StepAllocsPerRow, err = measureInfer(stepBatches, process)
		step.Close()
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", m.name, err)
		}

		w, f, mx := model.Width(), model.Features(), x
		if f != inferFeatures { // a sequence model: rows of seq x features
			mx = make([]float64, InferBatchRows*f)
			for i := range mx {
				mx[i] = r.NormFloat64()
			}
		}
		y := make([]float64, InferBatchRows*w)
		batch := func() error { return model.Predict(mx, InferBatchRows, y) }
		perRow := func() error {
			for row := range InferBatchRows {
				if err := model.Predict(mx[row*f:(row+1)*f], 1, y[row*w:(row+1)*w]); err != nil {
					return err
				}
			}
			return nil
		}
		if err := batch(); err != nil {
			return nil, fmt.Errorf("model %s: %w", m.name, err)
		}
		if run.BatchRowsPerSec, run.BatchAllocsPerRow, err = measureInfer(stepBatches, batch); err != nil {
			return nil, fmt.Errorf("model %s: %w", m.name, err)
		}
		perRowBatches := stepBatches
		if m.gonnx {
			perRowBatches = min(stepBatches, inferPerRowBatches)
		}
		if run.PerRowRowsPerSec, run.PerRowAllocsPerRow, err = measureInfer(perRowBatches, perRow); err != nil {
			return nil, fmt.Errorf("model %s: %w", m.name, err)
		}
		if run.PerRowRowsPerSec > 0 {
			run.Ratio = run.BatchRowsPerSec / run.PerRowRowsPerSec
		}
		res.Models = append(res.Models, run)
	}
	res.MeetsGoal = res.Models[0].StepRowsPerSec >= InferGoal
	return res, nil
}

// measureInfer calls f (which scores InferBatchRows rows) batches times on
// this goroutine and returns the rows per CPU second (per wall second
// where CPU time cannot be read) and the allocations per row.
func measureInfer(batches int, f func() error) (rowsPerSec, allocsPerRow float64, err error) {
	runtime.GC()
	s0 := takeSample()
	for range batches {
		if err := f(); err != nil {
			return 0, 0, err
		}
	}
	s1 := takeSample()
	rows := float64(batches * InferBatchRows)
	secs := (s1.user + s1.sys - s0.user - s0.sys).Seconds()
	if !s0.cpuOK || !s1.cpuOK || secs <= 0 {
		secs = s1.wall.Sub(s0.wall).Seconds()
	}
	if secs > 0 {
		rowsPerSec = rows / secs
	}
	return rowsPerSec, float64(s1.mallocs-s0.mallocs) / rows, nil
}
