package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"

	"github.com/sluice-edge/sluice/engine/bundle/bundletest"
	"github.com/sluice-edge/sluice/operators/infer/infertest"
)

// erfModel is a 3-input graph with an operator the onnx runtime does not
// have (Erf, node 1).
func erfModel() string {
	g := &onnx.GraphProto{
		Input:       []*onnx.ValueInfoProto{infertest.ValueInfo("x", onnx.TensorProto_FLOAT, "batch", 3)},
		Output:      []*onnx.ValueInfoProto{infertest.ValueInfo("y", onnx.TensorProto_FLOAT, "batch", 1)},
		Initializer: []*onnx.TensorProto{infertest.FloatTensor("w", []float32{1, 1, 1}, 3, 1)},
		Node: []*onnx.NodeProto{
			infertest.Node("MatMul", "mm", []string{"x", "w"}, []string{"h"}),
			infertest.Node("Erf", "erf", []string{"h"}, []string{"y"}),
		},
	}
	return string(infertest.ModelBytes(g, 13))
}

// TestBundleBuildChecksModels: bundle build loads every model an infer
// step references before it writes anything: a corrupt model, a model
// with an unsupported operator, one whose inputs do not match the step's
// features, or a sequence model fed without its sequence, refuse the
// build with the reason at the step's file:line:col, and no bundle is
// written; a model that loads builds, also when another part of the
// release has a problem only the edge can judge (a variable it sets).
func TestBundleBuildChecksModels(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "release")
	if code, _, stderr := run(t, "bundle", "keygen", "--out", prefix); code != 0 {
		t.Fatal(stderr)
	}
	const pipeline = `sources:
  s: {type: sim, turbines: 2, rows: 10}
steps:
  scored:
    type: infer
    input: s
    model: ../ml/m.onnx
    features: [wind_speed, pitch_angle, ambient_temp]
%s
sinks:
  o: {type: discard, input: scored}
`
	good := string(infertest.NewMLP(1, "Relu", true, 3, 4, 1).ONNX())
	broken := "sources:\n  s: {type: nosuch}\nsinks:\n  o: {type: discard, input: s}\n"
	for i, c := range []struct {
		name  string
		files map[string]string
		want  string // "" builds
	}{
		{"good", map[string]string{"pipelines/p.yaml": fmt.Sprintf(pipeline, ""), "ml/m.onnx": good}, ""},
		{"corrupt", map[string]string{"pipelines/p.yaml": fmt.Sprintf(pipeline, ""), "ml/m.onnx": "weights"},
			"pipelines/p.yaml:7:12: model ../ml/m.onnx: not an ONNX model"},
		{"unsupported operator", map[string]string{"pipelines/p.yaml": fmt.Sprintf(pipeline, ""), "ml/m.onnx": erfModel()},
			`pipelines/p.yaml:7:12: model ../ml/m.onnx: the onnx runtime does not support Erf (node 1 "erf")`},
		{"features", map[string]string{"pipelines/p.yaml": fmt.Sprintf(pipeline, ""), "ml/m.onnx": string(infertest.NewMLP(2, "Relu", true, 4, 2, 1).ONNX())},
			"pipelines/p.yaml:8:15: 3 features listed, the model takes 4"},
		{"sequence", map[string]string{"pipelines/p.yaml": fmt.Sprintf(pipeline, ""), "ml/m.onnx": string(infertest.NewSeqGRU(3, 5, 3, 4).ONNX())},
			"set sequence: {length: 5}"},
		{"sequence set", map[string]string{"pipelines/p.yaml": fmt.Sprintf(pipeline, "    sequence: {length: 5}"), "ml/m.onnx": string(infertest.NewSeqGRU(3, 5, 3, 4).ONNX())}, ""},
		{"missing", map[string]string{"pipelines/p.yaml": fmt.Sprintf(pipeline, ""), "ml/other.onnx": good},
			"pipelines/p.yaml:7:12: model ../ml/m.onnx: no such file in the release"},
		{"corrupt, release broken elsewhere", map[string]string{"pipelines/p.yaml": fmt.Sprintf(pipeline, ""), "pipelines/q.yaml": broken, "ml/m.onnx": erfModel()},
			`pipelines/p.yaml:7:12: model ../ml/m.onnx: the onnx runtime does not support Erf (node 1 "erf")`},
		{"good, release broken elsewhere", map[string]string{"pipelines/p.yaml": fmt.Sprintf(pipeline, ""), "pipelines/q.yaml": broken, "ml/m.onnx": good}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := bundletest.WriteTree(t, filepath.Join(dir, fmt.Sprintf("src%d", i)), c.files)
			out := filepath.Join(dir, fmt.Sprintf("v%d.bundle", i))
			code, stdout, stderr := run(t, "bundle", "build", src, "--name", "w", "--version", "1", "--key", prefix+".key", "--out", out)
			if c.want == "" {
				if code != 0 || !strings.Contains(stdout, "built w v1") {
					t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
				}
				return
			}
			if code != exitFailed || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "a model of the release is refused") {
				t.Fatalf("exit %d, want %d and %q:\n%s", code, exitFailed, c.want, stderr)
			}
			if strings.Contains(stderr, "nosuch") {
				t.Errorf("the build reports what is not a model's:\n%s", stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a refused build wrote %s (%v)", out, err)
			}
		})
	}
}
