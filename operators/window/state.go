package window

import (
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/bitutil"

	"github.com/sluice-edge/sluice/engine"
)

// Special values seen by an accumulator.
const (
	specNaN uint8 = 1 << iota
	specPosInf
	specNegInf
)

const expMask = 0x7ff << 52

// facc is the running state of one numeric field in one slot (a window,
// pane or session of one key). Every part is a function of the multiset of
// values added, never of their order.
type facc struct {
	n       int64 // non-null values
	mn, mx  float64
	adds    uint32 // additions since carries were last propagated
	sumBase int16  // absolute chunk of sum[0], or noBase
	sqBase  int16  // absolute chunk of sq[0], or noBase
	special uint8
	mode    uint8
	sum     [accChunks]int64 // exact sum, units of 2^-1074
	sq      [accChunks]int64 // exact sum of squares, units of 2^-2148
	wide    *wideAcc         // full-range sums, kept for reuse
}

func (a *facc) reset() {
	if a.mode != 0 {
		*a.wide = wideAcc{}
	}
	*a = facc{mn: math.Inf(1), mx: math.Inf(-1), sumBase: noBase, sqBase: noBase, wide: a.wide}
}

func (a *facc) merge(b *facc) {
	a.n += b.n
	if b.mn < a.mn {
		a.mn = b.mn
	}
	if b.mx > a.mx {
		a.mx = b.mx
	}
	a.special |= b.special
	a.mergeSums(b)
}

// firstLast keeps the value at the smallest and at the largest event time.
// Ties are broken by value in IEEE 754 total order: first takes the
// smallest, last the largest.
type firstLast struct {
	ft, lt int64
	fv, lv float64
}

// Initial values lose every comparison.
var (
	flFirstInit = math.Float64frombits(0x7fffffffffffffff) // greatest in total order
	flLastInit  = math.Float64frombits(0xffffffffffffffff) // least in total order
)

func (f *firstLast) reset() {
	f.ft, f.lt = math.MaxInt64, math.MinInt64
	f.fv, f.lv = flFirstInit, flLastInit
}

// totalKey maps a float64 to an unsigned key ordered like IEEE 754
// totalOrder.
func totalKey(v float64) uint64 {
	b := math.Float64bits(v)
	if b&signBit != 0 {
		return ^b
	}
	return b | signBit
}

func (f *firstLast) add(t int64, v float64) {
	if t < f.ft || (t == f.ft && totalKey(v) < totalKey(f.fv)) {
		f.ft, f.fv = t, v
	}
	if t > f.lt || (t == f.lt && totalKey(v) > totalKey(f.lv)) {
		f.lt, f.lv = t, v
	}
}

func (f *firstLast) merge(o *firstLast) {
	f.add(o.ft, o.fv)
	f.add(o.lt, o.lv)
}

// fieldDesc describes one aggregated field: what its functions need and,
// during Process, its column.
type fieldDesc struct {
	plan fieldPlan
	// countOnly fields need only the number of non-null values.
	countOnly           bool
	isInt               bool
	needMinMax, needSum bool
	needSq              bool
	sk, fl              int // index among the slot's sketches / first-last states, or -1
	f64                 []float64
	i64                 []int64
	vb                  validity
}

func newFieldDesc(fp fieldPlan, nsk, nfl *int) fieldDesc {
	fd := fieldDesc{plan: fp, countOnly: true, isInt: fp.typ == engine.Int64, sk: -1, fl: -1}
	for _, fn := range fp.funcs {
		if fn.op != opCount {
			fd.countOnly = false
		}
		switch fn.op {
		case opMin, opMax:
			fd.needMinMax = true
		case opSum, opAvg:
			fd.needSum = true
		case opStddev:
			fd.needSum, fd.needSq = true, true
		case opQuantile:
			fd.needMinMax = true
			if fd.sk < 0 {
				fd.sk = *nsk
				*nsk++
			}
		case opFirst, opLast:
			if fd.fl < 0 {
				fd.fl = *nfl
				*nfl++
			}
		}
	}
	return fd
}

// Slot state is stored slot-major: the faccs of all fields of one slot are
// adjacent (st[slot*nf+field]), and so are its sketches and first/last
// states. A row touches one contiguous block instead of one scattered
// state per field.

// growSlot appends the state of one more slot.
func (o *Operator) growSlot() {
	var a facc
	a.reset()
	for range o.fd {
		o.st = append(o.st, a)
	}
	for range o.nsk {
		o.sk = append(o.sk, sketch{})
	}
	o.arenas = append(o.arenas, arena{})
	var f firstLast
	f.reset()
	for range o.nfl {
		o.fl = append(o.fl, f)
	}
}

func (o *Operator) resetSlot(s int32) {
	nf := len(o.fd)
	for i := range o.st[int(s)*nf : int(s)*nf+nf] {
		o.st[int(s)*nf+i].reset()
	}
	for i := range o.nsk {
		o.sk[int(s)*o.nsk+i].reset()
	}
	o.arenas[s].reset()
	for i := range o.nfl {
		o.fl[int(s)*o.nfl+i].reset()
	}
}

func (o *Operator) mergeState(dst, src int32) {
	nf := len(o.fd)
	for i := range o.fd {
		o.st[int(dst)*nf+i].merge(&o.st[int(src)*nf+i])
	}
	for i := range o.nsk {
		o.sk[int(dst)*o.nsk+i].merge(&o.sk[int(src)*o.nsk+i], &o.arenas[dst])
	}
	for i, fd := range o.fd {
		if fd.fl >= 0 && o.st[int(src)*nf+i].n > 0 {
			o.fl[int(dst)*o.nfl+fd.fl].merge(&o.fl[int(src)*o.nfl+fd.fl])
		}
	}
}

// validity reads an Arrow validity bitmap.
type validity struct {
	bits []byte
	off  int
	all  bool
}

func validityOf(a arrow.Array) validity {
	if a.NullN() == 0 {
		return validity{all: true}
	}
	return validity{bits: a.NullBitmapBytes(), off: a.Data().Offset()}
}

func (v validity) valid(i int) bool { return v.all || bitutil.BitIsSet(v.bits, v.off+i) }

// accChunkRows is the number of rows accumulate handles per pass: their
// slots' state stays in cache from one pass to the next.
const accChunkRows = 64

// accumulate adds the values of every aggregated field to the slots of
// their rows (slot < 0: row not in any window). It is the hot loop: typed
// column slices, no allocation, no interface calls. Rows are taken in
// chunks, each in three passes: counts, extremes and special values (which
// also pulls the slots' state into cache), exact sums, then sketch buckets.
// Short, independent loop bodies let the processor overlap the cache misses
// of many rows.
func (o *Operator) accumulate(times []arrow.Timestamp, slots []int32) {
	times = times[:len(slots)]
	for lo := 0; lo < len(slots); lo += accChunkRows {
		hi := min(lo+accChunkRows, len(slots))
		o.passStats(times, slots, lo, hi)
		o.passSums(slots, lo, hi)
		if o.nsk > 0 {
			o.passSketch(slots, lo, hi)
		}
	}
}

// value returns the value of field fd in row r and whether it is present.
func (fd *fieldDesc) value(r int) (float64, bool) {
	if !fd.vb.all && !fd.vb.valid(r) {
		return 0, false
	}
	if fd.isInt {
		return float64(fd.i64[r]), true
	}
	return fd.f64[r], true
}

// passStats counts values, tracks min and max and first and last, and
// handles NaN and infinities.
func (o *Operator) passStats(times []arrow.Timestamp, slots []int32, lo, hi int) {
	nf, nfl := len(o.fd), o.nfl
	st, fl, fds := o.st, o.fl, o.fd
	for r := lo; r < hi; r++ {
		s := slots[r]
		if s < 0 {
			continue
		}
		row := st[int(s)*nf : int(s)*nf+nf]
		for f := range fds {
			fd := &fds[f]
			if fd.countOnly {
				if fd.vb.valid(r) {
					row[f].n++
				}
				continue
			}
			v, ok := fd.value(r)
			if !ok {
				continue
			}
			a := &row[f]
			a.n++
			if math.Float64bits(v)&expMask == expMask {
				o.addSpecial(fd, s, a, v, int64(times[r]))
				continue
			}
			if fd.needMinMax {
				m := v + 0 // -0 becomes +0, so min and max do not depend on order
				if m < a.mn {
					a.mn = m
				}
				if m > a.mx {
					a.mx = m
				}
			}
			if fd.fl >= 0 {
				fl[int(s)*nfl+fd.fl].add(int64(times[r]), v)
			}
		}
	}
}

// passSums adds finite non-zero values to the exact sums.
func (o *Operator) passSums(slots []int32, lo, hi int) {
	nf := len(o.fd)
	st, fds := o.st, o.fd
	for r := lo; r < hi; r++ {
		s := slots[r]
		if s < 0 {
			continue
		}
		row := st[int(s)*nf : int(s)*nf+nf]
		for f := range fds {
			fd := &fds[f]
			if !fd.needSum {
				continue
			}
			v, ok := fd.value(r)
			bits := math.Float64bits(v)
			if !ok || bits&expMask == expMask || bits<<1 == 0 {
				continue
			}
			a := &row[f]
			// a.addSum and a.addSq, inlined by hand.
			e := int32(bits>>52) & 0x7ff
			m := bits & (1<<52 - 1)
			if e == 0 {
				e = 1
			} else {
				m |= 1 << 52
			}
			p := e - 1
			if ci := p>>5 - int32(a.sumBase); uint32(ci) <= accChunks-3 {
				d0, d1, d2 := sumDigits(m, uint(p&31), int64(bits)>>63)
				c := &a.sum
				c[ci&7] += d0
				c[(ci+1)&7] += d1
				c[(ci+2)&7] += d2
			} else {
				a.addSumSlow(bits)
			}
			if fd.needSq {
				q := 2 * p
				if ci := q>>5 - int32(a.sqBase); uint32(ci) <= accChunks-5 {
					d0, d1, d2, d3, d4 := sqDigits(m, uint(q&31))
					c := &a.sq
					c[ci&7] += d0
					c[(ci+1)&7] += d1
					c[(ci+2)&7] += d2
					c[(ci+3)&7] += d3
					c[(ci+4)&7] += d4
				} else {
					a.addSqSlow(bits)
				}
			}
			a.adds++
			if a.adds >= carryEvery {
				a.carry()
			}
		}
	}
}

// passSketch counts finite values in the quantile sketches.
func (o *Operator) passSketch(slots []int32, lo, hi int) {
	nsk := o.nsk
	sk, fds := o.sk, o.fd
	for r := lo; r < hi; r++ {
		s := slots[r]
		if s < 0 {
			continue
		}
		ks := sk[int(s)*nsk : int(s)*nsk+nsk]
		for f := range fds {
			fd := &fds[f]
			if fd.sk < 0 {
				continue
			}
			v, ok := fd.value(r)
			bits := math.Float64bits(v)
			if !ok || bits&expMask == expMask {
				continue // specials were counted by passStats
			}
			k := &ks[fd.sk]
			mag := bits &^ signBit
			if mag == 0 {
				k.zero++
				continue
			}
			d := &k.pos
			if bits&signBit != 0 {
				d = &k.neg
			}
			idx := int32(mag >> idxShift)
			if off := idx - d.base; uint32(off) < uint32(len(d.counts)) {
				c := d.counts[off] + 1
				d.counts[off] = c
				if c == 0 {
					k.carry(idx, bits&signBit != 0, 1<<32)
				}
			} else {
				k.add(bits, &o.arenas[s])
			}
		}
	}
}

// addSpecial adds NaN or ±Inf (already counted in n).
func (o *Operator) addSpecial(fd *fieldDesc, s int32, a *facc, v float64, t int64) {
	switch {
	case v != v:
		a.special |= specNaN
	case v > 0:
		a.special |= specPosInf
	default:
		a.special |= specNegInf
	}
	if v == v {
		if v < a.mn {
			a.mn = v
		}
		if v > a.mx {
			a.mx = v
		}
		if fd.sk >= 0 {
			o.sk[int(s)*o.nsk+fd.sk].add(math.Float64bits(v), &o.arenas[s])
		}
	}
	if fd.fl >= 0 {
		o.fl[int(s)*o.nfl+fd.fl].add(t, v)
	}
}
