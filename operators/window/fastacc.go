package window

import (
	"math"
	"math/bits"
)

// Fast exact sums. A facc (acc.go) spreads every value over three (for
// squares five) base-2^32 digits of a 256-bit window: exact for any data,
// but 176 bytes per field and slot, most of which a row touches. The
// values of one field in one window usually lie within a few binades of
// each other; for them the slot keeps its sums in a hacc ("hot"
// accumulator): the sum as a 128-bit and the sum of squares as a 192-bit
// fixed-point integer whose unit is set by the first value. A hacc also
// holds the count, extremes and special values, so a row updates 72 bytes
// per field. Values outside the fixed-point range go to the slot's facc
// (the "cold" sums, exact as before); the exact sum of a slot is the sum
// of both. Results are formed from the exact integers, so they are the
// same whichever tier held the values.
const (
	// fastSpan is how many binades above its base the fast tier holds:
	// a value with lowest bit position p (units of 2^-1074) fits when
	// 0 <= p - base <= fastSpan. The sum then stays below 2^(53+32+22)
	// and the sum of squares below 2^(106+64+22) for up to fastMaxAdds
	// values.
	fastSpan = 32
	// fastBelow is the room below the first value of a fast tier.
	fastBelow = 16
)

// fastMaxAdds bounds the values in a fast tier (at most 1<<22); it is
// flushed to the cold sums when full. Tests lower it.
var fastMaxAdds uint32 = 1 << 22

// hacc is the hot state of one numeric field in one slot.
type hacc struct {
	n      int64 // non-null values
	mn, mx float64
	// s is the fast sum, a two's complement 128-bit integer (s0 low) in
	// units of 2^(base-1074); q the fast sum of squares, 192 bits (q0
	// low) in units of 2^(2*base-2148).
	s0, s1     uint64
	q0, q1, q2 uint64
	base       int16  // lowest bit position of the fast tier, or noBase while it is empty
	special    uint8  // spec* bits
	cold       bool   // the slot's facc holds part of the sums
	fadds      uint32 // values in the fast tier
}

func (h *hacc) reset() {
	*h = hacc{mn: math.Inf(1), mx: math.Inf(-1), base: noBase}
}

// addFast adds the value ±m*2^p (neg 0 or all ones) to the fast tier,
// which must cover p. sq says whether squares are summed. accFloat does
// the same inline.
func (h *hacc) addFast(m uint64, p int32, neg uint64, sq bool) {
	sh := uint(p-int32(h.base)) & 63 // at most fastSpan
	// x = m<<sh, up to 85 bits: xl + xh<<64 (m>>1>>(63-sh) is m>>(64-sh),
	// 0 for sh == 0).
	xl, xh := m<<sh, m>>1>>((63-sh)&63)
	var c uint64
	h.s0, c = bits.Add64(h.s0, xl^neg, neg&1)
	h.s1 += xh ^ neg + c
	if sq {
		// x^2 = xl^2 + 2*xl*xh<<64 + xh^2<<128 (xh < 2^21).
		h0, l0 := bits.Mul64(xl, xl)
		h1, l1 := bits.Mul64(xl, xh)
		h1, l1 = h1<<1|l1>>63, l1<<1
		h.q0, c = bits.Add64(h.q0, l0, 0)
		mid, c2 := bits.Add64(h0, l1, 0)
		h.q1, c = bits.Add64(h.q1, mid, c)
		h.q2 += h1 + xh*xh + c + c2
	}
	h.fadds++
}

// sumDigitsOf returns the fast sum as base-2^32 digits from chunk ci (all
// negated for a negative sum), or ok false when the fast tier is empty.
func (h *hacc) sumDigitsOf() (ds [5]int64, ci int, ok bool) {
	if h.base == noBase {
		return ds, 0, false
	}
	lo, hi := h.s0, h.s1
	neg := int64(hi) < 0
	if neg {
		var b uint64
		lo, b = bits.Sub64(0, lo, 0)
		hi, _ = bits.Sub64(0, hi, b)
	}
	sh := uint(h.base) & 31
	w0, w1, w2 := lo<<sh, hi<<sh|lo>>(64-sh), hi>>(64-sh)
	ds = [5]int64{int64(w0 & digitMask), int64(w0 >> 32), int64(w1 & digitMask), int64(w1 >> 32), int64(w2)}
	if neg {
		for i := range ds {
			ds[i] = -ds[i]
		}
	}
	return ds, int(h.base) >> 5, true
}

// sqDigitsOf returns the fast sum of squares as base-2^32 digits from
// chunk ci, or ok false when it is zero.
func (h *hacc) sqDigitsOf() (ds [7]int64, ci int, ok bool) {
	if h.base == noBase || h.q0|h.q1|h.q2 == 0 {
		return ds, 0, false
	}
	p := 2 * int(h.base)
	sh := uint(p) & 31
	y0 := h.q0 << sh
	y1 := h.q1<<sh | h.q0>>(64-sh)
	y2 := h.q2<<sh | h.q1>>(64-sh)
	y3 := h.q2 >> (64 - sh)
	ds = [7]int64{int64(y0 & digitMask), int64(y0 >> 32), int64(y1 & digitMask), int64(y1 >> 32),
		int64(y2 & digitMask), int64(y2 >> 32), int64(y3)}
	return ds, p >> 5, true
}

// flushFast moves the fast tier of state i to its cold sums.
func (o *Operator) flushFast(i int) {
	h := &o.hot[i]
	if h.base == noBase {
		return
	}
	c := o.coldAcc(i)
	if ds, ci, ok := h.sumDigitsOf(); ok {
		c.addDigits(false, ci, ds[:]...)
	}
	if ds, ci, ok := h.sqDigitsOf(); ok {
		c.addDigits(true, ci, ds[:]...)
	}
	c.adds++
	if c.adds >= carryEvery {
		c.carry()
	}
	h.s0, h.s1, h.q0, h.q1, h.q2 = 0, 0, 0, 0, 0
	h.base, h.fadds, h.cold = noBase, 0, true
}

// addSlow adds a finite non-zero value (bits b) of state i that the fast
// tier does not take as it stands: it starts the fast tier, flushes a full
// one, or adds the value to the cold sums.
func (o *Operator) addSlow(i int, b uint64, sq bool) {
	h := &o.hot[i]
	if h.fadds >= fastMaxAdds {
		o.flushFast(i)
	}
	m, p := split(b)
	neg := uint64(int64(b) >> 63)
	if h.base == noBase {
		h.base = int16(max(p-fastBelow, 0))
		h.addFast(m, p, neg, sq)
		return
	}
	if d := p - int32(h.base); d >= 0 && d <= fastSpan {
		h.addFast(m, p, neg, sq)
		return
	}
	c := o.coldAcc(i)
	c.addSum(b)
	if sq {
		c.addSq(b)
	}
	c.adds++
	if c.adds >= carryEvery {
		c.carry()
	}
	h.cold = true
}

// sums returns a facc holding the exact sums, count and special values of
// state i: o.tmpAcc filled from the fast tier when the cold sums are
// unused, else the cold sums with the fast tier flushed into them.
func (o *Operator) sums(i int) *facc {
	tmp := &o.tmpAcc
	h := &o.hot[i]
	if h.cold {
		o.flushFast(i)
		c := o.coldAcc(i)
		c.n, c.special = h.n, h.special
		return c
	}
	*tmp = facc{n: h.n, special: h.special, sumBase: noBase, sqBase: noBase}
	if ds, ci, ok := h.sumDigitsOf(); ok {
		copy(tmp.sum[:], ds[:])
		tmp.sumBase = int16(ci)
	}
	if ds, ci, ok := h.sqDigitsOf(); ok {
		copy(tmp.sq[:], ds[:])
		tmp.sqBase = int16(ci)
	}
	return tmp
}

// mergeAcc adds numeric state s to state d.
func (o *Operator) mergeAcc(d, s int) {
	hd, hs := &o.hot[d], &o.hot[s]
	hd.n += hs.n
	if hs.mn < hd.mn {
		hd.mn = hs.mn
	}
	if hs.mx > hd.mx {
		hd.mx = hs.mx
	}
	hd.special |= hs.special
	if hs.base != noBase {
		switch {
		case hd.base == noBase:
			hd.s0, hd.s1, hd.q0, hd.q1, hd.q2 = hs.s0, hs.s1, hs.q0, hs.q1, hs.q2
			hd.base, hd.fadds = hs.base, hs.fadds
		case !hd.mergeFast(hs):
			o.flushFast(s)
		}
	}
	if hs.cold {
		o.coldAcc(d).mergeSums(o.coldAcc(s))
		hd.cold = true
	}
}

// maxFastShift is the largest difference of bases mergeFast bridges.
const maxFastShift = 16

// mergeFast adds the fast tier of o to that of h (both non-empty) and
// reports whether it could: the tier with the higher base is rescaled to
// the lower one. A fast tier keeps |s| < fadds*2^85 and q < fadds*2^170
// (each value adds less), so fadds <= fastMaxAdds bounds it; rescaling by
// 2^d multiplies fadds by 2^(2d) to keep that.
func (h *hacc) mergeFast(o *hacc) bool {
	if h.base == o.base {
		if uint64(h.fadds)+uint64(o.fadds) > uint64(fastMaxAdds) {
			return false
		}
		var c uint64
		h.s0, c = bits.Add64(h.s0, o.s0, 0)
		h.s1 += o.s1 + c
		h.q0, c = bits.Add64(h.q0, o.q0, 0)
		h.q1, c = bits.Add64(h.q1, o.q1, c)
		h.q2 += o.q2 + c
		h.fadds += o.fadds
		return true
	}
	a, b := *h, *o
	if a.base > b.base {
		a, b = b, a
	}
	d := uint(int(b.base) - int(a.base)) // b is rescaled by 2^d
	if d > maxFastShift {
		return false
	}
	bAdds := uint64(b.fadds) << (2 * d)
	if uint64(a.fadds)+bAdds > uint64(fastMaxAdds) {
		return false
	}
	b.s1 = b.s1<<d | b.s0>>(64-d)
	b.s0 <<= d
	d2 := 2 * d
	b.q2 = b.q2<<d2 | b.q1>>(64-d2)
	b.q1 = b.q1<<d2 | b.q0>>(64-d2)
	b.q0 <<= d2
	var c uint64
	h.s0, c = bits.Add64(a.s0, b.s0, 0)
	h.s1 = a.s1 + b.s1 + c
	h.q0, c = bits.Add64(a.q0, b.q0, 0)
	h.q1, c = bits.Add64(a.q1, b.q1, c)
	h.q2 = a.q2 + b.q2 + c
	h.base, h.fadds = a.base, a.fadds+uint32(bAdds)
	return true
}

// coldAcc returns the cold sums of state i. They are allocated per slot
// when first needed and kept with the slot.
func (o *Operator) coldAcc(i int) *facc {
	nf := len(o.fd)
	blk := o.cold[i/nf]
	if blk == nil {
		blk = make([]facc, nf)
		for j := range blk {
			blk[j].reset()
		}
		o.cold[i/nf] = blk
	}
	return &blk[i%nf]
}

// Results from the fast tier. The sum and the sum of squared deviations
// are formed exactly from the fast tier's integers and rounded once, as
// sumValue and stddev do from chunks, so the results are the same. They
// are used only where the values stay far from the ends of the float64
// range (no rescaling, no subnormals); elsewhere the chunk code decides.

// fastSum returns the correctly rounded sum of a fast tier without cold
// sums, or ok false when the chunk code must decide.
func (h *hacc) fastSum() (sum float64, ok bool) {
	if h.base == noBase {
		return 0, false
	}
	lo, hi := h.s0, h.s1
	neg := int64(hi) < 0
	if neg {
		var b uint64
		lo, b = bits.Sub64(0, lo, 0)
		hi, _ = bits.Sub64(0, hi, b)
	}
	top, sh := top64(u320{lo, hi})
	e := sh + int(h.base) - 1074 // sum = top * 2^e
	if e < -1000 || e > 900 {
		return 0, false
	}
	r := float64(top) * math.Float64frombits(uint64(e+1023)<<52)
	if neg {
		r = -r
	}
	return r, true
}

// u320 is a 320-bit integer, two's complement, least significant word
// first.
type u320 [5]uint64

func (x *u320) add(y *u320) {
	var c uint64
	for i := range x {
		x[i], c = bits.Add64(x[i], y[i], c)
	}
}

func (x *u320) sub(y *u320) {
	var b uint64
	for i := range x {
		x[i], b = bits.Sub64(x[i], y[i], b)
	}
}

// shl returns x shifted left by k < 320 bits.
func (x u320) shl(k uint) u320 {
	w, s := k/64, k%64
	var r u320
	for i := len(x) - 1; i >= int(w); i-- {
		r[i] = x[i-int(w)] << s
		if i-int(w)-1 >= 0 && s != 0 {
			r[i] |= x[i-int(w)-1] >> (64 - s)
		}
	}
	return r
}

// bitLen returns the number of bits of a non-negative x.
func (x *u320) bitLen() int {
	for i := len(x) - 1; i >= 0; i-- {
		if x[i] != 0 {
			return 64*i + bits.Len64(x[i])
		}
	}
	return 0
}

// top64 returns the leading 64 bits of a non-negative x, the lowest of
// them set if any bit below is (so that converting them to float64 rounds
// like x), and the number of bits below them: x ~ top * 2^sh.
func top64(x u320) (top uint64, sh int) {
	n := x.bitLen()
	if n <= 64 {
		return x[0], 0
	}
	sh = n - 64
	w, s := sh/64, uint(sh%64)
	top = x[w] >> s
	if s != 0 {
		top |= x[w+1] << (64 - s)
	}
	sticky := x[w] << (64 - s) >> (64 - s) // the bits of x[w] below top; none when s == 0
	if s == 0 {
		sticky = 0
	}
	for i := range w {
		sticky |= x[i]
	}
	if sticky != 0 {
		top |= 1
	}
	return top, sh
}

// fastStddev returns the sample standard deviation of a fast tier without
// cold sums, given the rounded sum of its n >= 2 values (no special
// values), or ok false when the chunk code must decide. With m the
// rounded mean, T = Q - 2mS + n*m^2 is formed exactly in 320 bits and
// rounded once, as stddev does.
func (h *hacc) fastStddev(sum float64) (float64, bool) {
	if h.base == noBase || h.n < 2 || h.n >= 1<<32 {
		return 0, false
	}
	// Below, x < 2^(192+120), |y| < 2^(1+53+107+120), z < 2^(32+106+120):
	// T fits in 320 bits with room for its sign.
	nf := float64(h.n)
	m := sum / nf
	if m == 0 || isInf(m) {
		return 0, false
	}
	mb := math.Float64bits(m)
	mm, pm := split(mb)
	// S in units of 2^(a-1074), Q of 2^(2a-2148), m of 2^(b-1074); T in
	// units of 2^(2c-2148), c = min(a, b).
	a, b := int(h.base), int(pm)
	c := min(a, b)
	da, db := uint(a-c), uint(b-c)
	if da > 60 || db > 60 {
		return 0, false
	}
	x := u320{h.q0, h.q1, h.q2}.shl(2 * da)
	// y = 2*mm*|S| << (da+db)
	slo, shi := h.s0, h.s1
	sneg := int64(shi) < 0
	if sneg {
		var br uint64
		slo, br = bits.Sub64(0, slo, 0)
		shi, _ = bits.Sub64(0, shi, br)
	}
	h0, l0 := bits.Mul64(mm, slo)
	h1, l1 := bits.Mul64(mm, shi)
	w1, cy := bits.Add64(h0, l1, 0)
	y := u320{l0, w1, h1 + cy}.shl(da + db + 1)
	// z = n*mm^2 << 2db
	qh, ql := bits.Mul64(mm, mm)
	n := uint64(h.n)
	a1, a0 := bits.Mul64(n, ql)
	b1, b0 := bits.Mul64(n, qh)
	z1, cz := bits.Add64(a1, b0, 0)
	z := u320{a0, z1, b1 + cz}.shl(2 * db)
	// The terms must stay well inside the float64 range.
	unit := 2*c - 2148
	if max(x.bitLen(), y.bitLen(), z.bitLen())+unit > 400 {
		return 0, false
	}
	t := x
	if sneg == (mb>>63 != 0) {
		t.sub(&y) // m and S of the same sign: -2mS < 0
	} else {
		t.add(&y)
	}
	t.add(&z)
	if int64(t[4]) < 0 {
		return 0, false // cannot happen: T is a sum of squares
	}
	if t.bitLen() == 0 {
		return 0, true
	}
	top, sh := top64(t)
	e := sh + unit
	if t.bitLen()+unit < -400 {
		return 0, false
	}
	v := float64(top) * math.Float64frombits(uint64(e+1023)<<52)
	return math.Sqrt(v / (nf - 1)), true
}

// fieldSum returns the sum of state i for the sum, avg and stddev
// functions; sa caches the facc of sums (see sums) when one is needed.
func (o *Operator) fieldSum(i int, sa **facc) float64 {
	if h := &o.hot[i]; !h.cold && h.special == 0 {
		if v, ok := h.fastSum(); ok {
			return v
		}
	}
	if *sa == nil {
		*sa = o.sums(i)
	}
	return o.sumValue(*sa)
}

// fieldStddev returns the stddev of state i given its sum (fieldSum).
func (o *Operator) fieldStddev(i int, sum float64, sa **facc) float64 {
	if h := &o.hot[i]; !h.cold && h.special == 0 && !isInf(sum) {
		if v, ok := h.fastStddev(sum); ok {
			return v
		}
	}
	if *sa == nil {
		*sa = o.sums(i)
	}
	return o.stddev(*sa, sum)
}
