package infer

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// features are the model features of the test stream: f0..f8 float64, n
// int64 (the tenth feature).
var featureNames = []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "n"}

var in = func() *engine.Schema {
	fields := []engine.Field{{Name: "time", Type: engine.Timestamp}, {Name: "asset", Type: engine.String}}
	for _, f := range featureNames[:9] {
		fields = append(fields, engine.Field{Name: f, Type: engine.Float64})
	}
	fields = append(fields, engine.Field{Name: "n", Type: engine.Int64}, engine.Field{Name: "status", Type: engine.String})
	return engine.MustSchema(fields, "time", "asset")
}()

var t0 = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// streamRows returns rows whose features are the given matrix (the tenth
// feature is rounded to an integer, in place).
func streamRows(x []float64, rows int) []enginetest.Row {
	out := make([]enginetest.Row, rows)
	for r := range rows {
		f := x[r*10 : r*10+10]
		f[9] = math.Round(f[9] * 10)
		row := enginetest.Row{t0 + int64(r)*1000, fmt.Sprintf("wt-%03d", r%100)}
		for _, v := range f[:9] {
			row = append(row, v)
		}
		out[r] = append(row, int64(f[9]), "run")
	}
	return out
}

func parse(t testing.TB, src string) *spec.Config {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := Spec.Parse("p.yaml", &n, "type", "input")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return cfg
}

// writeModel writes a generated model into dir and returns its name.
func writeModel(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// runStep builds a step from config (models in dir), feeds it the batches
// and returns its output per port and its counters.
func runStep(t *testing.T, dir, config string, batches ...[]enginetest.Row) (map[int][]enginetest.Row, map[string]int64) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	counters := engine.NewCounters()
	op, err := New(parse(t, config), in, engine.BuildContext{Dir: dir, Mem: mem, Counters: counters})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	col := enginetest.NewCollector()
	ports := op.Outputs()
	emit := func(port int, b engine.Batch) error {
		if !b.Rec.Schema().Equal(ports[port].Schema.Arrow()) {
			t.Errorf("port %d: schema %s, declared %s", port, b.Rec.Schema(), ports[port].Schema.Arrow())
		}
		return col.Emit(port, b)
	}
	for _, rows := range batches {
		if err := op.Process(engine.Batch{Rec: enginetest.Record(mem, in, rows...)}, emit); err != nil {
			t.Fatal(err)
		}
	}
	if err := op.Close(); err != nil {
		t.Fatal(err)
	}
	return map[int][]enginetest.Row{0: col.Port(0), 1: col.Port(1)}, counters.Snapshot()
}

func split(rows []enginetest.Row, size int) [][]enginetest.Row {
	var out [][]enginetest.Row
	for len(rows) > 0 {
		n := min(size, len(rows))
		out = append(out, rows[:n])
		rows = rows[n:]
	}
	return out
}

// TestStepGolden: the step scores a stream with each generated model
// (MLP, LSTM, tree ensembles) as the plain-Go reference does, to 1e-6
// relative, and gives identical columns whether the 4,096 rows come as
// one batch scored in one call, as one batch scored in calls of 100 rows
// (batch_rows), or as batches of one row (the first 512 rows; the model
// tests compare calls of one row for all 4,096).
func TestStepGolden(t *testing.T) {
	const rows, singles = 4096, 512
	dir := t.TempDir()
	mlp := newMLP(11, "Relu", true, 10, 32, 16, 1)
	lstm := newLSTM(12, 5, 2, 6)
	trees := newEnsemble(13, 100, 6, 10, "regression")
	cases := []struct {
		name, file string
		data       []byte
		ref        func([]float64) float64
	}{
		{"mlp", "mlp.onnx", mlp.ONNX(), func(x []float64) float64 { return mlp.Ref(x)[0] }},
		{"lstm", "lstm.onnx", lstm.ONNX(), lstm.Ref},
		{"trees", "trees.txt", trees.Text(nil), trees.Ref},
	}
	x := randRows(21, rows, 10)
	input := streamRows(x, rows)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			writeModel(t, dir, c.file, c.data)
			cfg := fmt.Sprintf("model: %s\nfeatures: [%s]\n", c.file, strings.Join(featureNames, ", "))
			one, cnt := runStep(t, dir, cfg, input)
			if cnt["model_calls"] != 1 || cnt["scored_rows"] != rows {
				t.Errorf("counters %v: want 1 model call for %d rows", cnt, rows)
			}
			chunked, cnt1 := runStep(t, dir, cfg+"batch_rows: 100\n", input)
			if cnt1["model_calls"] != (rows+99)/100 {
				t.Errorf("batch_rows 100: %d model calls, want %d", cnt1["model_calls"], (rows+99)/100)
			}
			single, _ := runStep(t, dir, cfg, split(input[:singles], 1)...)
			pi, vi := len(in.Fields), len(in.Fields)+1
			digest := Digest(c.data)
			if len(one[0]) != rows || len(chunked[0]) != rows || len(single[0]) != singles {
				t.Fatalf("%d, %d, %d rows out", len(one[0]), len(chunked[0]), len(single[0]))
			}
			for r := range rows {
				p := one[0][r][pi].(float64)
				if p != chunked[0][r][pi].(float64) || r < singles && p != single[0][r][pi].(float64) {
					t.Fatalf("row %d: %v (one call), %v (calls of 100 rows), batches of one row %v", r, p, chunked[0][r][pi], single[0][min(r, singles-1)][pi])
				}
				want := c.ref(x[r*10 : r*10+10])
				if !relClose(p, want, 1e-6) {
					t.Fatalf("row %d: %v, reference %v", r, p, want)
				}
				if one[0][r][vi] != digest {
					t.Fatalf("row %d: model_version %v, want %s", r, one[0][r][vi], digest)
				}
				if one[0][r][1] != input[r][1] || one[0][r][2] != input[r][2] {
					t.Fatalf("row %d: input columns changed", r)
				}
			}
		})
	}
}

// TestInvalidInputs: a row with a null, NaN or infinite feature goes to
// the errors port with the reason (on_invalid: errors), or passes with null
// outputs and flags (on_invalid: pass); the other rows are scored as if it
// were absent.
func TestInvalidInputs(t *testing.T) {
	dir := t.TempDir()
	m := newMLP(31, "Tanh", true, 10, 8, 1)
	writeModel(t, dir, "m.onnx", m.ONNX())
	x := randRows(32, 6, 10)
	rows := streamRows(x, 6)
	rows[1][4] = math.NaN()    // f2
	rows[2][5] = math.Inf(1)   // f3
	rows[3][2] = nil           // f0
	rows[4][11] = nil          // n
	rows[5][10] = math.Inf(-1) // f8
	reasons := []string{"feature f2 is NaN", "feature f3 is infinite", "feature f0 is null", "feature n is null", "feature f8 is infinite"}
	base := fmt.Sprintf("model: m.onnx\nversion: v7\nfeatures: [%s]\nthresholds: [{column: high, above: 0}]\n", strings.Join(featureNames, ", "))
	pi := len(in.Fields)

	t.Run("errors", func(t *testing.T) {
		out, cnt := runStep(t, dir, base, rows)
		if len(out[0]) != 1 || out[0][0][1] != rows[0][1] {
			t.Fatalf("main port: %v, want row 0 only", out[0])
		}
		if want := m.Ref(x[:10])[0]; !relClose(out[0][0][pi].(float64), want, 1e-6) || out[0][0][pi+1] != (want > 0) || out[0][0][pi+2] != "v7" {
			t.Errorf("row 0: %v, reference %v", out[0][0][pi:], want)
		}
		if len(out[1]) != 5 {
			t.Fatalf("errors port: %d rows, want 5", len(out[1]))
		}
		for i, r := range out[1] {
			if r[len(r)-1] != reasons[i] || r[1] != rows[i+1][1] {
				t.Errorf("error row %d: %v, want reason %q", i, r, reasons[i])
			}
		}
		if cnt["error_rows"] != 5 || cnt["scored_rows"] != 1 {
			t.Errorf("counters %v", cnt)
		}
	})
	t.Run("pass", func(t *testing.T) {
		out, cnt := runStep(t, dir, base+"on_invalid: pass\n", rows)
		if len(out[0]) != 6 || len(out[1]) != 0 {
			t.Fatalf("%d rows out, %d errors; want 6 and 0", len(out[0]), len(out[1]))
		}
		for i, r := range out[0] {
			if i == 0 {
				if r[pi] == nil || r[pi+1] == nil {
					t.Errorf("row 0 not scored: %v", r[pi:])
				}
				continue
			}
			if r[pi] != nil || r[pi+1] != nil || r[pi+2] != "v7" || r[1] != rows[i][1] {
				t.Errorf("row %d: %v, want null outputs and flag", i, r[pi:])
			}
		}
		if cnt["null_output_rows"] != 5 || cnt["error_rows"] != 0 {
			t.Errorf("counters %v", cnt)
		}
	})
}

// TestTransformAndThresholds: features are scaled and offset before the
// model; flags compare an output with its threshold; feature names come
// from a LightGBM model file when features is not set.
func TestTransformAndThresholds(t *testing.T) {
	dir := t.TempDir()
	e := newEnsemble(41, 30, 5, 10, "binary sigmoid:1")
	writeModel(t, dir, "m.txt", e.Text(featureNames))
	x := randRows(42, 200, 10)
	rows := streamRows(x, 200)
	out, _ := runStep(t, dir, `model: m.txt
transform: {f1: {scale: 2, offset: -0.5}, n: {scale: 0.1}}
thresholds: [{column: alarm, output: score, above: 0.6}, {column: quiet, below: 0.2}]
`, rows)
	pi := len(in.Fields)
	if len(out[0]) != 200 {
		t.Fatalf("%d rows", len(out[0]))
	}
	for r, row := range out[0] {
		f := append([]float64(nil), x[r*10:r*10+10]...)
		f[1] = f[1]*2 - 0.5
		f[9] *= 0.1
		want := e.Ref(f)
		got := row[pi].(float64)
		if !relClose(got, want, 1e-9) || row[pi+1] != (got > 0.6) || row[pi+2] != (got < 0.2) {
			t.Fatalf("row %d: %v, reference score %v", r, row[pi:], want)
		}
	}
}

// TestConfigErrors: configuration mistakes and unsupported models are
// reported when the step is built, at the field at fault.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "m.onnx", newMLP(51, "Relu", true, 10, 4, 2).ONNX())
	writeModel(t, dir, "erf.onnx", modelBytes(&onnx_graph_erf, 13))
	writeModel(t, dir, "t.txt", newEnsemble(52, 3, 2, 3, "regression").Text([]string{"f0", "f1", "f2"}))
	writeModel(t, dir, "m.pkl", []byte("x"))
	feats := "features: [" + strings.Join(featureNames, ", ") + "]"
	cases := []struct {
		name, config, want string
	}{
		{"unsupported operator", "model: erf.onnx\nfeatures: [f0, f1]", `p.yaml:1:8: model erf.onnx: the onnx runtime does not support Erf (node 1 "erf")`},
		{"missing file", "model: none.onnx\n" + feats, "p.yaml:1:8: model none.onnx:"},
		{"unknown extension", "model: m.pkl\n" + feats, "cannot tell the runtime"},
		{"feature count", "model: m.onnx\nfeatures: [f0, f1]", "p.yaml:2:11: 2 features listed, the model takes 10"},
		{"unknown feature", "model: m.onnx\nfeatures: [f0, f1, f2, f3, f4, f5, f6, f7, f8, nope]", `feature "nope" is not a column`},
		{"string feature", "model: m.onnx\nfeatures: [f0, f1, f2, f3, f4, f5, f6, f7, f8, status]", `feature "status" is string`},
		{"no feature names", "model: m.onnx", "the model file names no features"},
		{"names differ", "model: t.txt\nfeatures: [f0, f2, f1]", "differ from the model's feature names"},
		{"outputs count", "model: m.onnx\n" + feats + "\noutputs: [a]", "1 outputs named, the model gives 2 values per row (y: 2)"},
		{"output exists", "model: m.onnx\n" + feats + "\noutputs: [f0, b]", `column "f0" exists already`},
		{"threshold both", "model: m.onnx\n" + feats + "\nthresholds: [{column: x, above: 1, below: 2}]", "set exactly one of above and below"},
		{"threshold output", "model: m.onnx\n" + feats + "\nthresholds: [{column: x, output: z, above: 1}]", `"z" is not one of the outputs`},
		{"transform key", "model: m.onnx\n" + feats + "\ntransform: {zz: {scale: 2}}", `"zz" is not one of the features`},
		{"batch rows", "model: m.onnx\n" + feats + "\nbatch_rows: 0", "batch_rows must be at least 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(parse(t, c.config), in, engine.BuildContext{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// TestRegistered: the step is registered under its name.
func TestRegistered(t *testing.T) {
	if _, ok := engine.Lookup(spec.KindStep, "infer"); !ok {
		t.Fatal("infer is not registered")
	}
}

// TestOperatorSuite: the step keeps the operator contract.
func TestOperatorSuite(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "m.onnx", newMLP(61, "Relu", true, 10, 4, 1).ONNX())
	x := randRows(62, 8, 10)
	rows := streamRows(x, 8)
	rows[3][4] = math.NaN()
	for _, mode := range []string{"errors", "pass"} {
		t.Run(mode, func(t *testing.T) {
			enginetest.RunOperatorSuite(t, enginetest.OperatorCase{
				New: func(t testing.TB, mem memory.Allocator) engine.Operator {
					op, err := New(parse(t, fmt.Sprintf("model: m.onnx\non_invalid: %s\nfeatures: [%s]", mode, strings.Join(featureNames, ", "))),
						in, engine.BuildContext{Dir: dir, Mem: mem})
					if err != nil {
						t.Fatal(err)
					}
					return op
				},
				In:    in,
				Input: [][]enginetest.Row{rows[:4], rows[4:], {}},
			})
		})
	}
}
