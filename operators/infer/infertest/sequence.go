package infertest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/advancedclimatesystems/gonnx/onnx"
)

// Seq is a sequence model as the infer step's sequence option feeds it:
// its input is [batch, K, F] (K steps of F values, oldest first), one
// forward recurrent layer of H units (LSTM, or GRU with
// linear_before_reset as torch exports it) runs over the steps, and its
// last hidden state is projected to one value:
// Transpose -> LSTM|GRU -> Reshape -> Gemm.
type Seq struct {
	Cell    string // "LSTM" or "GRU"
	K, F, H int
	w, r    []float64 // [G*H x F], [G*H x H]; G = 4 (i, o, f, c) or 3 (z, r, h)
	b       []float64 // [2*G*H]: Wb then Rb
	wo      []float64 // [H]
	bo      float64
}

// NewSeqLSTM returns an LSTM sequence model over k steps of f values with
// h units and random float32 weights drawn from seed.
func NewSeqLSTM(seed uint64, k, f, h int) *Seq { return newSeq(seed, "LSTM", 4, k, f, h) }

// NewSeqGRU returns a GRU sequence model over k steps of f values with h
// units and random float32 weights drawn from seed.
func NewSeqGRU(seed uint64, k, f, h int) *Seq { return newSeq(seed, "GRU", 3, k, f, h) }

func newSeq(seed uint64, cell string, gates, k, f, h int) *Seq {
	r := rand.New(rand.NewPCG(seed, 4))
	rnd := func(n int, sd float64) []float64 {
		v := make([]float64, n)
		for j := range v {
			v[j] = float64(float32(r.NormFloat64() * sd))
		}
		return v
	}
	s := &Seq{Cell: cell, K: k, F: f, H: h}
	s.w, s.r, s.b = rnd(gates*h*f, 0.5), rnd(gates*h*h, 0.5), rnd(2*gates*h, 0.1)
	s.wo, s.bo = rnd(h, 1), float64(float32(-0.1))
	return s
}

// ONNX writes the model as an opset 13 float ONNX graph with input "x"
// [batch, K, F] and output "y" [batch, 1]; the recurrent node's outputs
// are named as torch.onnx.export names them.
func (s *Seq) ONNX() []byte {
	g := int64(len(s.b) / (2 * s.H))
	h := int64(s.H)
	gr := &onnx.GraphProto{Name: "seq-" + s.Cell}
	gr.Input = append(gr.Input, ValueInfo("x", onnx.TensorProto_FLOAT, "batch", s.K, s.F))
	gr.Initializer = append(gr.Initializer,
		Int64Tensor("h_shape", []int64{-1, h}, 2),
		FloatTensor("W", f32s(s.w), 1, g*h, int64(s.F)),
		FloatTensor("R", f32s(s.r), 1, g*h, h),
		FloatTensor("B", f32s(s.b), 1, 2*g*h),
		FloatTensor("Wo", f32s(s.wo), h, 1),
		FloatTensor("Bo", []float32{float32(s.bo)}, 1),
	)
	attrs := []*onnx.AttributeProto{IntAttr("hidden_size", h)}
	if s.Cell == "GRU" {
		attrs = append(attrs, IntAttr("linear_before_reset", 1))
	}
	rnn := fmt.Sprintf("/rnn/%s", s.Cell)
	gr.Node = append(gr.Node,
		Node("Transpose", "time_major", []string{"x"}, []string{"xt"}, IntsAttr("perm", 1, 0, 2)),
		Node(s.Cell, "rnn", []string{"xt", "W", "R", "B"}, []string{rnn + "_output_0", rnn + "_output_1"}, attrs...),
		Node("Reshape", "last_hidden", []string{rnn + "_output_1", "h_shape"}, []string{"hn"}),
		Node("Gemm", "head", []string{"hn", "Wo", "Bo"}, []string{"y"}),
	)
	gr.Output = append(gr.Output, ValueInfo("y", onnx.TensorProto_FLOAT, "batch", 1))
	return ModelBytes(gr, 13)
}

// Ref runs the model in float64 on one sequence x of K*F values, oldest
// step first (inputs rounded to float32, as the runtime feeds a float
// graph).
func (s *Seq) Ref(x []float64) float64 {
	H := s.H
	hs, cs := make([]float64, H), make([]float64, H)
	gates := len(s.b) / (2 * H)
	// pre returns x_t·W[g]ᵀ + Wb[g] and h·R[g]ᵀ + Rb[g] for unit u of gate g.
	pre := func(g, u int, xt, hp []float64) (float64, float64) {
		row := g*H + u
		a := s.b[row]
		for k, v := range xt {
			a += float64(float32(v)) * s.w[row*s.F+k]
		}
		c := s.b[gates*H+row]
		for k, v := range hp {
			c += v * s.r[row*H+k]
		}
		return a, c
	}
	for t := range s.K {
		xt := x[t*s.F : (t+1)*s.F]
		nh, nc := make([]float64, H), make([]float64, H)
		for u := range H {
			switch s.Cell {
			case "LSTM":
				sum := func(g int) float64 { a, c := pre(g, u, xt, hs); return a + c }
				it, ot, ft, ct := sigmoid(sum(0)), sigmoid(sum(1)), sigmoid(sum(2)), math.Tanh(sum(3))
				nc[u] = ft*cs[u] + it*ct
				nh[u] = ot * math.Tanh(nc[u])
			case "GRU":
				za, zc := pre(0, u, xt, hs)
				ra, rc := pre(1, u, xt, hs)
				ha, hc := pre(2, u, xt, hs)
				z, r := sigmoid(za+zc), sigmoid(ra+rc)
				hh := math.Tanh(ha + r*hc)
				nh[u] = (1-z)*hh + z*hs[u]
			}
		}
		hs, cs = nh, nc
	}
	y := s.bo
	for u := range H {
		y += hs[u] * s.wo[u]
	}
	return y
}
