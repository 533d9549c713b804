// Package infer provides the "infer" step: it scores every row of a stream
// with a model trained in the cloud — an ONNX graph (run by gonnx, pure Go)
// or a gradient-boosted tree ensemble (LightGBM or XGBoost, run by leaves,
// pure Go) — and adds the model's outputs as new columns, with the model's
// version.
//
// The model runs on whole batches: the valid rows of a batch are gathered
// into one [rows x features] matrix and the model is called once for it
// (once per batch_rows rows), never once per row; the matrices are reused
// from batch to batch. A model is loaded, checked against what its runtime
// supports and run once on a row of zeros when the step is built, so an
// unsupported operator is reported by sluice validate, located, and never
// at the first row. See docs/infer.md.
package infer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/rowexpr"
	"github.com/sluice-edge/sluice/engine/spec"
)

// ErrorsPort is the index of the "errors" output port.
const ErrorsPort = 1

// VersionColumn is the column that names the model version that scored a
// row.
const VersionColumn = "model_version"

// DefaultBatchRows is the default of batch_rows.
const DefaultBatchRows = 4096

func init() {
	engine.RegisterOperator(Spec, func(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (engine.Operator, error) {
		s, err := New(cfg, in, bc)
		if err != nil {
			return nil, err
		}
		return s.Operator(), nil
	})
}

// Operator returns the step as the engine runs it: s itself, or, with the
// sequence option, a *SequenceStep, which keeps its histories across
// restarts and release switches.
func (s *Step) Operator() engine.Operator {
	if s.seq != nil {
		return &SequenceStep{s}
	}
	return s
}

// Spec declares the "infer" step.
var Spec = spec.Spec{
	Name:    "infer",
	Summary: "Scores every row with an ONNX model or a LightGBM/XGBoost tree ensemble, in batches.",
	Description: `Feeds the ` + "`features`" + ` columns of every row, in the model's order, to a model trained in the cloud
and adds its outputs as new float64 columns (one per output element), a bool column per threshold and a
` + "`model_version`" + ` column. The model runs once per batch on a [rows x features] matrix, never once per row.

Runtimes (pure Go, inside the binary): ` + "`onnx`" + ` runs ONNX graphs of opset 13 (Gemm, MatMul, Relu, Sigmoid, Tanh,
LSTM, GRU, ...); ` + "`trees`" + ` runs LightGBM models (text or JSON) and XGBoost binary models. The model is loaded,
checked and run once on a row of zeros when the pipeline is built (also by sluice validate): an operator or a
model feature the runtime does not support is an error that names it. Rows with a null, NaN or infinite feature
go to the ` + "`errors`" + ` port with the reason, or pass with null outputs (` + "`on_invalid: pass`" + `). With ` + "`sequence`" + `
the step keeps the last K rows of every asset and feeds each row's K rows, oldest first, to a sequence model
(LSTM, GRU) as one [rows x K x features] call per batch; the histories survive restarts and release switches.
See docs/infer.md.`,
	Fields: []spec.Field{
		{Name: "model", Type: spec.String,
			Description: "Model file, relative to the pipeline file's directory. In a release: a file of the release (ml/), looked up next to the pipeline file, then from the release's root; a path that leaves the release is refused. A release that changes only this file rebuilds the step at the switch.",
			Example:     "models/power-curve.onnx"},
		{Name: "runtime", Type: spec.String, Optional: true, Enum: Runtimes,
			Description: "Runtime; by default from the model's extension: .onnx is onnx; .txt, .json, .model, .bin, .lgb are trees."},
		{Name: "features", Type: spec.List, Elem: spec.String, Optional: true,
			Description: "Input columns (float64 or int64), in the model's feature order. Optional when the model file names its features (LightGBM feature_names), which must then match the input columns.",
			Example:     []any{"wind_speed", "pitch", "ambient_temp"}},
		{Name: "outputs", Type: spec.List, Elem: spec.String, Optional: true,
			Description: "Names of the new columns, one per output element of the model, in order. Default: prediction (score for a binary or multiclass tree ensemble); with several elements, prediction_0, prediction_1, ...",
			Example:     []any{"expected_power"}},
		{Name: "version", Type: spec.String, Optional: true,
			Description: "Value of the model_version column. Default: sha256: and the first 12 hex digits of the model file's SHA-256."},
		{Name: "on_invalid", Type: spec.String, Default: "errors", Enum: []string{"errors", "pass"},
			Description: "What happens to a row with a null, NaN or infinite feature: errors sends it to the errors port with the reason; pass lets it through with null outputs and flags."},
		{Name: "batch_rows", Type: spec.Int, Default: DefaultBatchRows, Advanced: true,
			Description: "Largest number of rows in one model call; a larger batch is scored in several calls."},
		{Name: "transform", Type: spec.Map, Elem: spec.Object, Optional: true,
			Description: "Per-feature transform applied before the model: value*scale + offset (for a standardisation with mean m and deviation s: scale 1/s, offset -m/s).",
			Example:     map[string]any{"wind_speed": map[string]any{"scale": 0.25, "offset": -1.5}},
			Children: []spec.Field{
				{Name: "scale", Type: spec.Float, Default: 1.0, Description: "Factor."},
				{Name: "offset", Type: spec.Float, Default: 0.0, Description: "Added after the factor."},
			}},
		{Name: "thresholds", Type: spec.List, Elem: spec.Object, Optional: true,
			Description: "Bool columns computed from an output column: true when the output is above (or below) the threshold; null when the output is null.",
			Children: []spec.Field{
				{Name: "column", Type: spec.String, Description: "Name of the new bool column.", Example: "anomaly"},
				{Name: "output", Type: spec.String, Optional: true, Description: "Output column compared (default: the first)."},
				{Name: "above", Type: spec.Float, Optional: true, Description: "True when output > above."},
				{Name: "below", Type: spec.Float, Optional: true, Description: "True when output < below."},
			}},
		{Name: "sequence", Type: spec.Object, Optional: true,
			Description: "Feed a sequence model (LSTM, GRU over 1-minute statistics) the last length rows of each asset, the row scored last, as [length x features]; features is then required. Until an asset has length rows, its rows take the on_invalid path (reason: fewer rows yet; counted as sequence_warming_rows). A row with a null key or one longer than 256 bytes takes it too (refused_key_rows). See docs/infer.md.",
			Example:     map[string]any{"length": 10},
			Children:    sequenceFields},
	},
	Example: `scored:
  type: infer
  input: stats
  model: models/power-curve.onnx
  features: [wind_speed, pitch, ambient_temp]
  outputs: [expected_power]
  transform:
    wind_speed: {scale: 0.25, offset: -1.5}`,
}

// flag is one thresholds entry.
type flag struct {
	out   int // index of the output value compared
	above bool
	thr   float64
}

// Step is the "infer" step.
type Step struct {
	model     Model
	version   string
	files     string // FilesDigest
	in, out   *engine.Schema
	feat      []int
	scale     []float64
	offset    []float64
	null      bool
	batchRows int
	flags     []flag
	seq       *seqState // the sequence option, or nil

	// Per-feature reasons, made once so that a bad row allocates nothing.
	errNull, errNaN, errInf []error

	mem   memory.Allocator
	errs  *rowexpr.ErrorRows
	ports []engine.Port
	x, y  []float64
	valid []bool
	keep  []int32
	fcols []featCol
	preds []*array.Float64Builder
	flagB []*array.BooleanBuilder
	verB  *array.StringBuilder
	pass  []array.Builder
	arrs  []arrow.Array

	cErr, cNull, cCalls, cScored *atomic.Int64
	closed                       bool
}

// featCol is a feature column of the batch being processed.
type featCol struct {
	f     []float64
	i     []int64
	nulls arrow.Array
}

var (
	_ engine.Operator      = (*Step)(nil)
	_ engine.FileDependent = (*Step)(nil)
)

// New builds an infer step for input schema in from a configuration parsed
// with Spec: it loads the model (the path is relative to bc.Dir), checks it
// and runs it once. Errors carry the file:line:col of the field at fault.
//
// In a release (bc.ReleaseDir set) the model is a file of the release: a
// relative path is looked up next to the pipeline file, then from the
// release's root (ml/model.onnx), and must stay inside the release; an
// absolute path, a path with .. that leaves the release, or a symbolic
// link out of it is refused. The model's bytes are read once, bounded by
// the size of a bundle's file, and their digest is the step's
// FilesDigest, so that a release that changes only the model rebuilds
// the step.
func New(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext) (*Step, error) {
	name := cfg.String("model")
	var (
		data []byte
		err  error
	)
	if bc.ReleaseDir != "" {
		data, err = readReleaseModel(bc.ReleaseDir, bc.Dir, name)
	} else {
		path := name
		if !filepath.IsAbs(path) && bc.Dir != "" {
			path = filepath.Join(bc.Dir, path)
		}
		data, err = readModel(path, MaxModelBytes)
	}
	runtime := cfg.String("runtime")
	if err == nil && runtime == "" {
		runtime, err = RuntimeFor(name)
	}
	var m Model
	if err == nil {
		m, err = LoadBytes(data, runtime)
	}
	if err != nil {
		return nil, spec.Errors{cfg.Errorf("model", "model %s: %v", name, err)}
	}
	// One hash of the model's bytes gives both the files digest and the
	// default version (Digest: its first 12 hex digits).
	sum := sha256.Sum256(data)
	files := "sha256:" + hex.EncodeToString(sum[:])
	version := files[:len("sha256:")+12]
	if cfg.Has("version") {
		version = cfg.String("version")
	}
	s, err := NewWithModel(cfg, in, bc, m, version)
	if err != nil {
		return nil, err
	}
	s.files = files
	return s, nil
}

// FilesDigest returns the SHA-256 of the model file the step was built
// from ("" for a step made by NewWithModel): a release whose model file
// changes rebuilds the step (engine.FileDependent).
func (s *Step) FilesDigest() string { return s.files }

// NewWithModel is New for a model already loaded; version fills the
// model_version column.
func NewWithModel(cfg *spec.Config, in *engine.Schema, bc engine.BuildContext, m Model, version string) (*Step, error) {
	var errs spec.Errors
	s := &Step{model: m, version: version, in: in, null: cfg.String("on_invalid") == "pass"}
	s.batchRows = int(cfg.Int("batch_rows"))
	if s.batchRows < 1 {
		errs = append(errs, cfg.Errorf("batch_rows", "batch_rows must be at least 1"))
	}
	names := cfg.Strings("features")
	sm, _ := m.(SequenceModel)
	countChecked := cfg.Has("sequence")
	switch {
	case cfg.Has("sequence") && !cfg.Has("features"):
		errs = append(errs, cfg.Errorf("sequence", "sequence: list the features of one row (features)"))
		names = nil
	case cfg.Has("sequence"):
	case sm != nil && sm.SequenceSteps() > 0:
		errs = append(errs, cfg.Errorf("model", "the model takes sequences of %d steps of %d features ([batch, %d, %d]): set sequence: {length: %d}",
			sm.SequenceSteps(), m.Features()/sm.SequenceSteps(), sm.SequenceSteps(), m.Features()/sm.SequenceSteps(), sm.SequenceSteps()))
		countChecked = true
	case !cfg.Has("features"):
		names = m.FeatureNames()
		if names == nil {
			errs = append(errs, cfg.Errorf("", "features: the model file names no features; list the %d input columns in the model's order", m.Features()))
		}
	default:
		if mn := m.FeatureNames(); mn != nil && !slices.Equal(mn, names) {
			errs = append(errs, cfg.Errorf("features", "features %v differ from the model's feature names %v", names, mn))
		}
	}
	if names != nil && !countChecked && len(names) != m.Features() {
		errs = append(errs, cfg.Errorf("features", "%d features listed, the model takes %d", len(names), m.Features()))
	}
	for _, name := range names {
		i := in.Index(name)
		if i < 0 {
			errs = append(errs, cfg.Errorf("features", "feature %q is not a column of the input (%s)", name, in))
			continue
		}
		if t := in.Fields[i].Type; t != engine.Float64 && t != engine.Int64 {
			errs = append(errs, cfg.Errorf("features", "feature %q is %s; features must be float64 or int64", name, t))
			continue
		}
		s.feat = append(s.feat, i)
		s.errNull = append(s.errNull, fmt.Errorf("feature %s is null", name))
		s.errNaN = append(s.errNaN, fmt.Errorf("feature %s is NaN", name))
		s.errInf = append(s.errInf, fmt.Errorf("feature %s is infinite", name))
	}
	s.scale = make([]float64, len(names))
	s.offset = make([]float64, len(names))
	for j := range names {
		s.scale[j] = 1
	}
	for _, ent := range cfg.Entries("transform") {
		j := slices.Index(names, ent.Key)
		if j < 0 {
			errs = append(errs, spec.Errorf(ent.KeyPos, "transform: %q is not one of the features", ent.Key))
			continue
		}
		o, _ := ent.Value.(*spec.Config)
		s.scale[j], s.offset[j] = o.Float("scale"), o.Float("offset")
	}
	outNames := defaultOutputs(m)
	if cfg.Has("outputs") {
		outNames = cfg.Strings("outputs")
		if len(outNames) != m.Width() {
			errs = append(errs, cfg.Errorf("outputs", "%d outputs named, the model gives %d values per row (%s)", len(outNames), m.Width(), describeOutputs(m)))
		}
	}
	fields := slices.Clone(in.Fields)
	taken := func(name, field string, c *spec.Config) bool {
		if slices.ContainsFunc(fields, func(f engine.Field) bool { return f.Name == name }) {
			errs = append(errs, c.Errorf(field, "column %q exists already", name))
			return true
		}
		return false
	}
	for _, n := range outNames {
		if !taken(n, "outputs", cfg) {
			fields = append(fields, engine.Field{Name: n, Type: engine.Float64})
		}
	}
	for _, t := range cfg.Objects("thresholds") {
		f := flag{}
		switch {
		case t.Has("above") == t.Has("below"):
			errs = append(errs, t.Errorf("", "thresholds: set exactly one of above and below"))
			continue
		case t.Has("above"):
			f.above, f.thr = true, t.Float("above")
		default:
			f.thr = t.Float("below")
		}
		if t.Has("output") {
			f.out = slices.Index(outNames, t.String("output"))
			if f.out < 0 {
				errs = append(errs, t.Errorf("output", "thresholds: %q is not one of the outputs %v", t.String("output"), outNames))
				continue
			}
		}
		if !taken(t.String("column"), "column", t) {
			fields = append(fields, engine.Field{Name: t.String("column"), Type: engine.Bool})
			s.flags = append(s.flags, f)
		}
	}
	if !taken(VersionColumn, "", cfg) {
		fields = append(fields, engine.Field{Name: VersionColumn, Type: engine.String})
	}
	if seq := cfg.Object("sequence"); seq != nil && names != nil {
		sq, serrs := newSeqState(seq, in, names, m, s.batchRows, bc)
		errs = append(errs, serrs...)
		s.seq = sq
	}
	if len(errs) > 0 {
		return nil, errs
	}
	out, err := engine.NewSchema(fields, in.Time, in.Key)
	if err != nil {
		return nil, spec.Errors{cfg.Errorf("", "%v", err)}
	}
	s.out = out
	s.mem = bc.Mem
	if s.mem == nil {
		s.mem = memory.DefaultAllocator
	}
	counters := bc.Counters
	if counters == nil {
		counters = engine.NewCounters()
	}
	s.cErr = counters.Counter("error_rows")
	s.cNull = counters.Counter("null_output_rows")
	s.cCalls = counters.Counter("model_calls")
	s.cScored = counters.Counter("scored_rows")
	s.fcols = make([]featCol, len(s.feat))
	s.preds = make([]*array.Float64Builder, m.Width())
	for i := range s.preds {
		s.preds[i] = array.NewFloat64Builder(s.mem)
	}
	s.flagB = make([]*array.BooleanBuilder, len(s.flags))
	for i := range s.flagB {
		s.flagB[i] = array.NewBooleanBuilder(s.mem)
	}
	s.verB = array.NewStringBuilder(s.mem)
	s.pass = make([]array.Builder, len(in.Fields))
	s.arrs = make([]arrow.Array, len(fields))
	s.errs = rowexpr.NewErrorRows(s.mem, in)
	s.ports = []engine.Port{{Schema: out}, {Name: rowexpr.ErrorPort, Schema: s.errs.Schema()}}
	return s, nil
}

// defaultOutputs names the output columns when outputs is not set.
func defaultOutputs(m Model) []string {
	base := "prediction"
	if outs := m.Outputs(); len(outs) > 0 && outs[0].Probability {
		base = "score"
	}
	if m.Width() == 1 {
		return []string{base}
	}
	names := make([]string, m.Width())
	for i := range names {
		names[i] = fmt.Sprintf("%s_%d", base, i)
	}
	return names
}

func describeOutputs(m Model) string {
	parts := make([]string, 0, len(m.Outputs()))
	for _, o := range m.Outputs() {
		parts = append(parts, fmt.Sprintf("%s: %d", o.Name, o.Elems))
	}
	return strings.Join(parts, ", ")
}

// Model returns the step's model.
func (s *Step) Model() Model { return s.model }

// Version returns the value of the model_version column.
func (s *Step) Version() string { return s.version }

// Outputs returns the main port (the scored rows) and the "errors" port.
func (s *Step) Outputs() []engine.Port { return s.ports }

// Process scores the valid rows of b with one model call per batch_rows
// rows and emits them with the new columns; rows with an invalid feature go
// to the errors port or pass with null outputs (on_invalid).
func (s *Step) Process(b engine.Batch, e engine.PortEmit) error {
	if s.closed {
		b.Release()
		return errors.New("infer: Process after Close")
	}
	rec := b.Rec
	n := int(rec.NumRows())
	nf, w := s.model.Features(), s.model.Width()
	var kc keyCol
	if s.seq != nil {
		var err error
		if kc, err = s.seq.column(rec); err != nil {
			b.Release()
			return err
		}
	}
	for j, c := range s.feat {
		col := rec.Column(c)
		fc := &s.fcols[j]
		*fc = featCol{}
		switch a := col.(type) {
		case *array.Float64:
			fc.f = a.Float64Values()
		case *array.Int64:
			fc.i = a.Int64Values()
		default:
			b.Release()
			return fmt.Errorf("infer: column %s is %s, not float64 or int64", s.in.Fields[c].Name, col.DataType())
		}
		if col.NullN() > 0 {
			fc.nulls = col
		}
	}
	// The matrix holds one model call's rows (at most batch_rows): the
	// model is called each time it is full, and once for the rest.
	chunk := max(min(n, s.batchRows), 1)
	if cap(s.x) < chunk*nf {
		s.x = make([]float64, chunk*nf)
	}
	if cap(s.y) < n*w {
		s.y = make([]float64, n*w)
	}
	if cap(s.valid) < n {
		s.valid = make([]bool, n)
	}
	x, y, valid := s.x[:chunk*nf], s.y[:n*w], s.valid[:n]
	s.keep = s.keep[:0]
	good, base := 0, 0 // rows valid so far; the first of them in x
	for i := range n {
		row := x[(good-base)*nf : (good-base+1)*nf]
		raw := s.seq != nil
		if raw {
			// The row's raw features go to its asset's history, and the
			// asset's last K rows, transformed, to the matrix.
			row = s.seq.cur
		}
		var bad error
		for j := range s.fcols {
			fc := &s.fcols[j]
			if fc.nulls != nil && fc.nulls.IsNull(i) {
				bad = s.errNull[j]
				break
			}
			var v float64
			if fc.f != nil {
				v = fc.f[i]
			} else {
				v = float64(fc.i[i])
			}
			if math.IsNaN(v) {
				bad = s.errNaN[j]
				break
			}
			if math.IsInf(v, 0) {
				bad = s.errInf[j]
				break
			}
			if raw {
				row[j] = v
			} else {
				row[j] = v*s.scale[j] + s.offset[j]
			}
		}
		if raw && bad == nil {
			bad = s.seq.add(kc, i, x[(good-base)*nf:(good-base+1)*nf], s.scale, s.offset)
		}
		valid[i] = bad == nil
		switch {
		case bad == nil:
			good++
			s.keep = append(s.keep, int32(i))
			if good-base == chunk {
				if err := s.predict(x, good-base, y[base*w:good*w]); err != nil {
					b.Release()
					return err
				}
				base = good
			}
		case s.null:
			s.keep = append(s.keep, int32(i))
		default:
			s.errs.Add(i, "", bad)
		}
	}
	if good > base {
		if err := s.predict(x, good-base, y[base*w:good*w]); err != nil {
			b.Release()
			return err
		}
	}
	y = y[:good*w]
	s.cScored.Add(int64(good))
	s.cNull.Add(int64(len(s.keep) - good))
	s.cErr.Add(int64(s.errs.Len()))
	errRec := s.errs.Record(rec)
	var out arrow.RecordBatch
	if len(s.keep) > 0 {
		out = s.build(rec, valid, y)
	}
	rec.Release()
	if out != nil {
		if err := e(0, engine.Batch{Rec: out, Source: b.Source}); err != nil {
			if errRec != nil {
				errRec.Release()
			}
			return err
		}
	}
	if errRec != nil {
		return e(ErrorsPort, engine.Batch{Rec: errRec, Source: b.Source})
	}
	return nil
}

// predict calls the model once for the first rows rows of x; on error it
// drops the error rows gathered for the batch.
func (s *Step) predict(x []float64, rows int, y []float64) error {
	if err := s.model.Predict(x[:rows*s.model.Features()], rows, y); err != nil {
		s.errs.Reset()
		return fmt.Errorf("infer: %w", err)
	}
	s.cCalls.Add(1)
	return nil
}

// build assembles the output record: the kept rows of rec (shared when
// all rows are kept), the outputs, flags and version.
func (s *Step) build(rec arrow.RecordBatch, valid []bool, y []float64) arrow.RecordBatch {
	nk := len(s.keep)
	all := nk == int(rec.NumRows())
	k := 0
	for c := range s.in.Fields {
		if all {
			s.arrs[k] = rec.Column(c)
			s.arrs[k].Retain()
		} else {
			if s.pass[c] == nil {
				s.pass[c] = array.NewBuilder(s.mem, s.in.Fields[c].Type.Arrow())
			}
			rowexpr.AppendColumn(s.pass[c], rec.Column(c), s.keep)
			s.arrs[k] = s.pass[c].NewArray()
		}
		k++
	}
	w := s.model.Width()
	for o, pb := range s.preds {
		pb.Reserve(nk)
		g := 0
		for _, r := range s.keep {
			if valid[r] {
				pb.UnsafeAppend(y[g*w+o])
				g++
			} else {
				pb.UnsafeAppendBoolToBitmap(false)
			}
		}
		s.arrs[k] = pb.NewArray()
		k++
	}
	for f, fb := range s.flagB {
		fl := s.flags[f]
		fb.Reserve(nk)
		g := 0
		for _, r := range s.keep {
			if valid[r] {
				v := y[g*w+fl.out]
				fb.UnsafeAppend(fl.above && v > fl.thr || !fl.above && v < fl.thr)
				g++
			} else {
				fb.UnsafeAppendBoolToBitmap(false)
			}
		}
		s.arrs[k] = fb.NewArray()
		k++
	}
	s.verB.Reserve(nk)
	s.verB.ReserveData(nk * len(s.version))
	for range nk {
		s.verB.Append(s.version)
	}
	s.arrs[k] = s.verB.NewArray()
	out := array.NewRecordBatch(s.out.Arrow(), s.arrs, int64(nk))
	for i, a := range s.arrs {
		a.Release()
		s.arrs[i] = nil
	}
	return out
}

// Flush emits nothing: the step holds no rows.
func (s *Step) Flush(engine.PortEmit) error { return nil }

// Close releases the step's memory. It is idempotent.
func (s *Step) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	for _, b := range s.preds {
		b.Release()
	}
	for _, b := range s.flagB {
		b.Release()
	}
	for _, b := range s.pass {
		if b != nil {
			b.Release()
		}
	}
	s.verB.Release()
	s.errs.Release()
	return nil
}
