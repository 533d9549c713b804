package infer

// Model generators for the tests: every model the tests run is built here,
// from gonnx's ONNX protobuf types or as LightGBM text, together with a
// plain-Go reference computation of the same model. Nothing comes from
// outside the repository.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// --- ONNX building blocks ---

func valueInfo(name string, elem onnx.TensorProto_DataType, dims ...any) *onnx.ValueInfoProto {
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

func floatTensor(name string, vals []float32, dims ...int64) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), FloatData: vals}
}

func doubleTensor(name string, vals []float64, dims ...int64) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_DOUBLE), DoubleData: vals}
}

func int64Tensor(name string, vals []int64, dims ...int64) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_INT64), Int64Data: vals}
}

func node(op, name string, in, out []string, attrs ...*onnx.AttributeProto) *onnx.NodeProto {
	return &onnx.NodeProto{OpType: op, Name: name, Input: in, Output: out, Attribute: attrs}
}

func intAttr(name string, v int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INT, I: v}
}

func intsAttr(name string, v ...int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INTS, Ints: v}
}

func stringAttr(name, v string) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_STRING, S: []byte(v)}
}

func modelBytes(g *onnx.GraphProto, opset int64) []byte {
	mp := &onnx.ModelProto{IrVersion: 7, ProducerName: "sluice-test",
		OpsetImport: []*onnx.OperatorSetIdProto{{Domain: "", Version: opset}}, Graph: g}
	b, err := proto.Marshal(mp)
	if err != nil {
		panic(err)
	}
	return b
}

// --- MLP ---

// mlp is a multilayer perceptron: Gemm layers with act between them (none
// after the last).
type mlp struct {
	sizes []int       // layer widths, input first
	w     [][]float64 // w[l][i*out+o], [in x out]
	b     [][]float64
	act   string // "Relu", "Tanh" or "Sigmoid"
	f32   bool
}

func newMLP(seed uint64, act string, f32 bool, sizes ...int) *mlp {
	r := rand.New(rand.NewPCG(seed, 1))
	m := &mlp{sizes: sizes, act: act, f32: f32}
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
		m.w, m.b = append(m.w, w), append(m.b, b)
	}
	return m
}

// round makes v exactly representable in the model's element type.
func (m *mlp) round(v float64) float64 {
	if m.f32 {
		return float64(float32(v))
	}
	return v
}

func (m *mlp) onnx() []byte {
	elem := onnx.TensorProto_DOUBLE
	if m.f32 {
		elem = onnx.TensorProto_FLOAT
	}
	g := &onnx.GraphProto{Name: "mlp"}
	g.Input = append(g.Input, valueInfo("x", elem, "batch", m.sizes[0]))
	prev := "x"
	for l := range m.w {
		in, out := int64(m.sizes[l]), int64(m.sizes[l+1])
		wn, bn, hn := fmt.Sprintf("w%d", l), fmt.Sprintf("b%d", l), fmt.Sprintf("h%d", l)
		if m.f32 {
			g.Initializer = append(g.Initializer, floatTensor(wn, f32s(m.w[l]), in, out), floatTensor(bn, f32s(m.b[l]), out))
		} else {
			g.Initializer = append(g.Initializer, doubleTensor(wn, m.w[l], in, out), doubleTensor(bn, m.b[l], out))
		}
		last := l == len(m.w)-1
		if last {
			hn = "y"
		}
		g.Node = append(g.Node, node("Gemm", fmt.Sprintf("dense%d", l), []string{prev, wn, bn}, []string{hn}))
		if !last {
			an := fmt.Sprintf("a%d", l)
			g.Node = append(g.Node, node(m.act, fmt.Sprintf("act%d", l), []string{hn}, []string{an}))
			hn = an
		}
		prev = hn
	}
	g.Output = append(g.Output, valueInfo("y", elem, "batch", m.sizes[len(m.sizes)-1]))
	return modelBytes(g, 13)
}

// onnxMatMul writes the MLP as MatMul and Add nodes (torch's export of a
// Linear layer without Gemm fusion) instead of Gemm.
func (m *mlp) onnxMatMul() []byte {
	mp := &onnx.ModelProto{}
	if err := proto.Unmarshal(m.onnx(), mp); err != nil {
		panic(err)
	}
	var nodes []*onnx.NodeProto
	for _, n := range mp.Graph.Node {
		if n.OpType != "Gemm" {
			nodes = append(nodes, n)
			continue
		}
		mm := n.Output[0] + "_mm"
		nodes = append(nodes, node("MatMul", n.Name+"_matmul", n.Input[:2], []string{mm}),
			node("Add", n.Name+"_bias", []string{mm, n.Input[2]}, n.Output))
	}
	mp.Graph.Node = nodes
	return protoMarshal(mp)
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

// ref computes the MLP on one row in float64 (float32 inputs are rounded
// as the runtime rounds them).
func (m *mlp) ref(x []float64) []float64 {
	h := make([]float64, len(x))
	for i, v := range x {
		h[i] = m.round(v)
	}
	for l := range m.w {
		in, out := m.sizes[l], m.sizes[l+1]
		next := make([]float64, out)
		for o := range out {
			s := m.b[l][o]
			for i := range in {
				s += h[i] * m.w[l][i*out+o]
			}
			if l < len(m.w)-1 {
				s = activate(m.act, s)
			}
			next[o] = s
		}
		h = next
	}
	return h
}

// --- LSTM ---

// lstmNet reads a row of T*I features as a sequence of T steps of I values,
// runs one forward LSTM layer of H units over it and projects the last
// hidden state to one value: Reshape -> Transpose -> LSTM -> Reshape -> Gemm.
type lstmNet struct {
	t, i, h int
	w, r    []float64 // [4H x I], [4H x H], gates in ONNX order i, o, f, c
	b       []float64 // [8H]: Wb then Rb
	wo      []float64 // [H]
	bo      float64
}

func newLSTM(seed uint64, t, i, h int) *lstmNet {
	r := rand.New(rand.NewPCG(seed, 2))
	n := &lstmNet{t: t, i: i, h: h}
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

func (n *lstmNet) onnx() []byte {
	h := int64(n.h)
	g := &onnx.GraphProto{Name: "lstm"}
	g.Input = append(g.Input, valueInfo("x", onnx.TensorProto_FLOAT, "batch", n.t*n.i))
	g.Initializer = append(g.Initializer,
		int64Tensor("seq_shape", []int64{-1, int64(n.t), int64(n.i)}, 3),
		int64Tensor("h_shape", []int64{-1, h}, 2),
		floatTensor("W", f32s(n.w), 1, 4*h, int64(n.i)),
		floatTensor("R", f32s(n.r), 1, 4*h, h),
		floatTensor("B", f32s(n.b), 1, 8*h),
		floatTensor("Wo", f32s(n.wo), h, 1),
		floatTensor("Bo", []float32{float32(n.bo)}, 1),
	)
	g.Node = append(g.Node,
		node("Reshape", "to_seq", []string{"x", "seq_shape"}, []string{"xs"}),
		node("Transpose", "time_major", []string{"xs"}, []string{"xt"}, intsAttr("perm", 1, 0, 2)),
		// Output names as torch.onnx.export gives them (not Y, Y_h).
		node("LSTM", "lstm", []string{"xt", "W", "R", "B"}, []string{"/lstm/LSTM_output_0", "/lstm/LSTM_output_1"}, intAttr("hidden_size", h)),
		node("Reshape", "last_hidden", []string{"/lstm/LSTM_output_1", "h_shape"}, []string{"hn"}),
		node("Gemm", "head", []string{"hn", "Wo", "Bo"}, []string{"y"}),
	)
	g.Output = append(g.Output, valueInfo("y", onnx.TensorProto_FLOAT, "batch", 1))
	return modelBytes(g, 13)
}

func sigmoid(v float64) float64 { return 1 / (1 + math.Exp(-v)) }

// ref runs the LSTM on one row in float64.
func (n *lstmNet) ref(x []float64) float64 {
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

// tree is a complete binary tree of numerical splits "x[f] <= thr goes
// left", stored in LightGBM's layout: internal nodes in preorder, leaves
// numbered left to right.
type tree struct {
	feature   []int
	threshold []float64
	left      []int // >= 0 internal node, < 0 is ^leaf
	right     []int
	leaf      []float64
}

func newTree(r *rand.Rand, depth, features int) *tree {
	t := &tree{}
	var build func(d int) int
	build = func(d int) int {
		if d == depth {
			t.leaf = append(t.leaf, math.Round(r.NormFloat64()*1e4)/1e5)
			return ^(len(t.leaf) - 1)
		}
		i := len(t.feature)
		t.feature = append(t.feature, r.IntN(features))
		t.threshold = append(t.threshold, math.Round(r.NormFloat64()*1000)/1000)
		t.left, t.right = append(t.left, 0), append(t.right, 0)
		l := build(d + 1)
		rr := build(d + 1)
		t.left[i], t.right[i] = l, rr
		return i
	}
	build(0)
	return t
}

func (t *tree) eval(x []float64) float64 {
	i := 0
	for {
		next := t.right[i]
		if x[t.feature[i]] <= t.threshold[i] {
			next = t.left[i]
		}
		if next < 0 {
			return t.leaf[^next]
		}
		i = next
	}
}

// ensemble is a LightGBM model: the sum of its trees, through the
// objective's transformation.
type ensemble struct {
	trees     []*tree
	features  int
	objective string // "regression" or "binary sigmoid:1"
	extraTree string // appended to every tree block (e.g. "is_linear=1")
}

func newEnsemble(seed uint64, trees, depth, features int, objective string) *ensemble {
	r := rand.New(rand.NewPCG(seed, 3))
	e := &ensemble{features: features, objective: objective}
	for range trees {
		e.trees = append(e.trees, newTree(r, depth, features))
	}
	return e
}

func (e *ensemble) ref(x []float64) float64 {
	s := 0.0
	for _, t := range e.trees {
		s += t.eval(x)
	}
	if strings.HasPrefix(e.objective, "binary") {
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

// text writes the model in LightGBM's text format (save_model).
func (e *ensemble) text(names []string) []byte {
	var b strings.Builder
	sizes := make([]string, len(e.trees))
	for i := range sizes {
		sizes[i] = "1"
	}
	fmt.Fprintf(&b, "tree\nversion=v3\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=%d\n", e.features-1)
	fmt.Fprintf(&b, "objective=%s\n", e.objective)
	if names != nil {
		fmt.Fprintf(&b, "feature_names=%s\n", strings.Join(names, " "))
	}
	fmt.Fprintf(&b, "tree_sizes=%s\n\n", strings.Join(sizes, " "))
	for i, t := range e.trees {
		dt := make([]int, len(t.feature))
		for j := range dt {
			dt[j] = 2 // numerical, default left, no missing type
		}
		fmt.Fprintf(&b, "Tree=%d\nnum_leaves=%d\nnum_cat=0\nsplit_feature=%s\nthreshold=%s\ndecision_type=%s\nleft_child=%s\nright_child=%s\nleaf_value=%s\n%sshrinkage=1\n\n",
			i, len(t.leaf), joinInts(t.feature), joinFloats(t.threshold), joinInts(dt), joinInts(t.left), joinInts(t.right), joinFloats(t.leaf), e.extraTree)
	}
	b.WriteString("end of trees\n")
	return []byte(b.String())
}

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
