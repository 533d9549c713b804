package infertest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
)

// PowerCurveFeatures are the inputs of the power-curve model, in order: a
// turbine's one-minute averages of wind speed (m/s), pitch angle (degrees)
// and ambient temperature (°C), as a window step names them.
var PowerCurveFeatures = []string{"wind_speed_avg", "pitch_angle_avg", "ambient_temp_avg"}

// PowerCurveFit is a fitted power-curve model and how well it fits.
type PowerCurveFit struct {
	// Model is the MLP 3 -> 32 (tanh) -> 1 of expected power (kW), float32.
	Model *MLP
	// Samples is the number of turbine-minutes it was fitted on.
	Samples int
	// RMSE is the root mean square error (kW) on those samples, of Model
	// as written (float32 weights).
	RMSE float64
}

// The power-curve model's hidden layer: its width, and the seed of the
// random part of its fixed basis.
const (
	powerCurveHidden = 32
	powerCurveSeed   = 20240101
)

// PowerCurve fits an MLP of a turbine's expected power from its one-minute
// averages of wind speed, pitch angle and ambient temperature
// (PowerCurveFeatures): x holds those three values of every sample, row
// after row, and y the mean power (kW) of each. The power-curve example's
// model is fitted on a fault-free simulated farm (see its test in
// pipelines). The hidden layer is a fixed basis of
// 32 tanh units (steps along wind speed and pitch, and a few random
// combinations of the standardised inputs); the output layer is fitted by
// ridge regression. Weights are rounded to 6 significant digits, then to
// float32, so the model written is the same on every run.
//
// The sim farm's power does not depend on ambient temperature, so the fit
// gives it little weight; a real turbine's does (air density).
func PowerCurve(x, y []float64) *PowerCurveFit {
	n := len(y)
	const in = 3

	// Hidden layer: w1 [3 x H], b1 [H]; unit = tanh(x·w1[:,j] + b1[j]).
	w1 := make([]float64, in*powerCurveHidden)
	b1 := make([]float64, powerCurveHidden)
	j := 0
	unit := func(k int, center, width float64) {
		w1[k*powerCurveHidden+j] = 1 / width
		b1[j] = -center / width
		j++
	}
	for c := 1.0; c <= 20; c++ { // wind speed steps, every 1 m/s
		unit(0, c, 1)
	}
	for _, c := range []float64{0.5, 1.5, 3, 6, 12, 40} { // pitch steps
		unit(1, c, max(0.5, c/3))
	}
	// Random combinations of the standardised inputs.
	var mean, sd [in]float64
	for r := range n {
		for k := range in {
			mean[k] += x[r*in+k] / float64(n)
		}
	}
	for r := range n {
		for k := range in {
			d := x[r*in+k] - mean[k]
			sd[k] += d * d / float64(n)
		}
	}
	rng := rand.New(rand.NewPCG(powerCurveSeed, 4))
	for j < powerCurveHidden {
		b := rng.NormFloat64()
		for k := range in {
			a := rng.NormFloat64() / math.Sqrt(sd[k])
			w1[k*powerCurveHidden+j] = a
			b -= a * mean[k]
		}
		b1[j] = b
		j++
	}
	for i := range w1 {
		w1[i] = round6(w1[i])
	}
	for i := range b1 {
		b1[i] = round6(b1[i])
	}
	m := &MLP{Sizes: []int{in, powerCurveHidden, 1}, Act: "Tanh", F32: true, W: [][]float64{w1, nil}, B: [][]float64{b1, nil}}

	// Output layer: ridge regression of y on [h, 1].
	const p = powerCurveHidden + 1
	ata := make([]float64, p*p)
	aty := make([]float64, p)
	h := make([]float64, p)
	for r := range n {
		m.hidden(x[r*in:(r+1)*in], h)
		h[powerCurveHidden] = 1
		for a := range p {
			aty[a] += h[a] * y[r]
			for b := range p {
				ata[a*p+b] += h[a] * h[b]
			}
		}
	}
	for a := range powerCurveHidden {
		ata[a*p+a] += 1e-3 * float64(n)
	}
	sol, err := solveSPD(ata, aty, p)
	if err != nil {
		panic(err) // the normal equations of a ridge fit are positive definite
	}
	w2 := make([]float64, powerCurveHidden)
	for a := range w2 {
		w2[a] = round6(sol[a])
	}
	m.W[1], m.B[1] = w2, []float64{round6(sol[powerCurveHidden])}

	se := 0.0
	for r := range n {
		d := m.Ref(x[r*in : (r+1)*in])[0] - y[r]
		se += d * d
	}
	return &PowerCurveFit{Model: m, Samples: n, RMSE: math.Sqrt(se / float64(n))}
}

// hidden computes the first layer's activations of row x into h.
func (m *MLP) hidden(x []float64, h []float64) {
	in, out := m.Sizes[0], m.Sizes[1]
	for o := range out {
		s := m.B[0][o]
		for i := range in {
			s += m.round(x[i]) * m.W[0][i*out+o]
		}
		h[o] = activate(m.Act, s)
	}
}

// round6 rounds v to 6 significant digits and then to float32, so that a
// last-bit difference in the arithmetic that produced v does not change
// the model written.
func round6(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
	return float64(float32(r))
}

// solveSPD solves a·x = b for a symmetric positive definite p x p matrix
// (Cholesky).
func solveSPD(a, b []float64, p int) ([]float64, error) {
	l := make([]float64, p*p)
	for i := range p {
		for j := 0; j <= i; j++ {
			s := a[i*p+j]
			for k := range j {
				s -= l[i*p+k] * l[j*p+k]
			}
			if i == j {
				if s <= 0 {
					return nil, fmt.Errorf("matrix not positive definite at %d", i)
				}
				l[i*p+i] = math.Sqrt(s)
			} else {
				l[i*p+j] = s / l[j*p+j]
			}
		}
	}
	z := make([]float64, p)
	for i := range p {
		s := b[i]
		for k := range i {
			s -= l[i*p+k] * z[k]
		}
		z[i] = s / l[i*p+i]
	}
	x := make([]float64, p)
	for i := p - 1; i >= 0; i-- {
		s := z[i]
		for k := i + 1; k < p; k++ {
			s -= l[k*p+i] * x[k]
		}
		x[i] = s / l[i*p+i]
	}
	return x, nil
}
