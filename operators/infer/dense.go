package infer

import (
	"math"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"gorgonia.org/tensor"
)

// denseNet is a multilayer perceptron read from an ONNX graph that is a
// plain chain of dense layers — Gemm, or MatMul followed by an optional
// Add of a constant bias, each followed by an optional Relu, Tanh or
// Sigmoid — the graph a torch nn.Sequential of Linear and activation
// layers exports to. Such a graph is run by this loop instead of gonnx:
// the same arithmetic in float64, from the same float32 or float64
// weights, with no allocation. Any other graph runs in gonnx.
type denseNet struct {
	layers []denseLayer
	f32    bool // the graph's input is float: inputs are rounded to float32
	// h4 and g4 hold the values of four rows before and after a layer.
	h4, g4 [4][]float64
}

type denseLayer struct {
	in, out int
	w       []float64 // w[i*out+o]
	wt      []float64 // wt[o*in+i]
	b       []float64
	act     string // "", "Relu", "Tanh" or "Sigmoid"
}

// compileDense returns the graph as a denseNet, or nil when it is not a
// chain of dense layers.
func compileDense(g *onnx.GraphProto, params map[string]tensor.Tensor, in string, features int, f32 bool) *denseNet {
	outs := g.GetOutput()
	if len(outs) != 1 {
		return nil
	}
	param := func(name string) ([]float64, []int, bool) {
		t, ok := params[name]
		if !ok {
			return nil, nil, false
		}
		var v []float64
		switch d := t.Data().(type) {
		case []float32:
			v = make([]float64, len(d))
			for i, x := range d {
				v[i] = float64(x)
			}
		case []float64:
			v = append([]float64(nil), d...)
		default:
			return nil, nil, false
		}
		return v, []int(t.Shape()), true
	}
	n := &denseNet{f32: f32}
	cur, width := in, features
	for _, nd := range g.GetNode() {
		ins := nd.GetInput()
		if len(ins) == 0 || ins[0] != cur || len(nd.GetOutput()) != 1 {
			return nil
		}
		switch nd.GetOpType() {
		case "Gemm", "MatMul":
			if len(ins) < 2 || nd.GetOpType() == "MatMul" && len(ins) != 2 {
				return nil
			}
			transB := false
			for _, a := range nd.GetAttribute() {
				switch {
				case a.GetName() == "alpha" && a.GetF() == 1, a.GetName() == "beta" && a.GetF() == 1,
					a.GetName() == "transA" && a.GetI() == 0:
				case a.GetName() == "transB" && (a.GetI() == 0 || a.GetI() == 1):
					transB = a.GetI() == 1
				default:
					return nil
				}
			}
			w, ws, ok := param(ins[1])
			if !ok || len(ws) != 2 {
				return nil
			}
			l := denseLayer{in: ws[0], out: ws[1], w: w}
			if transB {
				l.in, l.out = ws[1], ws[0]
				l.w = make([]float64, len(w))
				for o := range l.out {
					for i := range l.in {
						l.w[i*l.out+o] = w[o*l.in+i]
					}
				}
			}
			if l.in != width {
				return nil
			}
			l.b = make([]float64, l.out)
			if len(ins) == 3 && ins[2] != "" {
				b, ok := bias(param(ins[2]))
				if !ok || len(b) != l.out {
					return nil
				}
				copy(l.b, b)
			}
			n.layers = append(n.layers, l)
			width = l.out
		case "Add":
			if len(ins) != 2 || len(n.layers) == 0 || n.layers[len(n.layers)-1].act != "" {
				return nil
			}
			l := &n.layers[len(n.layers)-1]
			b, ok := bias(param(ins[1]))
			if !ok || len(b) != l.out {
				return nil
			}
			for o := range l.b {
				l.b[o] += b[o]
			}
		case "Relu", "Tanh", "Sigmoid":
			if len(ins) != 1 || len(n.layers) == 0 || n.layers[len(n.layers)-1].act != "" {
				return nil
			}
			n.layers[len(n.layers)-1].act = nd.GetOpType()
		default:
			return nil
		}
		cur = nd.GetOutput()[0]
	}
	if cur != outs[0].GetName() || len(n.layers) == 0 {
		return nil
	}
	widest := features
	for _, l := range n.layers {
		widest = max(widest, l.out)
	}
	for k := range 4 {
		n.h4[k], n.g4[k] = make([]float64, widest), make([]float64, widest)
	}
	for li := range n.layers {
		l := &n.layers[li]
		l.wt = make([]float64, len(l.w))
		for i := range l.in {
			for o := range l.out {
				l.wt[o*l.in+i] = l.w[i*l.out+o]
			}
		}
	}
	return n
}

// bias accepts a bias of shape [out] or [1, out].
func bias(v []float64, shape []int, ok bool) ([]float64, bool) {
	if !ok || len(shape) == 0 || len(shape) > 2 || len(shape) == 2 && shape[0] != 1 {
		return nil, false
	}
	return v, true
}

// width is the number of values per row of the last layer.
func (n *denseNet) width() int { return n.layers[len(n.layers)-1].out }

// predict scores rows rows of in into out. Rows go through the layers
// four at a time (one weight load for four products); every row's sums are
// taken in the same order whatever its position, so a row's values do not
// depend on the batch it comes in. The explicit float64 conversions keep
// the compiler from fusing a multiply and an add on some rows and not on
// others.
func (n *denseNet) predict(in []float64, rows, features int, out []float64) {
	w := n.width()
	r := 0
	for ; r+4 <= rows; r += 4 {
		for k := range 4 {
			n.load(k, in[(r+k)*features:(r+k+1)*features])
		}
		for li := range n.layers {
			n.layer4(&n.layers[li])
		}
		for k := range 4 {
			copy(out[(r+k)*w:(r+k+1)*w], n.h4[k][:w])
		}
	}
	for ; r < rows; r++ {
		n.load(0, in[r*features:(r+1)*features])
		for li := range n.layers {
			n.layer1(&n.layers[li])
		}
		copy(out[r*w:(r+1)*w], n.h4[0][:w])
	}
}

// load copies a row into slot k, rounded as the graph's input type.
func (n *denseNet) load(k int, row []float64) {
	h := n.h4[k][:len(row)]
	copy(h, row)
	if n.f32 {
		for i, v := range h {
			h[i] = float64(float32(v))
		}
	}
}

// layer4 applies l to the rows in the four slots.
func (n *denseNet) layer4(l *denseLayer) {
	h0, h1, h2, h3 := n.h4[0][:l.in], n.h4[1][:l.in], n.h4[2][:l.in], n.h4[3][:l.in]
	g0, g1, g2, g3 := n.g4[0][:l.out], n.g4[1][:l.out], n.g4[2][:l.out], n.g4[3][:l.out]
	for o := range l.out {
		wr := l.wt[o*l.in : (o+1)*l.in]
		b := l.b[o]
		s0, s1, s2, s3 := b, b, b, b
		for i, wv := range wr {
			s0 = float64(s0 + float64(h0[i]*wv))
			s1 = float64(s1 + float64(h1[i]*wv))
			s2 = float64(s2 + float64(h2[i]*wv))
			s3 = float64(s3 + float64(h3[i]*wv))
		}
		g0[o], g1[o], g2[o], g3[o] = activation(l.act, s0), activation(l.act, s1), activation(l.act, s2), activation(l.act, s3)
	}
	n.h4, n.g4 = n.g4, n.h4
}

// layer1 applies l to the row in slot 0, with layer4's arithmetic.
func (n *denseNet) layer1(l *denseLayer) {
	h0, g0 := n.h4[0][:l.in], n.g4[0][:l.out]
	for o := range l.out {
		wr := l.wt[o*l.in : (o+1)*l.in]
		s0 := l.b[o]
		for i, wv := range wr {
			s0 = float64(s0 + float64(h0[i]*wv))
		}
		g0[o] = activation(l.act, s0)
	}
	n.h4, n.g4 = n.g4, n.h4
}

func activation(act string, v float64) float64 {
	switch act {
	case "Relu":
		return max(v, 0)
	case "Tanh":
		return math.Tanh(v)
	case "Sigmoid":
		return 1 / (1 + math.Exp(-v))
	}
	return v
}
