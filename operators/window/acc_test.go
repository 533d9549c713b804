package window

import (
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

func bigSum(xs []float64) float64 {
	acc := new(big.Float).SetPrec(4200)
	for _, x := range xs {
		acc.Add(acc, new(big.Float).SetPrec(4200).SetFloat64(x))
	}
	f, _ := acc.Float64()
	return f
}

func testOp() *Operator {
	return &Operator{scratch: make([]int64, tChunks+2), sChunks: make([]int64, sumChunks+2), qChunks: make([]int64, sqChunks+2)}
}

func accOf(xs []float64) *facc {
	a := new(facc)
	a.reset()
	for _, x := range xs {
		a.n++
		if b := math.Float64bits(x); b<<1 != 0 {
			a.addSum(b)
			a.addSq(b)
			a.adds++
		}
	}
	return a
}

func sqValue(o *Operator, a *facc) float64 {
	var small [accChunks + 1]int64
	c, off := a.chunksOf(true, &small, o.zeroed(sqChunks+2))
	if c == nil {
		return 0
	}
	return chunkValue(c, 32*off-2148)
}

func bigSq(xs []float64) float64 {
	acc := new(big.Float).SetPrec(9000)
	for _, x := range xs {
		f := new(big.Float).SetPrec(9000).SetFloat64(x)
		acc.Add(acc, f.Mul(f, f))
	}
	f, _ := acc.Float64()
	return f
}

// TestSumExact checks that sums are the exact sum correctly rounded and do
// not depend on order, including data that moves the chunk window or needs
// the wide accumulator, and merges.
func TestSumExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gens := map[string]func() float64{
		"sensor":    func() float64 { return 1500 + 300*rng.NormFloat64() },
		"decimals":  func() float64 { return float64(rng.IntN(100000)) / 100 },
		"mixed":     func() float64 { return math.Ldexp(rng.Float64()-0.5, rng.IntN(200)-100) },
		"wide":      func() float64 { return math.Ldexp(rng.Float64()-0.5, rng.IntN(1800)-900) },
		"subnormal": func() float64 { return math.Ldexp(rng.Float64()-0.3, -1060+rng.IntN(40)) },
		"huge":      func() float64 { return math.Ldexp(rng.Float64()-0.5, 1000+rng.IntN(23)) },
		"cancel": func() float64 {
			x := math.Ldexp(1+rng.Float64(), rng.IntN(100))
			if rng.IntN(2) == 0 {
				return -x
			}
			return x
		},
	}
	o := testOp()
	for name, gen := range gens {
		t.Run(name, func(t *testing.T) {
			for trial := range 50 {
				xs := make([]float64, 1+rng.IntN(3000))
				for i := range xs {
					xs[i] = gen()
				}
				if name == "cancel" {
					for i := range len(xs) / 2 {
						xs = append(xs, -xs[i])
					}
				}
				want, wantSq := bigSum(xs), bigSq(xs)
				a := accOf(xs)
				if got := o.sumValue(a); got != want {
					t.Fatalf("trial %d: sum %v, exact %v", trial, got, want)
				}
				if name != "subnormal" { // squares of subnormals underflow
					if got := sqValue(o, a); got != wantSq {
						t.Fatalf("trial %d: sum of squares %v, exact %v", trial, got, wantSq)
					}
				}
				rng.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
				if got := o.sumValue(accOf(xs)); got != want {
					t.Fatalf("trial %d: shuffled sum %v, exact %v", trial, got, want)
				}
				h := rng.IntN(len(xs))
				b, c := accOf(xs[:h]), accOf(xs[h:])
				c.merge(b)
				if got := o.sumValue(c); got != want {
					t.Fatalf("trial %d: merged sum %v, exact %v", trial, got, want)
				}
				if name != "subnormal" {
					if got := sqValue(o, c); got != wantSq {
						t.Fatalf("trial %d: merged sum of squares %v, exact %v", trial, got, wantSq)
					}
				}
			}
		})
	}
}

// TestSumWindowModes walks a sum through its window, a rebase and the wide
// accumulator, then resets it.
func TestSumWindowModes(t *testing.T) {
	o := testOp()
	xs := []float64{1500, 1e-3}
	a := accOf(xs)
	if a.mode != 0 {
		t.Fatalf("mode %d after close values", a.mode)
	}
	xs = append(xs, 1e30) // needs a rebase (about 100 bits up)
	a = accOf(xs)
	if a.mode&wideSum != 0 {
		t.Fatalf("mode %d after a rebase of the sum", a.mode)
	}
	xs = append(xs, 1e-200, -1e200)
	a = accOf(xs)
	if a.mode != wideSum|wideSq {
		t.Fatalf("mode %d, want wide", a.mode)
	}
	if got, want := o.sumValue(a), bigSum(xs); got != want {
		t.Fatalf("sum %v, exact %v", got, want)
	}
	a.reset()
	if a.wide == nil || *a.wide != (wideAcc{}) || a.mode != 0 {
		t.Fatal("reset must clear and keep the wide accumulator")
	}
	a.n = 2
	a.addSum(math.Float64bits(2))
	a.addSum(math.Float64bits(3))
	if got := o.sumValue(a); got != 5 {
		t.Fatalf("after reset: %v", got)
	}
}

func TestSumHalfEven(t *testing.T) {
	o := testOp()
	// 1e16 + 1 + 1e-16 must round up to 1e16+2.
	for _, xs := range [][]float64{{1e-16, 1, 1e16}, {1e16, 1, 1e-16}, {1, 1e16, 1e-16}} {
		if got := o.sumValue(accOf(xs)); got != 10000000000000002 {
			t.Errorf("%v: %v", xs, got)
		}
	}
}

func TestSumOverflow(t *testing.T) {
	o := testOp()
	if v := o.sumValue(accOf([]float64{math.MaxFloat64, math.MaxFloat64})); !math.IsInf(v, 1) {
		t.Fatalf("got %v, want +Inf", v)
	}
	if v := o.sumValue(accOf([]float64{-math.MaxFloat64, -math.MaxFloat64})); !math.IsInf(v, -1) {
		t.Fatalf("got %v, want -Inf", v)
	}
	// The exact sum is back in range: no overflow.
	if v := o.sumValue(accOf([]float64{math.MaxFloat64, math.MaxFloat64, -math.MaxFloat64})); v != math.MaxFloat64 {
		t.Fatalf("got %v, want MaxFloat64", v)
	}
}

// TestChunkValueRounding checks the conversion of chunk integers to float64
// against math/big, near ties and across the exponent range.
func TestChunkValueRounding(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for trial := range 20000 {
		c := make([]int64, sumChunks+2)
		lo := rng.IntN(66)
		n := 1 + rng.IntN(4)
		for i := lo; i < min(lo+n, 68); i++ {
			c[i] = int64(rng.Uint32())
			if rng.IntN(3) == 0 {
				c[i] = 0
			}
			if rng.IntN(5) == 0 {
				c[i] = 1 << 31 // ties
			}
			if rng.IntN(7) == 0 {
				c[i] = -c[i]
			}
		}
		want := new(big.Float).SetPrec(4000)
		for i, v := range c {
			f := new(big.Float).SetPrec(4000).SetInt64(v)
			f.SetMantExp(f, 32*i-1074)
			want.Add(want, f)
		}
		w, _ := want.Float64()
		got := chunkValue(slices.Clone(c), -1074)
		if got != w && !(math.IsInf(got, 0) && math.IsInf(w, 0)) {
			t.Fatalf("trial %d: %v, want %v (chunks from %d)", trial, got, w, lo)
		}
	}
}

// TestQuantileErrorBound checks sketch quantiles against exact nearest-rank
// quantiles: the relative error stays within QuantileRelError.
func TestQuantileErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	gens := map[string]func() float64{
		"normal":    func() float64 { return 1500 + 300*rng.NormFloat64() },
		"lognormal": func() float64 { return math.Exp(3 * rng.NormFloat64()) },
		"signed":    func() float64 { return 100 * rng.NormFloat64() },
		"integers":  func() float64 { return float64(rng.IntN(50) - 10) },
		"tiny":      func() float64 { return math.Ldexp(rng.Float64(), -900) },
	}
	qs := []struct{ num, den uint64 }{{1, 100}, {25, 100}, {50, 100}, {90, 100}, {95, 100}, {99, 100}, {999, 1000}, {100, 100}}
	for name, gen := range gens {
		t.Run(name, func(t *testing.T) {
			worst := 0.0
			for trial := range 40 {
				xs := make([]float64, 1+rng.IntN(5000))
				var k sketch
				var ar arena
				lo, hi := math.Inf(1), math.Inf(-1)
				for i := range xs {
					xs[i] = gen()
					k.add(math.Float64bits(xs[i]), &ar)
					lo, hi = min(lo, xs[i]), max(hi, xs[i])
				}
				sorted := slices.Clone(xs)
				slices.Sort(sorted)
				for _, q := range qs {
					rank := (uint64(len(xs))*q.num + q.den - 1) / q.den
					rank = max(rank, 1)
					want := sorted[rank-1]
					got := k.quantile(q.num, q.den, uint64(len(xs)), lo, hi)
					err := math.Abs(got - want)
					if err > QuantileRelError*math.Abs(want) {
						t.Fatalf("trial %d q=%d/%d: got %v, exact %v, relative error %g > %g",
							trial, q.num, q.den, got, want, err/math.Abs(want), QuantileRelError)
					}
					if want != 0 {
						worst = max(worst, err/math.Abs(want))
					}
				}
			}
			t.Logf("worst relative error %.3g (bound %.3g)", worst, QuantileRelError)
		})
	}
}

// TestSketchMerge checks that merging sketches equals one sketch of all
// values, that regions grow in both directions, and that 32-bit counts
// carry.
func TestSketchMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	var all sketch
	var allAr arena
	parts := make([]sketch, 5)
	ars := make([]arena, 5)
	for i := range 20000 {
		v := math.Exp(4*rng.NormFloat64()) * float64(1-2*rng.IntN(2))
		if i%97 == 0 {
			v = 0
		}
		b := math.Float64bits(v)
		all.add(b, &allAr)
		p := rng.IntN(len(parts))
		parts[p].add(b, &ars[p])
	}
	var m sketch
	var mAr arena
	for i := len(parts) - 1; i >= 0; i-- {
		m.merge(&parts[i], &mAr)
	}
	if !sameSketch(&all, &m) {
		t.Fatal("merged sketch differs from the sketch of all values")
	}
	// Carries beyond 32 bits.
	var big, one sketch
	var bigAr, oneAr arena
	big.addN(math.Float64bits(5), 1<<32-1, &bigAr)
	one.add(math.Float64bits(5), &oneAr)
	big.merge(&one, &bigAr)
	big.add(math.Float64bits(5), &bigAr)
	big.add(math.Float64bits(7), &bigAr)
	if c := big.count(&big.pos, int(int32(math.Float64bits(5)>>idxShift)-big.pos.base), false); c != 1<<32+1 {
		t.Fatalf("count %d, want 2^32+1", c)
	}
	if q := big.quantile(100, 100, 1<<32+2, 5, 7); q != 7 {
		t.Fatalf("max quantile %v", q)
	}
	// Reset keeps the arena block and leaves zeros behind.
	m.reset()
	mAr.reset()
	n := len(mAr.buf)
	var m2 sketch
	for i := len(parts) - 1; i >= 0; i-- {
		m2.merge(&parts[i], &mAr)
	}
	m2.reset()
	mAr.reset()
	if len(mAr.buf) != n {
		t.Fatalf("arena block %d cells, then %d", n, len(mAr.buf))
	}
	for _, x := range mAr.buf {
		if x != 0 {
			t.Fatal("reset left counts behind")
		}
	}
}

func sameSketch(a, b *sketch) bool {
	for _, side := range []bool{false, true} {
		da, db := &a.pos, &b.pos
		if side {
			da, db = &a.neg, &b.neg
		}
		ma, mb := map[int32]uint64{}, map[int32]uint64{}
		for i := range da.counts {
			if c := a.count(da, i, side); c != 0 {
				ma[da.base+int32(i)] = c
			}
		}
		for i := range db.counts {
			if c := b.count(db, i, side); c != 0 {
				mb[db.base+int32(i)] = c
			}
		}
		if len(ma) != len(mb) {
			return false
		}
		for k, v := range ma {
			if mb[k] != v {
				return false
			}
		}
	}
	return a.zero == b.zero
}

// TestStddevExact checks that stddev does not suffer cancellation for data
// with a large mean and a tiny spread, and is the exact result rounded.
func TestStddevExact(t *testing.T) {
	o := testOp()
	rng := rand.New(rand.NewPCG(4, 4))
	for _, xs := range [][]float64{
		{1e9 + 0.1, 1e9 + 0.2, 1e9 + 0.3, 1e9 + 0.4},
		{-3, 1e-200, 7},
		{1e200, -1e200, 3},
		{1e300, -1e300, 5e299},
		{1e-200, -1e-200, 3e-200},
		{5, 5, 5, 5},
		func() []float64 {
			xs := make([]float64, 1000)
			for i := range xs {
				xs[i] = 1e6 + rng.NormFloat64()
			}
			return xs
		}(),
	} {
		a := accOf(xs)
		sum := o.sumValue(a)
		got := o.stddev(a, sum)
		// The exact sum of squared deviations from the rounded mean, via math/big.
		const prec = 9000
		m := new(big.Float).SetPrec(prec).SetFloat64(sum / float64(len(xs)))
		ss := new(big.Float).SetPrec(prec)
		for _, x := range xs {
			d := new(big.Float).SetPrec(prec).SetFloat64(x)
			d.Sub(d, m)
			ss.Add(ss, d.Mul(d, d))
		}
		// Scale like stddev does when the sum of squares leaves the normal range.
		shift := 0
		switch e := ss.MantExp(nil); {
		case e > 900:
			shift = -600
		case e < -900:
			shift = 600
		}
		v, _ := ss.SetMantExp(ss, shift).Float64()
		want := math.Ldexp(math.Sqrt(v/float64(len(xs)-1)), -shift/2)
		if got != want {
			t.Errorf("%.3v...: stddev %v, exact %v", xs[:min(3, len(xs))], got, want)
		}
	}
}
