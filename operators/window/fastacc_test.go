package window

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestFastTierExact feeds values through the hot loop (accFloat) into
// several states, with fast tiers flushed early, full or at random, merges
// the states and checks sum, sum of squares and stddev against the cold
// sums of all values (accOf) and math/big.
func TestFastTierExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	gens := map[string]func() float64{
		"sensor":    func() float64 { return 1500 + 300*rng.NormFloat64() },
		"decimals":  func() float64 { return float64(rng.IntN(100000)) / 100 },
		"signed":    func() float64 { return 3 * rng.NormFloat64() },
		"spread":    func() float64 { return math.Ldexp(1+rng.Float64(), rng.IntN(80)-40) * float64(1-2*rng.IntN(2)) },
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
			fastSums, fastStddevs := 0, 0
			defer func() { t.Logf("%d fast sums, %d fast stddevs", fastSums, fastStddevs) }()
			for trial := range 40 {
				maxAdds := uint32(1 << 22)
				if trial%2 == 1 {
					maxAdds = uint32(1 + rng.IntN(40))
				}
				restore := SetFastMaxAdds(maxAdds)
				flushP := rng.IntN(4) // 0: never
				const states = 4
				o.fd = []fieldDesc{{needMinMax: true, needSum: true, needSq: true, sk: -1, fl: -1, vb: validity{all: true}}}
				o.hot = make([]hacc, states)
				o.cold = make([][]facc, states)
				for i := range o.hot {
					o.hot[i].reset()
				}
				var in []float64
				for range 1 + rng.IntN(60) {
					col := make([]float64, 1+rng.IntN(100))
					base := make([]int32, len(col))
					for i := range col {
						col[i] = gen()
						if name == "cancel" && i > 0 && rng.IntN(2) == 0 {
							col[i] = -col[i-1]
						}
						base[i] = int32(rng.IntN(states+1)) - 1
						if base[i] >= 0 {
							in = append(in, col[i])
						}
					}
					o.fd[0].f64 = col
					o.accFloat(0, base, 0)
					if flushP > 0 && rng.IntN(flushP+1) == 0 {
						o.flushFast(rng.IntN(states))
					}
				}
				for _, s := range rng.Perm(states - 1) {
					o.mergeAcc(0, s+1)
				}
				restore()
				if int(o.hot[0].n) != len(in) {
					t.Fatalf("trial %d: count %d, want %d", trial, o.hot[0].n, len(in))
				}
				a := o.sums(0)
				want := accOf(in)
				sum, wantSum := o.sumValue(a), o.sumValue(want)
				if sum != wantSum || sum != bigSum(in) {
					t.Fatalf("trial %d: sum %v, cold sums %v, exact %v", trial, sum, wantSum, bigSum(in))
				}
				if name != "subnormal" {
					if got, exact := sqValue(o, a), bigSq(in); got != exact {
						t.Fatalf("trial %d: sum of squares %v, exact %v", trial, got, exact)
					}
				}
				if len(in) >= 2 {
					got, exp := o.stddev(a, sum), o.stddev(want, wantSum)
					if math.Float64bits(got) != math.Float64bits(exp) {
						t.Fatalf("trial %d: stddev %v, from the cold sums %v", trial, got, exp)
					}
				}
				// The results formed from the fast tier directly.
				if h := &o.hot[0]; !h.cold {
					if got, ok := h.fastSum(); ok {
						fastSums++
						if math.Float64bits(got) != math.Float64bits(wantSum) {
							t.Fatalf("trial %d: fast sum %v, want %v", trial, got, wantSum)
						}
					}
					if got, ok := h.fastStddev(wantSum); ok && len(in) >= 2 {
						fastStddevs++
						if exp := o.stddev(want, wantSum); math.Float64bits(got) != math.Float64bits(exp) {
							t.Fatalf("trial %d: fast stddev %v, want %v", trial, got, exp)
						}
					}
				}
			}
		})
	}
}

// TestStddevRepeatable checks that stddev of values spanning the whole
// range (sums in the wide accumulators) does not depend on what the
// operator computed before: its scratch chunks start clean.
func TestStddevRepeatable(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	o := testOp()
	xs := make([]float64, 1500)
	for i := range xs {
		xs[i] = math.Ldexp(rng.Float64()-0.5, rng.IntN(1800)-900)
	}
	var first uint64
	for trial := range 6 {
		rng.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
		a := accOf(xs)
		got := math.Float64bits(o.stddev(a, o.sumValue(a)))
		if trial == 0 {
			first = got
		} else if got != first {
			t.Fatalf("trial %d: stddev %v, first %v", trial, math.Float64frombits(got), math.Float64frombits(first))
		}
		// Something else in between, with other carries.
		b := accOf(xs[:1+rng.IntN(len(xs)-1)])
		o.stddev(b, o.sumValue(b))
	}
}

// TestExtremeKey checks the selection of the m-th largest and smallest
// bucket key of a log against sorting.
func TestExtremeKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	for trial := range 3000 {
		stride := 1 + rng.IntN(5)
		rows := 1 + rng.IntN(120)
		log := make([]int32, rows*stride)
		spread := int32(1 + rng.IntN(300))
		for i := range log {
			log[i] = rng.Int32N(2*spread) - spread
			if rng.IntN(10) == 0 {
				log[i] = noKey
			}
		}
		start := rng.IntN(stride)
		var keys []int32
		for j := start; j < len(log); j += stride {
			if log[j] != noKey {
				keys = append(keys, log[j])
			}
		}
		if len(keys) == 0 {
			continue
		}
		slices.Sort(keys)
		m := 1 + rng.IntN(min(maxTopM, len(keys)))
		if got, want := extremeKey(log, start, stride, m, true), keys[len(keys)-m]; got != want {
			t.Fatalf("trial %d: %d-th largest %d, want %d", trial, m, got, want)
		}
		if got, want := extremeKey(log, start, stride, m, false), keys[m-1]; got != want {
			t.Fatalf("trial %d: %d-th smallest %d, want %d", trial, m, got, want)
		}
		k := rng.IntN(len(keys))
		sel := slices.Clone(keys)
		rng.Shuffle(len(sel), func(i, j int) { sel[i], sel[j] = sel[j], sel[i] })
		if got := selectKth(sel, k); got != keys[k] {
			t.Fatalf("trial %d: selectKth %d: %d, want %d", trial, k, got, keys[k])
		}
	}
}

// TestFastResults checks the sum and stddev formed from a fast tier
// against the chunk code over many kinds of data: large means with tiny
// spreads, means near zero, exact cancellations, integers, a wide range
// of magnitudes.
func TestFastResults(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	fams := []func(scale float64) float64{
		func(s float64) float64 { return s * (1 + 1e-7*rng.NormFloat64()) },
		func(s float64) float64 { return s * rng.NormFloat64() },
		func(s float64) float64 { return s * float64(rng.IntN(7)-3) },
		func(s float64) float64 { return math.Round(s*rng.Float64()*100) / 100 },
		func(s float64) float64 { return s * math.Exp(2*rng.NormFloat64()) },
		func(s float64) float64 { return s * (1 + rng.Float64()) * float64(1-2*rng.IntN(2)) },
	}
	o := testOp()
	o.fd = []fieldDesc{{needMinMax: true, needSum: true, needSq: true, sk: -1, fl: -1, vb: validity{all: true}}}
	fastSum, fastStd, trials := 0, 0, 0
	for trial := range 4000 {
		fam := fams[rng.IntN(len(fams))]
		scale := math.Ldexp(1, rng.IntN(400)-200)
		if rng.IntN(4) == 0 {
			scale = math.Ldexp(1, rng.IntN(2000)-1000)
		}
		col := make([]float64, 1+rng.IntN(300))
		for i := range col {
			col[i] = fam(scale)
		}
		if rng.IntN(5) == 0 { // an exact cancellation of the sum
			for i := range len(col) / 2 {
				col[len(col)-1-i] = -col[i]
			}
		}
		o.hot = make([]hacc, 1)
		o.cold = make([][]facc, 1)
		o.hot[0].reset()
		o.fd[0].f64 = col
		o.accFloat(0, make([]int32, len(col)), 0)
		h := &o.hot[0]
		if h.cold {
			continue
		}
		trials++
		a := o.sums(0)
		want := o.sumValue(a)
		if got, ok := h.fastSum(); ok {
			fastSum++
			if math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("trial %d: fast sum %v, chunk code %v", trial, got, want)
			}
		}
		if len(col) < 2 {
			continue
		}
		if got, ok := h.fastStddev(want); ok {
			fastStd++
			if exp := o.stddev(a, want); math.Float64bits(got) != math.Float64bits(exp) {
				t.Fatalf("trial %d (%d values, first %v): fast stddev %v, chunk code %v", trial, len(col), col[0], got, exp)
			}
		}
	}
	t.Logf("%d trials in the fast tier: %d fast sums, %d fast stddevs", trials, fastSum, fastStd)
	if fastSum < trials/2 || fastStd < trials/3 {
		t.Fatalf("fast results too rarely used: %d sums, %d stddevs of %d", fastSum, fastStd, trials)
	}
}
