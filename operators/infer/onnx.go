package infer

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/advancedclimatesystems/gonnx"
	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/advancedclimatesystems/gonnx/ops/opset13"
	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"
)

// ONNXOpset is the only ONNX opset the onnx runtime runs.
const ONNXOpset = 13

// onnxDomains are the operator domains the onnx runtime accepts: the
// default one and ai.onnx.ml (for its LinearRegressor and Scaler).
var onnxDomains = []string{"", "ai.onnx", "ai.onnx.ml"}

// ONNXOperators returns the operators the onnx runtime supports, sorted.
func ONNXOperators() []string {
	ops := opset13.GetOpNames()
	slices.Sort(ops)
	return ops
}

// onnxModel runs an ONNX graph with gonnx. The graph has one input of
// shape [batch, features] (float or double, dynamic batch) and one or
// more float or double outputs whose first dimension is the batch.
type onnxModel struct {
	graph    *onnx.GraphProto
	params   gonnx.Tensors
	tensors  gonnx.Tensors
	args     []tensor.Tensor
	nodes    []*onnx.NodeProto // what each node's operator is initialised with
	dense    *denseNet         // the graph as a chain of dense layers, or nil
	in       string
	features int
	steps    int // sequence steps of a [batch, steps, values] input, 0 for [batch, features]
	f32      bool
	outs     []Output
	width    int
	buf32    []float32
}

func loadONNX(data []byte) (*onnxModel, error) {
	mp, err := gonnx.ModelProtoFromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("not an ONNX model: %w", err)
	}
	if mp.GetGraph() == nil {
		return nil, errors.New("the ONNX model has no graph")
	}
	if err := checkONNX(mp); err != nil {
		return nil, err
	}
	params, err := mp.GetGraph().Params()
	if err != nil {
		return nil, fmt.Errorf("onnx initializers: %w", err)
	}
	m := &onnxModel{graph: mp.GetGraph(), params: params, tensors: gonnx.Tensors{}}
	m.nodes = initNodes(mp.GetGraph())
	var ins []*onnx.ValueInfoProto
	for _, vi := range mp.GetGraph().GetInput() {
		if _, ok := params[vi.GetName()]; !ok {
			ins = append(ins, vi)
		}
	}
	if len(ins) != 1 {
		return nil, fmt.Errorf("the ONNX graph has %d inputs; the infer step feeds exactly one, of shape [batch, features]", len(ins))
	}
	vi := ins[0]
	m.in = vi.GetName()
	tt := vi.GetType().GetTensorType()
	switch onnx.TensorProto_DataType(tt.GetElemType()) {
	case onnx.TensorProto_FLOAT:
		m.f32 = true
	case onnx.TensorProto_DOUBLE:
	default:
		return nil, fmt.Errorf("input %q has element type %s; the infer step feeds float or double",
			m.in, onnx.TensorProto_DataType(tt.GetElemType()))
	}
	dims := tt.GetShape().GetDim()
	if len(dims) != 2 && len(dims) != 3 {
		return nil, fmt.Errorf("input %q has %d dimensions; the infer step feeds [batch, features], or [batch, steps, features] to a sequence model", m.in, len(dims))
	}
	if dims[0].GetDimValue() > 0 {
		return nil, fmt.Errorf("input %q has a fixed batch dimension of %d; export the model with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={%q: {0: \"batch\"}}))",
			m.in, dims[0].GetDimValue(), m.in)
	}
	m.features = 1
	for d := 1; d < len(dims); d++ {
		v := dims[d].GetDimValue()
		if v <= 0 || v > maxInputDim {
			what := "number of features"
			if len(dims) == 3 && d == 1 {
				what = "number of sequence steps"
			}
			return nil, fmt.Errorf("input %q has no fixed %s (dimension %d): export it with a fixed one (at most %d)", m.in, what, d, maxInputDim)
		}
		m.features *= int(v)
	}
	if len(dims) == 3 {
		m.steps = int(dims[1].GetDimValue())
	}
	for _, o := range mp.GetGraph().GetOutput() {
		switch onnx.TensorProto_DataType(o.GetType().GetTensorType().GetElemType()) {
		case onnx.TensorProto_FLOAT, onnx.TensorProto_DOUBLE:
		default:
			return nil, fmt.Errorf("output %q has element type %s; the infer step reads float or double outputs",
				o.GetName(), onnx.TensorProto_DataType(o.GetType().GetTensorType().GetElemType()))
		}
	}
	// The outputs' sizes per row come from running the graph once.
	res, err := m.run(make([]float64, m.features), 1)
	if err != nil {
		return nil, fmt.Errorf("test inference on a row of zeros: %w", err)
	}
	for _, name := range mp.GetGraph().OutputNames() {
		t := res[name]
		if t == nil {
			return nil, fmt.Errorf("output %q: the graph does not compute it", name)
		}
		shape := t.Shape()
		if len(shape) == 0 || shape[0] != 1 {
			return nil, fmt.Errorf("output %q has shape %v for one input row; the infer step wants the batch as its first dimension", name, shape)
		}
		o := Output{Name: name, Shape: slices.Clone([]int(shape[1:])), Elems: t.Shape().TotalSize()}
		m.outs = append(m.outs, o)
		m.width += o.Elems
	}
	if m.steps > 0 {
		// A sequence input runs in gonnx.
	} else if d := compileDense(mp.GetGraph(), params, m.in, m.features, m.f32); d != nil && d.width() == m.width {
		m.dense = d
	}
	return m, nil
}

// checkONNX refuses what the runtime cannot run, naming it: an opset other
// than 13, an operator of another domain or one gonnx does not implement,
// an attribute an operator does not support.
func checkONNX(mp *onnx.ModelProto) error {
	found := false
	for _, imp := range mp.GetOpsetImport() {
		switch imp.GetDomain() {
		case "", "ai.onnx":
			found = true
			if imp.GetVersion() != ONNXOpset {
				return &UnsupportedError{Runtime: "onnx", Operator: fmt.Sprintf("opset %d", imp.GetVersion()),
					Reason: fmt.Sprintf("export with opset %d (torch.onnx.export(..., opset_version=%d))", ONNXOpset, ONNXOpset)}
			}
		case "ai.onnx.ml":
		default:
			return &UnsupportedError{Runtime: "onnx", Operator: fmt.Sprintf("operator domain %q", imp.GetDomain())}
		}
	}
	if !found {
		return &UnsupportedError{Runtime: "onnx", Operator: "a model without an ai.onnx opset import",
			Reason: fmt.Sprintf("export with opset %d", ONNXOpset)}
	}
	inits := map[string]bool{}
	for _, t := range mp.GetGraph().GetInitializer() {
		inits[t.GetName()] = true
	}
	for i, n := range mp.GetGraph().GetNode() {
		where := fmt.Sprintf("node %d", i)
		if n.GetName() != "" {
			where += fmt.Sprintf(" %q", n.GetName())
		}
		op := n.GetOpType()
		if !slices.Contains(onnxDomains, n.GetDomain()) {
			return &UnsupportedError{Runtime: "onnx", Operator: n.GetDomain() + "." + op, Node: where}
		}
		o, err := opset13.GetOperator(op)
		if err != nil {
			name := op
			if d := n.GetDomain(); d != "" && d != "ai.onnx" {
				name = d + "." + op
			}
			return &UnsupportedError{Runtime: "onnx", Operator: name, Node: where,
				Reason: "supported operators: " + strings.Join(ONNXOperators(), ", ")}
		}
		if err := o.Init(n); err != nil {
			return &UnsupportedError{Runtime: "onnx", Operator: op, Node: where, Reason: err.Error()}
		}
		if err := checkRecurrent(n, inits); err != nil {
			err.Node = where
			return err
		}
	}
	return nil
}

// checkRecurrent refuses a recurrent node (LSTM, GRU, RNN) with a
// sequence_lens input, which gonnx does not implement, or whose initial
// hidden or cell state is an initializer: gonnx reshapes those tensors in
// place, so the graph's constant would change shape on the first run and
// the second run would fail.
func checkRecurrent(n *onnx.NodeProto, inits map[string]bool) *UnsupportedError {
	switch n.GetOpType() {
	case "LSTM", "GRU", "RNN":
	default:
		return nil
	}
	for k, name := range n.GetInput() {
		if k == 4 && name != "" {
			return &UnsupportedError{Runtime: "onnx", Operator: n.GetOpType() + " with sequence_lens",
				Reason: "gonnx runs every sequence to its full length; leave sequence_lens out"}
		}
		if k >= 5 && name != "" && inits[name] {
			what := "initial_h"
			if k == 6 {
				what = "initial_c"
			}
			return &UnsupportedError{Runtime: "onnx", Operator: n.GetOpType() + " with a constant " + what,
				Reason: "gonnx changes the shape of that initializer in place; leave " + what + " out (zeros) or compute it in the graph"}
		}
	}
	return nil
}

func (m *onnxModel) Runtime() string        { return "onnx" }
func (m *onnxModel) Features() int          { return m.features }
func (m *onnxModel) FeatureNames() []string { return nil }
func (m *onnxModel) Outputs() []Output      { return m.outs }
func (m *onnxModel) Width() int             { return m.width }

// SequenceSteps returns the steps of a [batch, steps, values] input, or 0
// for a [batch, features] input (see SequenceModel).
func (m *onnxModel) SequenceSteps() int { return m.steps }

// maxInputDim bounds a fixed dimension of the model's input.
const maxInputDim = 1 << 16

// run feeds rows rows of in to the graph. A panic inside the runtime is
// returned as an error.
func (m *onnxModel) run(in []float64, rows int) (res gonnx.Tensors, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("onnx runtime failed: %v", r)
		}
	}()
	n := rows * m.features
	shape := []int{rows, m.features}
	if m.steps > 0 {
		shape = []int{rows, m.steps, m.features / m.steps}
	}
	var t tensor.Tensor
	if m.f32 {
		if cap(m.buf32) < n {
			m.buf32 = make([]float32, n)
		}
		b := m.buf32[:n]
		for i, v := range in[:n] {
			b[i] = float32(v)
		}
		t = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(b))
	} else {
		t = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(in[:n]))
	}
	return m.exec(t)
}

// exec runs the graph's nodes in order on input x, as gonnx's Model.Run
// does (a fresh operator per node and run), but naming the node that
// fails. The returned tensors are valid until the next run.
func (m *onnxModel) exec(x tensor.Tensor) (gonnx.Tensors, error) {
	clear(m.tensors)
	for k, v := range m.params {
		m.tensors[k] = v
	}
	m.tensors[m.in] = x
	for i, n := range m.graph.GetNode() {
		fail := func(err error) error {
			return fmt.Errorf("onnx: node %d %q (%s): %w", i, n.GetName(), n.GetOpType(), err)
		}
		op, err := opset13.GetOperator(n.GetOpType())
		if err != nil {
			return nil, fail(err)
		}
		if err := op.Init(m.nodes[i]); err != nil {
			return nil, fail(err)
		}
		m.args = m.args[:0]
		for _, name := range n.GetInput() {
			if name == "" {
				m.args = append(m.args, nil)
				continue
			}
			t, ok := m.tensors[name]
			if !ok {
				return nil, fail(fmt.Errorf("no tensor %q yet", name))
			}
			m.args = append(m.args, t)
		}
		args, err := op.ValidateInputs(m.args)
		if err != nil {
			return nil, fail(err)
		}
		outs, err := op.Apply(args)
		if err != nil {
			return nil, fail(err)
		}
		// Outputs are positional: an operator may compute more (GRU
		// always gives Y and Y_h) than the node names.
		names := n.GetOutput()
		if len(outs) < len(names) {
			return nil, fail(fmt.Errorf("%d results for %d outputs", len(outs), len(names)))
		}
		outs = outs[:len(names)]
		for k, t := range outs {
			if names[k] != "" {
				m.tensors[names[k]] = t
			}
		}
	}
	return m.tensors, nil
}

// lstmOutputs are the names of an LSTM's outputs in the ONNX standard.
var lstmOutputs = []string{"Y", "Y_h", "Y_c"}

// initNodes returns the nodes the operators are initialised with: the
// graph's, except that an LSTM node's outputs carry the standard names
// (Y, Y_h, Y_c). gonnx's LSTM looks its results up by those names, so an
// exported graph, whose LSTM outputs have other names, would get none;
// results are positional, and exec stores them under the node's names.
func initNodes(g *onnx.GraphProto) []*onnx.NodeProto {
	nodes := slices.Clone(g.GetNode())
	for i, n := range nodes {
		if n.GetOpType() != "LSTM" || len(n.GetOutput()) > len(lstmOutputs) {
			continue
		}
		c := proto.Clone(n).(*onnx.NodeProto)
		for k, name := range c.Output {
			if name != "" {
				c.Output[k] = lstmOutputs[k]
			}
		}
		nodes[i] = c
	}
	return nodes
}

// Predict runs the graph once on the whole batch (a chain of dense layers
// runs in denseNet, anything else in gonnx).
func (m *onnxModel) Predict(in []float64, rows int, out []float64) error {
	if rows == 0 {
		return nil
	}
	if len(in) < rows*m.features || len(out) < rows*m.width {
		return fmt.Errorf("onnx: %d rows need %d input and %d output values, got %d and %d",
			rows, rows*m.features, rows*m.width, len(in), len(out))
	}
	if m.dense != nil {
		m.dense.predict(in, rows, m.features, out)
		return nil
	}
	res, err := m.run(in, rows)
	if err != nil {
		return err
	}
	off := 0
	for _, o := range m.outs {
		t := res[o.Name]
		if t == nil || len(t.Shape()) == 0 || t.Shape()[0] != rows || t.Shape().TotalSize() != rows*o.Elems {
			return fmt.Errorf("onnx: output %q: got shape %v for %d rows, want [%d %v]", o.Name, shapeOf(t), rows, rows, o.Shape)
		}
		if d, ok := t.(*tensor.Dense); ok && (!d.DataOrder().IsRowMajor() || d.RequiresIterator()) {
			t = d.Materialize()
		}
		switch v := t.Data().(type) {
		case []float32:
			for r := range rows {
				dst := out[r*m.width+off : r*m.width+off+o.Elems]
				for e, x := range v[r*o.Elems : (r+1)*o.Elems] {
					dst[e] = float64(x)
				}
			}
		case []float64:
			for r := range rows {
				copy(out[r*m.width+off:r*m.width+off+o.Elems], v[r*o.Elems:(r+1)*o.Elems])
			}
		default:
			return fmt.Errorf("onnx: output %q holds %T, not float or double", o.Name, v)
		}
		off += o.Elems
	}
	return nil
}

func shapeOf(t tensor.Tensor) any {
	if t == nil {
		return "none"
	}
	return t.Shape()
}
