package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Infer is the scenario of model inference: the infer step scoring
// batches of InferBatchRows rows with an MLP 10->32->16->1 (run by the
// step's dense-chain loop, and the same graph run by gonnx), with 100
// trees of depth 6 and with a GRU over the last 10 rows of each asset (the
// sequence option), and the same models called once per batch and once
// per row in the same run. It runs on one goroutine, so its rates are per
// core. It is not part of the default set: ask for it with --scenario
// infer.
const Infer = "infer"

// InferBatchRows is the number of rows in a batch of the infer scenario.
const InferBatchRows = 1024

// DefaultInferRows is the number of rows each measurement of the infer
// scenario scores unless Options.Rows sets it.
const DefaultInferRows = 256 * InferBatchRows

// InferGoal is the rate of the infer step with the MLP, in rows per second
// per core, the scenario is meant to reach.
const InferGoal = 1_000_000

// InferResult holds the figures of the infer scenario.
type InferResult struct {
	// Rows is the number of rows each measurement scored, in batches of
	// BatchRows (at most 16 batches for the sequence model and for gonnx
	// called once per row).
	Rows      int64 `json:"rows"`
	BatchRows int   `json:"batch_rows"`
	// Features is the number of input columns of both models.
	Features int        `json:"features"`
	Models   []InferRun `json:"models"`
	// Goal is InferGoal; MeetsGoal says whether the step reached it with
	// the MLP.
	Goal      float64 `json:"goal_rows_per_s_per_core"`
	MeetsGoal bool    `json:"meets_goal"`
}

// InferRun holds the figures of one model. Rates are rows per CPU second
// (rows per second per core), or per second of wall time where CPU time
// cannot be read; allocations are per row scored.
type InferRun struct {
	Model   string `json:"model"`
	Runtime string `json:"runtime"`
	// Path is how the model runs: "dense" (an ONNX chain of dense layers
	// run by the step's own loop), "gonnx", "gonnx, sequence" (a
	// recurrent model fed each asset's last rows), or "leaves" (trees).
	Path string `json:"path"`
	// Step*: the infer step (infer.Step.Process) on batches of BatchRows
	// rows: features read from the Arrow columns, one model call, output
	// columns, a threshold flag and model_version built.
	StepRowsPerSec   float64 `json:"step_rows_per_s"`
	StepAllocsPerRow float64 `json:"step_allocs_per_row"`
	// Batch*: the model alone (infer.Model.Predict), one call per batch.
	BatchRowsPerSec   float64 `json:"batch_rows_per_s"`
	BatchAllocsPerRow float64 `json:"batch_allocs_per_row"`
	// PerRow*: the same model and rows, one call per row.
	PerRowRowsPerSec   float64 `json:"per_row_rows_per_s"`
	PerRowAllocsPerRow float64 `json:"per_row_allocs_per_row"`
	// Ratio is BatchRowsPerSec over PerRowRowsPerSec.
	Ratio float64 `json:"ratio"`
}

// writeTable writes the infer figures for people.
func (r *InferResult) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "\ninfer: %s rows per measurement in batches of %d, %d float64 features, one goroutine (rows/s per core)\n",
		group(r.Rows), r.BatchRows, r.Features)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tpath\tstep rows/s\tstep allocs/row\tbatch rows/s\tper-row rows/s\tratio\tbatch allocs/row\tper-row allocs/row\t")
	for _, m := range r.Models {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%s\t%s\t%.2f\t%.3f\t%.3f\t\n", m.Model, m.Path, group(int64(m.StepRowsPerSec)), m.StepAllocsPerRow,
			group(int64(m.BatchRowsPerSec)), group(int64(m.PerRowRowsPerSec)), m.Ratio, m.BatchAllocsPerRow, m.PerRowAllocsPerRow)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "meets"
	if !r.MeetsGoal {
		verdict = "misses"
	}
	fmt.Fprintf(w, "the infer step with the MLP %s the goal of >= %s rows/s per core; batch and per-row call the same model on the same rows in this run\n",
		verdict, group(int64(r.Goal)))
	return nil
}
