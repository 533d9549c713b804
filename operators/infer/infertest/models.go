// Package infertest builds models for the infer step with nothing from
// outside the repository: multilayer perceptrons and LSTMs as ONNX graphs
// (written with gonnx's protobuf types), gradient-boosted tree ensembles in
// LightGBM's text format, each with a plain-Go computation of the same model
// to check a runtime against; and PowerCurve, an MLP of a wind turbine's
// expected power fitted on the sim source's readings.
package infertest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// --- ONNX building blocks ---

// ValueInfo declares a tensor: elem type and dims, an int for a fixed
// dimension and a string for a named (dynamic) one.
func ValueInfo(name string, elem onnx.TensorProto_DataType, dims ...any) *onnx.ValueInfoProto {
	shape := &onnx.TensorShapeProto{}
	for _, d := range dims {
		switch d := d.(type) {
		case string:
			shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: d}})
		case int:
			shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
		}
	}
	return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
		TensorType: &onnx.TypeProto_Tensor{ElemType: int32(elem), Shape: shape}}}}
}

// FloatTensor is a float initializer.
func FloatTensor(name string, vals []float32, dims ...int64) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), FloatData: vals}
}

// DoubleTensor is a double initializer.
func DoubleTensor(name string, vals []float64, dims ...int64) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_DOUBLE), DoubleData: vals}
}

// Int64Tensor is an int64 initializer.
func Int64Tensor(name string, vals []int64, dims ...int64) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_INT64), Int64Data: vals}
}

// Node is a graph node of operator op.
func Node(op, name string, in, out []string, attrs ...*onnx.AttributeProto) *onnx.NodeProto {
	return &onnx.NodeProto{OpType: op, Name: name, Input: in, Output: out, Attribute: attrs}
}

// IntAttr is an integer attribute.
func IntAttr(name string, v int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INT, I: v}
}

// IntsAttr is an attribute holding a list of integers.
func IntsAttr(name string, v ...int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INTS, Ints: v}
}

// StringAttr is a string attribute.
func StringAttr(name, v string) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_STRING, S: []byte(v)}
}

// ModelBytes encodes g as a model of the default domain at opset.
func ModelBytes(g *onnx.GraphProto, opset int64) []byte {
	mp := &onnx.ModelProto{IrVersion: 7, ProducerName: "sluice",
		OpsetImport: []*onnx.OperatorSetIdProto{{Domain: "", Version: opset}}, Graph: g}
	return mustMarshal(mp)
}

// --- MLP ---

// MLP is a multilayer perceptron: Gemm layers with Act between them (none
// after the last).
type MLP struct {
	Sizes []int       // layer widths, input first
	W     [][]float64 // W[l][i*out+o], [in x out]
	B     [][]float64
	Act   string // "Relu", "Tanh" or "Sigmoid"
	F32   bool   // float32 graph (weights exactly representable in float32)
}

// NewMLP returns an MLP of the given layer sizes with random weights drawn
// from seed (He-like scale), act between its layers and float32 weights when
// f32.
func NewMLP(seed uint64, act string, f32 bool, sizes ...int) *MLP {
	r := rand.New(rand.NewPCG(seed, 1))
	m := &MLP{Sizes: sizes, Act: act, F32: f32}
	for l := 0; l+1 < len(sizes); l++ {
		in, out := sizes[l], sizes[l+1]
		w := make([]float64, in*out)
		sd := 1 / math.Sqrt(float64(in))
		for i := range w {
			w[i] = m.round(r.NormFloat64() * sd)
		}
		b := make([]float64, out)
		for i := range b {
			b[i] = m.round(r.NormFloat64() * 0.1)
		}
		m.W, m.B = append(m.W, w), append(m.B, b)
	}
	return m
}

// round makes v exactly representable in the model's element type.
func (m *MLP) round(v float64) float64 {
	if m.F32 {
		return float64(float32(v))
	}
	return v
}

// ONNX writes the MLP as an opset 13 ONNX model: input "x" [batch x
// Sizes[0]], output "y", one Gemm per layer.
func (m *MLP) ONNX() []byte {
	elem := onnx.TensorProto_DOUBLE
	if m.F32 {
		elem = onnx.TensorProto_FLOAT
	}
	g := &onnx.GraphProto{Name: "mlp"}
	g.Input = append(g.Input, ValueInfo("x", elem, "batch", m.Sizes[0]))
	prev := "x"
	for l := range m.W {
		in, out := int64(m.Sizes[l]), int64(m.Sizes[l+1])
		wn, bn, hn := fmt.Sprintf("w%d", l), fmt.Sprintf("b%d", l), fmt.Sprintf("h%d", l)
		if m.F32 {
			g.Initializer = append(g.Initializer, FloatTensor(wn, f32s(m.W[l]), in, out), FloatTensor(bn, f32s(m.B[l]), out))
		} else {
			g.Initializer = append(g.Initializer, DoubleTensor(wn, m.W[l], in, out), DoubleTensor(bn, m.B[l], out))
		}
		last := l == len(m.W)-1
		if last {
			hn = "y"
		}
		g.Node = append(g.Node, Node("Gemm", fmt.Sprintf("dense%d", l), []string{prev, wn, bn}, []string{hn}))
		if !last {
			an := fmt.Sprintf("a%d", l)
			g.Node = append(g.Node, Node(m.Act, fmt.Sprintf("act%d", l), []string{hn}, []string{an}))
			hn = an
		}
		prev = hn
	}
	g.Output = append(g.Output, ValueInfo("y", elem, "batch", m.Sizes[len(m.Sizes)-1]))
	return ModelBytes(g, 13)
}

// ONNXMatMul writes the MLP as MatMul and Add nodes (torch's export of a
// Linear layer without Gemm fusion) instead of Gemm.
func (m *MLP) ONNXMatMul() []byte {
	mp := &onnx.ModelProto{}
	if err := proto.Unmarshal(m.ONNX(), mp); err != nil {
		panic(err)
	}
	var nodes []*onnx.NodeProto
	for _, n := range mp.Graph.Node {
		if n.OpType != "Gemm" {
			nodes = append(nodes, n)
			continue
		}
		mm := n.Output[0] + "_mm"
		nodes = append(nodes, Node("MatMul", n.Name+"_matmul", n.Input[:2], []string{mm}),
			Node("Add", n.Name+"_bias", []string{mm, n.Input[2]}, n.Output))
	}
	mp.Graph.Node = nodes
	return mustMarshal(mp)
}

func f32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func activate(act string, v float64) float64 {
	switch act {
	case "Relu":
		return max(v, 0)
	case "Tanh":
		return math.Tanh(v)
	case "Sigmoid":
		return 1 / (1 + math.Exp(-v))
	}
	panic(act)
}

// Ref computes the MLP on one row in float64 (float32 inputs are rounded
// as the runtime rounds them).
func (m *MLP) Ref(x []float64) []float64 {
	h := make([]float64, len(x))
	for i, v := range x {
		h[i] = m.round(v)
	}
	for l := range m.W {
		in, out := m.Sizes[l], m.Sizes[l+1]
		next := make([]float64, out)
		for o := range out {
			s := m.B[l][o]
			for i := range in {
				s += h[i] * m.W[l][i*out+o]
			}
			if l < len(m.W)-1 {
				s = activate(m.Act, s)
			}
			next[o] = s
		}
		h = next
	}
	return h
}

// --- LSTM ---

// LSTM reads a row of T*I features as a sequence of T steps of I values,
// runs one forward LSTM layer of H units over it and projects the last
// hidden state to one value: Reshape -> Transpose -> LSTM -> Reshape -> Gemm.
type LSTM struct {
	t, i, h int
	w, r    []float64 // [4H x I], [4H x H], gates in ONNX order i, o, f, c
	b       []float64 // [8H]: Wb then Rb
	wo      []float64 // [H]
	bo      float64
}

// NewLSTM returns an LSTM model over t steps of i values with h units and
// random float32 weights drawn from seed.
func NewLSTM(seed uint64, t, i, h int) *LSTM {
	r := rand.New(rand.NewPCG(seed, 2))
	n := &LSTM{t: t, i: i, h: h}
	rnd := func(k int, sd float64) []float64 {
		v := make([]float64, k)
		for j := range v {
			v[j] = float64(float32(r.NormFloat64() * sd))
		}
		return v
	}
	n.w, n.r, n.b = rnd(4*h*i, 0.5), rnd(4*h*h, 0.5), rnd(8*h, 0.1)
	n.wo, n.bo = rnd(h, 1), float64(float32(0.2))
	return n
}

// ONNX writes the model as an opset 13 float ONNX graph, its LSTM outputs
// named as torch.onnx.export names them.
func (n *LSTM) ONNX() []byte {
	h := int64(n.h)
	g := &onnx.GraphProto{Name: "lstm"}
	g.Input = append(g.Input, ValueInfo("x", onnx.TensorProto_FLOAT, "batch", n.t*n.i))
	g.Initializer = append(g.Initializer,
		Int64Tensor("seq_shape", []int64{-1, int64(n.t), int64(n.i)}, 3),
		Int64Tensor("h_shape", []int64{-1, h}, 2),
		FloatTensor("W", f32s(n.w), 1, 4*h, int64(n.i)),
		FloatTensor("R", f32s(n.r), 1, 4*h, h),
		FloatTensor("B", f32s(n.b), 1, 8*h),
		FloatTensor("Wo", f32s(n.wo), h, 1),
		FloatTensor("Bo", []float32{float32(n.bo)}, 1),
	)
	g.Node = append(g.Node,
		Node("Reshape", "to_seq", []string{"x", "seq_shape"}, []string{"xs"}),
		Node("Transpose", "time_major", []string{"xs"}, []string{"xt"}, IntsAttr("perm", 1, 0, 2)),
		// Output names as torch.onnx.export gives them (not Y, Y_h).
		Node("LSTM", "lstm", []string{"xt", "W", "R", "B"}, []string{"/lstm/LSTM_output_0", "/lstm/LSTM_output_1"}, IntAttr("hidden_size", h)),
		Node("Reshape", "last_hidden", []string{"/lstm/LSTM_output_1", "h_shape"}, []string{"hn"}),
		Node("Gemm", "head", []string{"hn", "Wo", "Bo"}, []string{"y"}),
	)
	g.Output = append(g.Output, ValueInfo("y", onnx.TensorProto_FLOAT, "batch", 1))
	return ModelBytes(g, 13)
}

func sigmoid(v float64) float64 { return 1 / (1 + math.Exp(-v)) }

// Ref runs the model on one row in float64.
func (n *LSTM) Ref(x []float64) float64 {
	H := n.h
	hs, cs := make([]float64, H), make([]float64, H)
	gate := func(g, u int, xt []float64, hp []float64) float64 {
		row := g*H + u
		s := n.b[row] + n.b[4*H+row]
		for k, v := range xt {
			s += float64(float32(v)) * n.w[row*n.i+k]
		}
		for k, v := range hp {
			s += v * n.r[row*H+k]
		}
		return s
	}
	for t := range n.t {
		xt := x[t*n.i : (t+1)*n.i]
		nh, nc := make([]float64, H), make([]float64, H)
		for u := range H {
			it := sigmoid(gate(0, u, xt, hs))
			ot := sigmoid(gate(1, u, xt, hs))
			ft := sigmoid(gate(2, u, xt, hs))
			ct := math.Tanh(gate(3, u, xt, hs))
			nc[u] = ft*cs[u] + it*ct
			nh[u] = ot * math.Tanh(nc[u])
		}
		hs, cs = nh, nc
	}
	y := n.bo
	for u := range H {
		y += hs[u] * n.wo[u]
	}
	return y
}

// --- tree ensembles (LightGBM text) ---

// Tree is a complete binary tree of numerical splits "x[f] <= thr goes
// left", stored in LightGBM's layout: internal nodes in preorder, leaves
// numbered left to right.
type Tree struct {
	Feature   []int
	Threshold []float64
	Left      []int // >= 0 internal node, < 0 is ^leaf
	Right     []int
	Leaf      []float64
}

func newTree(r *rand.Rand, depth, features int) *Tree {
	t := &Tree{}
	var build func(d int) int
	build = func(d int) int {
		if d == depth {
			t.Leaf = append(t.Leaf, math.Round(r.NormFloat64()*1e4)/1e5)
			return ^(len(t.Leaf) - 1)
		}
		i := len(t.Feature)
		t.Feature = append(t.Feature, r.IntN(features))
		t.Threshold = append(t.Threshold, math.Round(r.NormFloat64()*1000)/1000)
		t.Left, t.Right = append(t.Left, 0), append(t.Right, 0)
		l := build(d + 1)
		rr := build(d + 1)
		t.Left[i], t.Right[i] = l, rr
		return i
	}
	build(0)
	return t
}

// Eval returns the leaf value row x reaches.
func (t *Tree) Eval(x []float64) float64 {
	i := 0
	for {
		next := t.Right[i]
		if x[t.Feature[i]] <= t.Threshold[i] {
			next = t.Left[i]
		}
		if next < 0 {
			return t.Leaf[^next]
		}
		i = next
	}
}

// Ensemble is a LightGBM model: the sum of its trees, through the
// objective's transformation.
type Ensemble struct {
	Trees     []*Tree
	Features  int
	Objective string // "regression", "huber", "binary sigmoid:1", ...
	ExtraTree string // appended to every tree block (e.g. "is_linear=1\n")
}

// NewEnsemble returns trees random complete trees of the given depth over
// features features, drawn from seed, with LightGBM objective objective.
func NewEnsemble(seed uint64, trees, depth, features int, objective string) *Ensemble {
	r := rand.New(rand.NewPCG(seed, 3))
	e := &Ensemble{Features: features, Objective: objective}
	for range trees {
		e.Trees = append(e.Trees, newTree(r, depth, features))
	}
	return e
}

// Ref computes the model on one row: the sum of the trees, through the
// logistic function for a binary objective.
func (e *Ensemble) Ref(x []float64) float64 {
	s := 0.0
	for _, t := range e.Trees {
		s += t.Eval(x)
	}
	if strings.HasPrefix(e.Objective, "binary") {
		return 1 / (1 + math.Exp(-s))
	}
	return s
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, " ")
}

func joinFloats(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, " ")
}

// Text writes the model in LightGBM's text format (save_model), with
// feature_names when names is not nil.
func (e *Ensemble) Text(names []string) []byte {
	var b strings.Builder
	sizes := make([]string, len(e.Trees))
	for i := range sizes {
		sizes[i] = "1"
	}
	fmt.Fprintf(&b, "tree\nversion=v3\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=%d\n", e.Features-1)
	fmt.Fprintf(&b, "objective=%s\n", e.Objective)
	if names != nil {
		fmt.Fprintf(&b, "feature_names=%s\n", strings.Join(names, " "))
	}
	fmt.Fprintf(&b, "tree_sizes=%s\n\n", strings.Join(sizes, " "))
	for i, t := range e.Trees {
		dt := make([]int, len(t.Feature))
		for j := range dt {
			dt[j] = 2 // numerical, default left, no missing type
		}
		fmt.Fprintf(&b, "Tree=%d\nnum_leaves=%d\nnum_cat=0\nsplit_feature=%s\nthreshold=%s\ndecision_type=%s\nleft_child=%s\nright_child=%s\nleaf_value=%s\n%sshrinkage=1\n\n",
			i, len(t.Leaf), joinInts(t.Feature), joinFloats(t.Threshold), joinInts(dt), joinInts(t.Left), joinInts(t.Right), joinFloats(t.Leaf), e.ExtraTree)
	}
	b.WriteString("end of trees\n")
	return []byte(b.String())
}

// mustMarshal encodes a message built by this package (which always
// encodes).
func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}
