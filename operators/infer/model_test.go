package infer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/enginetest"
)

// relClose reports whether got is within tol of want, relative to |want|
// (absolute below 1).
func relClose(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*max(math.Abs(want), 1)
}

func randRows(seed uint64, rows, features int) []float64 {
	r := rand.New(rand.NewPCG(seed, 9))
	x := make([]float64, rows*features)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	return x
}

// goldenModel is a model built by the tests with its plain-Go reference.
type goldenModel struct {
	name     string
	runtime  string
	data     []byte
	features int
	ref      func(x []float64) []float64
}

func goldenModels() []goldenModel {
	m64 := newMLP(1, "Relu", true, 10, 32, 16, 1)
	m32 := newMLP(2, "Tanh", true, 10, 32, 16, 3)
	sg := newMLP(3, "Sigmoid", true, 6, 8, 2)
	ls := newLSTM(4, 4, 2, 8)
	reg := newEnsemble(5, 100, 6, 10, "regression")
	bin := newEnsemble(6, 20, 4, 10, "binary sigmoid:1")
	hub := newEnsemble(7, 10, 3, 10, "huber")
	mm := newMLP(8, "Sigmoid", true, 10, 12, 1)
	return []goldenModel{
		{"mlp-relu-10-32-16-1", "onnx", m64.ONNX(), 10, m64.Ref},
		{"mlp-matmul-add-10-12-1", "onnx", mm.ONNXMatMul(), 10, mm.Ref},
		{"mlp-tanh-10-32-16-3", "onnx", m32.ONNX(), 10, m32.Ref},
		{"mlp-sigmoid-6-8-2", "onnx", sg.ONNX(), 6, sg.Ref},
		{"lstm-4x2-8", "onnx", ls.ONNX(), 8, func(x []float64) []float64 { return []float64{ls.Ref(x)} }},
		{"lightgbm-100x6", "trees", reg.Text(nil), 10, func(x []float64) []float64 { return []float64{reg.Ref(x)} }},
		{"lightgbm-binary", "trees", bin.Text(nil), 10, func(x []float64) []float64 { return []float64{bin.Ref(x)} }},
		{"lightgbm-huber", "trees", hub.Text(nil), 10, func(x []float64) []float64 { return []float64{hub.Ref(x)} }},
	}
}

// TestGoldenModels: every generated model, run by its runtime on 4,096
// rows in one call, gives the plain-Go reference to 1e-6 relative, and
// 4,096 calls of one row give exactly the same values. ONNX models run
// both ways: MLPs by the dense-chain loop and by gonnx; the LSTM by gonnx.
func TestGoldenModels(t *testing.T) {
	const rows = 4096
	for _, g := range goldenModels() {
		for _, viaGonnx := range []bool{false, true} {
			name := g.name
			if viaGonnx {
				if !strings.HasPrefix(g.name, "mlp") {
					continue // the other models run in gonnx, or are trees
				}
				name += "/gonnx"
			}
			t.Run(name, func(t *testing.T) {
				m, err := LoadBytes(g.data, g.runtime)
				if err != nil {
					t.Fatal(err)
				}
				if om, ok := m.(*onnxModel); ok {
					if strings.HasPrefix(g.name, "mlp") != (om.dense != nil) {
						t.Fatalf("dense path: %v", om.dense != nil)
					}
					if viaGonnx {
						om.dense = nil
					}
				}
				if m.Features() != g.features {
					t.Fatalf("features %d, want %d", m.Features(), g.features)
				}
				w := m.Width()
				x := randRows(7, rows, g.features)
				batch := make([]float64, rows*w)
				if err := m.Predict(x, rows, batch); err != nil {
					t.Fatal(err)
				}
				single := make([]float64, rows*w)
				for r := range rows {
					if err := m.Predict(x[r*g.features:(r+1)*g.features], 1, single[r*w:(r+1)*w]); err != nil {
						t.Fatal(err)
					}
				}
				worst := 0.0
				for r := range rows {
					want := g.ref(x[r*g.features : (r+1)*g.features])
					if len(want) != w {
						t.Fatalf("width %d, reference %d", w, len(want))
					}
					for o := range w {
						got := batch[r*w+o]
						if got != single[r*w+o] {
							t.Fatalf("row %d output %d: batch of %d gives %v, batch of 1 gives %v", r, o, rows, got, single[r*w+o])
						}
						if !relClose(got, want[o], 1e-6) {
							t.Fatalf("row %d output %d: got %v, reference %v", r, o, got, want[o])
						}
						worst = max(worst, math.Abs(got-want[o])/max(math.Abs(want[o]), 1))
					}
				}
				t.Logf("%d rows, worst relative difference to the reference %.2g", rows, worst)
			})
		}
	}
}

// TestUnsupportedIsLocated: what a runtime cannot run is refused when the
// model is loaded, naming the operator (and the node) or the feature.
func TestUnsupportedIsLocated(t *testing.T) {
	graph := func(nodes ...*onnx.NodeProto) *onnx.GraphProto {
		return &onnx.GraphProto{
			Input:       []*onnx.ValueInfoProto{valueInfo("x", onnx.TensorProto_FLOAT, "batch", 2)},
			Output:      []*onnx.ValueInfoProto{valueInfo("y", onnx.TensorProto_FLOAT, "batch", 2)},
			Node:        nodes,
			Initializer: []*onnx.TensorProto{floatTensor("w", []float32{1, 0, 0, 1}, 2, 2)},
		}
	}
	mlOp := node("TreeEnsembleRegressor", "forest", []string{"x"}, []string{"y"})
	mlOp.Domain = "ai.onnx.ml"
	bidi := newLSTM(1, 2, 1, 2)
	bidiModel := func() []byte {
		b := bidi.ONNX()
		mp := &onnx.ModelProto{}
		if err := protoUnmarshal(b, mp); err != nil {
			t.Fatal(err)
		}
		for _, n := range mp.Graph.Node {
			if n.OpType == "LSTM" {
				n.Attribute = append(n.Attribute, stringAttr("direction", "bidirectional"))
			}
		}
		return protoMarshal(mp)
	}()
	lin := newEnsemble(1, 2, 2, 3, "regression")
	lin.ExtraTree = "is_linear=1\n"
	rank := newEnsemble(1, 2, 2, 3, "lambdarank")
	cases := []struct {
		name, runtime string
		data          []byte
		want          []string
	}{
		{"unknown operator", "onnx", modelBytes(graph(
			node("MatMul", "mm", []string{"x", "w"}, []string{"h"}),
			node("Erf", "gelu_erf", []string{"h"}, []string{"y"})), 13),
			[]string{"Erf", `node 1 "gelu_erf"`}},
		{"ai.onnx.ml tree ensemble", "onnx", modelBytes(graph(mlOp), 13),
			[]string{"ai.onnx.ml.TreeEnsembleRegressor", `node 0 "forest"`}},
		{"double Gemm", "onnx", newMLP(1, "Relu", false, 2, 2).ONNX(), []string{"test inference", `node 0 "dense0" (Gemm)`}},
		{"opset 17", "onnx", modelBytes(graph(node("MatMul", "mm", []string{"x", "w"}, []string{"y"})), 17),
			[]string{"opset 17"}},
		{"bidirectional LSTM", "onnx", bidiModel, []string{"LSTM", `node 2 "lstm"`, "direction"}},
		{"linear trees", "trees", lin.Text(nil), []string{"linear trees", "Tree=0"}},
		{"ranking objective", "trees", rank.Text(nil), []string{"objective lambdarank"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadBytes(c.data, c.runtime)
			var ue *UnsupportedError
			if err == nil || !errors.As(err, &ue) && c.name != "double Gemm" {
				t.Fatalf("got %v, want an UnsupportedError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// TestModelNotRegularFile: a model path that names a named pipe, or a
// directory, is refused at once, outside and inside a release; opening
// the pipe does not wait for a writer.
func TestModelNotRegularFile(t *testing.T) {
	root := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(root, "pipe.onnx"), 0o600); err != nil {
		t.Skip("no named pipes:", err)
	}
	if err := os.Mkdir(filepath.Join(root, "dir.onnx"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pipe.onnx", "dir.onnx"} {
		for _, release := range []string{"", root} {
			t.Run(fmt.Sprintf("%s release=%v", name, release != ""), func(t *testing.T) {
				cfg := parse(t, fmt.Sprintf("model: %s\nfeatures: [%s]", name, strings.Join(featureNames, ", ")))
				bc := engine.BuildContext{Dir: root, ReleaseDir: release}
				err := enginetest.Within(t, 10*time.Second, "reading "+name, func() error {
					op, err := New(cfg, in, bc)
					if err == nil {
						op.Close()
					}
					return err
				})
				if err == nil || !strings.Contains(err.Error(), "not a regular file") {
					t.Fatalf("err = %v, want not a regular file", err)
				}
			})
		}
	}
}
