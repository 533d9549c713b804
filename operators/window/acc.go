package window

import (
	"math"
	"math/bits"
)

// Exact sums: every finite float64 is an integer multiple of 2^-1074, and
// every square of one an integer multiple of 2^-2148. A sum is kept as such
// an integer, in base-2^32 digits held in int64 words ("chunks"), so adding
// a value is a few integer additions at positions given by its exponent: no
// rounding, no branches that depend on the data, and a result that is the
// same for any order of the values. Words have 31 bits of headroom; carries
// are propagated every carryEvery additions.
//
// A slot keeps a window of accChunks chunks starting at a base chunk chosen
// from its first value. A value outside the window moves the window when
// the used chunks still fit, and otherwise switches the sum to a wide
// accumulator that covers the whole range (kept for reuse).
const (
	accChunks  = 8
	sumChunks  = 76  // 2046 positions + 53 mantissa bits + 63 bits of carries, + a window above
	sqChunks   = 144 // 4092 positions + 106 bits + 63 bits of carries, + a window above
	carryEvery = 1 << 28
	noBase     = math.MinInt16
	// tChunks holds sum((x-m)^2) while it is formed: squares, products
	// of a 2^85 sum chunk and a 53-bit mean, and n*m^2 (169 bits).
	tChunks = sqChunks + 8
)

const digitMask = 1<<32 - 1

// wideAcc holds the full-range sums of a slot whose values span more than
// a window.
type wideAcc struct {
	sum [sumChunks]int64
	sq  [sqChunks]int64
}

// mode bits of a facc.
const (
	wideSum uint8 = 1 << iota
	wideSq
)

// split returns the integer mantissa and the position (in units of
// 2^-1074) of the lowest bit of a finite non-zero value's magnitude.
func split(b uint64) (m uint64, p int32) {
	e := int32(b>>52) & 0x7ff
	m = b & (1<<52 - 1)
	if e == 0 {
		e = 1
	} else {
		m |= 1 << 52
	}
	return m, e - 1
}

// sumDigits returns the three base-2^32 digits of m<<sh, negated when neg
// is -1 (neg is 0 or -1).
func sumDigits(m uint64, sh uint, neg int64) (d0, d1, d2 int64) {
	sh &= 31
	lo := m << sh
	d0 = int64(lo & digitMask)
	d1 = int64(lo >> 32)
	d2 = int64(m >> 1 >> (63 - sh)) // m>>(64-sh), and 0 for sh == 0 (m < 2^53)
	return (d0 ^ neg) - neg, (d1 ^ neg) - neg, (d2 ^ neg) - neg
}

// sqDigits returns the five base-2^32 digits of m*m<<sh.
func sqDigits(m uint64, sh uint) (d0, d1, d2, d3, d4 int64) {
	sh &= 31
	hi, lo := bits.Mul64(m, m)
	w0 := lo << sh
	w1 := hi<<sh | lo>>1>>(63-sh) // lo>>(64-sh), and 0 for sh == 0
	w2 := hi >> 1 >> (63 - sh)    // hi < 2^42
	return int64(w0 & digitMask), int64(w0 >> 32), int64(w1 & digitMask), int64(w1 >> 32), int64(w2)
}

// addSum adds a finite non-zero value (bits b) to the sum. passSums
// inlines the same steps.
func (a *facc) addSum(b uint64) {
	m, p := split(b)
	ci := p>>5 - int32(a.sumBase)
	if uint32(ci) > accChunks-3 {
		a.addSumSlow(b)
		return
	}
	d0, d1, d2 := sumDigits(m, uint(p&31), int64(b)>>63)
	c := &a.sum
	c[ci&7] += d0
	c[(ci+1)&7] += d1
	c[(ci+2)&7] += d2
}

// addSq adds the exact square of a finite non-zero value (bits b): the
// 106-bit square of the mantissa at twice the value's position. passSums
// inlines the same steps.
func (a *facc) addSq(b uint64) {
	m, p := split(b)
	q := 2 * p
	ci := q>>5 - int32(a.sqBase)
	if uint32(ci) > accChunks-5 {
		a.addSqSlow(b)
		return
	}
	d0, d1, d2, d3, d4 := sqDigits(m, uint(q&31))
	c := &a.sq
	c[ci&7] += d0
	c[(ci+1)&7] += d1
	c[(ci+2)&7] += d2
	c[(ci+3)&7] += d3
	c[(ci+4)&7] += d4
}

func (a *facc) addSumSlow(b uint64) {
	m, p := split(b)
	d0, d1, d2 := sumDigits(m, uint(p&31), int64(b)>>63)
	ci := int(p >> 5)
	a.addDigits(false, ci, d0, d1, d2)
}

func (a *facc) addSqSlow(b uint64) {
	m, p := split(b)
	q := 2 * p
	d0, d1, d2, d3, d4 := sqDigits(m, uint(q&31))
	a.addDigits(true, int(q>>5), d0, d1, d2, d3, d4)
}

// addDigits adds digits at absolute chunk ci upwards to the sum (sq false)
// or the sum of squares, moving the window or widening as needed.
func (a *facc) addDigits(sq bool, ci int, ds ...int64) {
	c, base, wide := &a.sum, &a.sumBase, a.mode&wideSum != 0
	if sq {
		c, base, wide = &a.sq, &a.sqBase, a.mode&wideSq != 0
	}
	hiC := ci + len(ds) - 1
	for hiC > ci && ds[hiC-ci] == 0 {
		hiC--
	}
	if !wide {
		lo, hi, used := usedRange(c, int(*base))
		if used {
			lo, hi = min(lo, ci), max(hi, hiC)
		} else {
			lo, hi = ci, hiC
		}
		maxBase := wideLen(sq) - accChunks // the window must fit the wide layout
		if hi-lo < accChunks && hi < maxBase+accChunks {
			if b := int(*base); !used || lo < b || hi >= b+accChunks {
				// Centre the used chunks; an empty window leaves room
				// for smaller values below its first one.
				nb := lo - (accChunks-1-(hi-lo))/2
				if !used {
					nb = ci - (accChunks-len(ds))/2
				}
				nb = min(max(nb, hi-accChunks+1, 0), lo, maxBase)
				if used {
					rebase(c, b, nb)
				}
				*base = int16(nb)
			}
			for i, d := range ds {
				if d != 0 {
					c[ci+i-int(*base)] += d
				}
			}
			return
		}
		a.widen(sq)
	}
	w := a.wide.sum[:]
	if sq {
		w = a.wide.sq[:]
	}
	for i, d := range ds {
		w[ci+i] += d
	}
}

// wideLen is the number of chunks of a wide sum (sq false) or sum of
// squares.
func wideLen(sq bool) int {
	if sq {
		return sqChunks
	}
	return sumChunks
}

// usedRange returns the absolute chunk indexes of the lowest and highest
// non-zero chunks.
func usedRange(c *[accChunks]int64, base int) (lo, hi int, used bool) {
	lo, hi = -1, -1
	for i, v := range c {
		if v != 0 {
			if lo < 0 {
				lo = i
			}
			hi = i
		}
	}
	if lo < 0 {
		return 0, 0, false
	}
	return base + lo, base + hi, true
}

// rebase moves the window from base b to nb; every non-zero chunk must fit.
func rebase(c *[accChunks]int64, b, nb int) {
	var t [accChunks]int64
	for i, v := range c {
		if v != 0 {
			t[i+b-nb] = v
		}
	}
	*c = t
}

// widen moves a window sum to the wide accumulator.
func (a *facc) widen(sq bool) {
	if a.wide == nil {
		a.wide = new(wideAcc)
	}
	if sq {
		for i, v := range a.sq {
			a.wide.sq[int(a.sqBase)+i] += v
		}
		a.sq = [accChunks]int64{}
		a.sqBase = noBase // sends every later value to the slow path
		a.mode |= wideSq
	} else {
		for i, v := range a.sum {
			a.wide.sum[int(a.sumBase)+i] += v
		}
		a.sum = [accChunks]int64{}
		a.sumBase = noBase
		a.mode |= wideSum
	}
}

// normalize propagates carries so that every chunk but the last is in
// [0, 2^32). The value is unchanged.
func normalize(c []int64) {
	for i := 0; i < len(c)-1; i++ {
		carry := c[i] >> 32
		c[i] -= carry << 32
		c[i+1] += carry
	}
}

// carry normalizes every sum of the slot. It is called every carryEvery
// additions, which keeps each chunk far from int64 overflow.
func (a *facc) carry() {
	normalize(a.sum[:])
	normalize(a.sq[:])
	if a.wide != nil {
		normalize(a.wide.sum[:])
		normalize(a.wide.sq[:])
	}
	a.adds = 0
}

// chunksOf returns the exact sum (sq false) or sum of squares as chunks and
// the absolute index of the first one: the window copied into small (one
// spare chunk on top), or the wide accumulator copied into big (zeroed,
// long enough). It returns nil for an empty sum.
func (a *facc) chunksOf(sq bool, small *[accChunks + 1]int64, big []int64) ([]int64, int) {
	c, base, wide := &a.sum, int(a.sumBase), a.mode&wideSum != 0
	if sq {
		c, base, wide = &a.sq, int(a.sqBase), a.mode&wideSq != 0
	}
	if wide {
		var n int
		if sq {
			n = copy(big, a.wide.sq[:])
		} else {
			n = copy(big, a.wide.sum[:])
		}
		clear(big[n:]) // the spare chunks on top may hold an earlier result's carries
		return big, 0
	}
	if base == noBase {
		return nil, 0
	}
	copy(small[:], c[:])
	small[accChunks] = 0
	return small[:], base
}

// chunkValue converts an exact integer held as chunks, chunk i weighing
// 2^(exp0+32i), to the nearest float64 (ties to even). The result does not
// depend on how the chunks were accumulated. c is modified.
func chunkValue(c []int64, exp0 int) float64 {
	normalize(c)
	top := len(c) - 1
	for top > 0 && c[top] == 0 {
		top--
	}
	neg := c[top] < 0
	if neg {
		for i := range c {
			c[i] = -c[i]
		}
		normalize(c)
	}
	// Every chunk is now a non-negative 32-bit digit (c has a spare top
	// chunk): exact doubles with disjoint bits in increasing order, an
	// expansion that roundParts rounds correctly. Below 2^-1074 a digit
	// is rounded on its own; that only happens for squares of values
	// under 1e-154, and still depends on nothing but the exact integer.
	var buf [48]float64
	parts := buf[:0]
	for i, v := range c {
		if v != 0 {
			parts = append(parts, scale2(float64(v), exp0+32*i))
		}
	}
	r := roundParts(parts)
	if neg {
		r = -r
	}
	return r
}

// scale2 returns x*2^k.
func scale2(x float64, k int) float64 {
	if k >= -1022 && k <= 1023 {
		return x * math.Float64frombits(uint64(k+1023)<<52)
	}
	return math.Ldexp(x, k)
}

// roundParts returns the sum of an expansion (non-overlapping partials in
// increasing order of magnitude) correctly rounded to nearest, ties to
// even. It is the final step of Python's math.fsum.
func roundParts(p []float64) float64 {
	n := len(p)
	if n == 0 {
		return 0
	}
	n--
	hi := p[n]
	lo := 0.0
	for n > 0 {
		x := hi
		n--
		y := p[n]
		hi = x + y
		yr := hi - x
		lo = y - yr
		if lo != 0 {
			break
		}
	}
	// Make half-even rounding work across several partials: when the
	// remaining partials push lo past the halfway point, round up.
	if n > 0 && ((lo < 0 && p[n-1] < 0) || (lo > 0 && p[n-1] > 0)) {
		y := lo * 2
		x := hi + y
		yr := x - hi
		if y == yr {
			hi = x
		}
	}
	return hi
}

func isInf(x float64) bool { return x > math.MaxFloat64 || x < -math.MaxFloat64 }

// addAt adds sign*w*2^pos to the chunks c (pos in bits, chunk i at 32i).
func addAt(c []int64, w uint64, pos int, neg bool) {
	if w == 0 {
		return
	}
	ci, sh := pos>>5, uint(pos&31)
	lo := w << sh
	var d2 int64
	if sh != 0 {
		d2 = int64(w >> (64 - sh))
	}
	d0, d1 := int64(lo&digitMask), int64(lo>>32)
	if neg {
		d0, d1, d2 = -d0, -d1, -d2
	}
	c[ci] += d0
	c[ci+1] += d1
	c[ci+2] += d2
}

// mergeSums adds the sums of b to a.
func (a *facc) mergeSums(b *facc) {
	a.mergeOne(b, false)
	a.mergeOne(b, true)
	a.adds += b.adds + 1
	if a.adds >= carryEvery {
		a.carry()
	}
}

func (a *facc) mergeOne(b *facc, sq bool) {
	ac, ab, aw := &a.sum, &a.sumBase, a.mode&wideSum != 0
	bc, bb, bw := &b.sum, b.sumBase, b.mode&wideSum != 0
	if sq {
		ac, ab, aw = &a.sq, &a.sqBase, a.mode&wideSq != 0
		bc, bb, bw = &b.sq, b.sqBase, b.mode&wideSq != 0
	}
	if !bw {
		if bb == noBase {
			return
		}
		if !aw && (*ab == bb || *ab == noBase) {
			*ab = bb
			for i, v := range bc {
				ac[i] += v
			}
			return
		}
		for i, v := range bc {
			if v != 0 {
				a.addDigits(sq, int(bb)+i, v)
			}
		}
		return
	}
	w := b.wide.sum[:]
	if sq {
		w = b.wide.sq[:]
	}
	for i, v := range w {
		if v != 0 {
			a.addDigits(sq, i, v)
		}
	}
}
