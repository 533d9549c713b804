package infer

// The models the tests run are built by package infertest, from gonnx's
// ONNX protobuf types or as LightGBM text, together with a plain-Go
// reference computation of the same model. Nothing comes from outside the
// repository.

import (
	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-edge/sluice/operators/infer/infertest"
)

var (
	newMLP      = infertest.NewMLP
	newLSTM     = infertest.NewLSTM
	newEnsemble = infertest.NewEnsemble
	valueInfo   = infertest.ValueInfo
	floatTensor = infertest.FloatTensor
	node        = infertest.Node
	stringAttr  = infertest.StringAttr
	modelBytes  = infertest.ModelBytes
)

func protoUnmarshal(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }

func protoMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// onnx_graph_erf is a graph with an operator gonnx does not implement.
var onnx_graph_erf = onnx.GraphProto{
	Input:       []*onnx.ValueInfoProto{valueInfo("x", onnx.TensorProto_FLOAT, "batch", 2)},
	Output:      []*onnx.ValueInfoProto{valueInfo("y", onnx.TensorProto_FLOAT, "batch", 2)},
	Initializer: []*onnx.TensorProto{floatTensor("w", []float32{1, 0, 0, 1}, 2, 2)},
	Node: []*onnx.NodeProto{
		node("MatMul", "mm", []string{"x", "w"}, []string{"h"}),
		node("Erf", "erf", []string{"h"}, []string{"y"}),
	},
}
