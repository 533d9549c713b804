package window

import (
	"math"
	mbits "math/bits"
	"slices"

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
	nq                  int // quantile functions
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
			fd.nq++
		case opFirst, opLast:
			if fd.fl < 0 {
				fd.fl = *nfl
				*nfl++
			}
		}
	}
	return fd
}

// Slot state is stored slot-major: the haccs of all fields of one slot are
// adjacent (hot[slot*nf+field]), and so are its first/last states. A
// slot's cold sums, sketch log and dense sketches are its own blocks, the
// cold sums and dense sketches allocated only when first needed and then
// kept with the slot for the windows that reuse it.

// growSlot appends the state of one more slot.
func (o *Operator) growSlot() {
	var h hacc
	h.reset()
	for range o.fd {
		o.hot = append(o.hot, h)
	}
	o.cold = append(o.cold, nil)
	o.dense = append(o.dense, nil)
	o.skLog = append(o.skLog, nil)
	o.skDense = append(o.skDense, false)
	var f firstLast
	f.reset()
	for range o.nfl {
		o.fl = append(o.fl, f)
	}
}

func (o *Operator) resetSlot(s int32) {
	nf := len(o.fd)
	for i := int(s) * nf; i < int(s)*nf+nf; i++ {
		if o.hot[i].cold {
			o.coldAcc(i).reset()
		}
		o.hot[i].reset()
	}
	if o.skDense[s] {
		d := o.dense[s]
		for i := range d.sk {
			d.sk[i].reset()
		}
		d.ar.reset()
		o.skDense[s] = false
	}
	o.skLog[s] = o.skLog[s][:0]
	for i := range o.nfl {
		o.fl[int(s)*o.nfl+i].reset()
	}
}

func (o *Operator) mergeState(dst, src int32) {
	nf := len(o.fd)
	for i := range o.fd {
		o.mergeAcc(int(dst)*nf+i, int(src)*nf+i)
	}
	if o.nsk > 0 {
		o.mergeSketches(dst, src)
	}
	for i, fd := range o.fd {
		if fd.fl >= 0 && o.hot[int(src)*nf+i].n > 0 {
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

// accChunkRows is the number of rows accumulate handles at a time: the
// state of their slots stays in cache from one field to the next.
const accChunkRows = 128

// accumulate adds the values of every aggregated field to the slots of
// their rows (slot < 0: row not in any window). It is the hot loop: typed
// column slices, no allocation, no interface calls. Rows are taken in
// chunks; within a chunk each field is one pass over its column that
// updates count, extremes, exact sums and sketch key together, with the
// field's properties fixed for the whole pass. Iterations of a pass are
// independent, so the processor overlaps the cache misses of many rows.
// Sketch keys are staged per chunk and then appended to the slots' logs
// (or counted in their dense sketches) row by row.
func (o *Operator) accumulate(times []arrow.Timestamp, slots []int32) {
	times = times[:len(slots)]
	nf := len(o.fd)
	for lo := 0; lo < len(slots); lo += accChunkRows {
		hi := min(lo+accChunkRows, len(slots))
		base := o.rowBase[:hi-lo]
		for i, s := range slots[lo:hi] {
			base[i] = -1
			if s >= 0 {
				base[i] = s * int32(nf)
			}
		}
		for f := range o.fd {
			fd := &o.fd[f]
			switch {
			case fd.countOnly:
				o.countField(f, base, lo)
			case !fd.isInt && fd.vb.all && fd.fl < 0:
				o.accFloat(f, base, lo)
			default:
				o.accField(f, times, slots, base, lo)
			}
		}
		if o.nsk > 0 {
			o.logKeys(slots[lo:hi])
		}
	}
}

// logKeys appends the staged sketch keys of a chunk's rows to their slots'
// logs, or counts them in the slots' dense sketches.
func (o *Operator) logKeys(slots []int32) {
	nsk := o.nsk
	full := logRows * nsk
	stage := o.stage
	for i, s := range slots {
		if s < 0 {
			continue
		}
		keys := stage[i*nsk : i*nsk+nsk]
		if o.skDense[s] {
			o.denseKeys(s, keys)
			continue
		}
		log := o.skLog[s]
		n := len(log)
		if n+nsk > cap(log) {
			log = growLog(log, nsk)
		}
		log = log[:n+nsk]
		copy(log[n:], keys)
		o.skLog[s] = log
		if n+nsk >= full {
			o.toDense(s)
		}
	}
}

// denseKeys counts one row's sketch keys (noKey: no value) in the dense
// sketches of slot s.
func (o *Operator) denseKeys(s int32, keys []int32) {
	ds := o.dense[s]
	ks := ds.sk[:len(keys)]
	for i, key := range keys {
		if key == noKey {
			continue
		}
		k := &ks[i]
		if key == 0 {
			k.zero++
			continue
		}
		d, idx := &k.pos, key-1
		if key < 0 {
			d, idx = &k.neg, -key-1
		}
		if off := idx - d.base; uint32(off) < uint32(len(d.counts)) {
			c := d.counts[off] + 1
			d.counts[off] = c
			if c == 0 {
				k.carry(idx, key < 0, 1<<16)
			}
			continue
		}
		k.addKey(key, 1, &ds.ar)
	}
}

// countField counts the non-null values of a count-only field. base holds
// the state offset (slot * fields) of the chunk's rows from row lo, or -1.
func (o *Operator) countField(f int, base []int32, lo int) {
	hot, fd := o.hot[f:], &o.fd[f]
	for i, b := range base {
		if b >= 0 && fd.vb.valid(lo+i) {
			hot[b].n++
		}
	}
}

// accFloat is accField for a float64 field without nulls and without
// first or last, the common case, in a leaner loop.
func (o *Operator) accFloat(f int, base []int32, lo int) {
	fd := &o.fd[f]
	col := fd.f64[lo:][:len(base)]
	hot := o.hot[f:]
	needMinMax, needSum, needSq := fd.needMinMax, fd.needSum, fd.needSq
	sk, nsk := fd.sk, o.nsk
	maxAdds := fastMaxAdds
	var stage []int32
	if sk >= 0 {
		stage = o.stage[sk:]
	}
	for i, v := range col {
		b := base[i]
		if b < 0 {
			continue
		}
		a := &hot[b]
		a.n++
		bits := math.Float64bits(v)
		if bits&expMask == expMask {
			o.addSpecial(fd, int(b)+f, i, v, 0)
			continue
		}
		if sk >= 0 {
			stage[i*nsk] = keyOf(bits)
		}
		if needMinMax {
			m := v + 0 // -0 becomes +0, so min and max do not depend on order
			if m < a.mn {
				a.mn = m
			}
			if m > a.mx {
				a.mx = m
			}
		}
		if !needSum || bits<<1 == 0 {
			continue
		}
		// The fast tier's addFast, inlined by hand; addSlow takes the
		// rest.
		e := int32(bits>>52) & 0x7ff
		m := bits & (1<<52 - 1)
		if e == 0 {
			e = 1
		} else {
			m |= 1 << 52
		}
		sh := uint32(e - 1 - int32(a.base))
		if sh > fastSpan || a.fadds >= maxAdds {
			o.addSlow(int(b)+f, bits, needSq)
			continue
		}
		// x = m<<sh, up to 85 bits: xl + xh<<64. The masks tell the
		// compiler the shifts are below 64 (sh <= 32; m < 2^53, so
		// m>>1>>(63-sh) is m>>(64-sh), 0 for sh == 0).
		xl, xh := m<<(sh&63), m>>1>>((63-sh)&63)
		neg := uint64(int64(bits) >> 63)
		var c uint64
		a.s0, c = mbits.Add64(a.s0, xl^neg, neg&1)
		a.s1 += xh ^ neg + c
		if needSq {
			// x^2 = xl^2 + 2*xl*xh<<64 + xh^2<<128 (xh < 2^21).
			h0, l0 := mbits.Mul64(xl, xl)
			h1, l1 := mbits.Mul64(xl, xh)
			h1, l1 = h1<<1|l1>>63, l1<<1
			a.q0, c = mbits.Add64(a.q0, l0, 0)
			mid, c2 := mbits.Add64(h0, l1, 0)
			a.q1, c = mbits.Add64(a.q1, mid, c)
			a.q2 += h1 + xh*xh + c + c2
		}
		a.fadds++
	}
}

// accField adds the values of field f in the chunk's rows to their slots:
// count, extremes, first and last, exact sums and sketch key. It takes
// any numeric field; see accFloat.
func (o *Operator) accField(f int, times []arrow.Timestamp, slots []int32, base []int32, lo int) {
	fd := &o.fd[f]
	hot := o.hot[f:]
	sk, nsk := fd.sk, o.nsk
	for i, b := range base {
		if b < 0 {
			continue
		}
		r := lo + i
		v, ok := fd.value(r)
		if !ok {
			if sk >= 0 {
				o.stage[i*nsk+sk] = noKey
			}
			continue
		}
		a := &hot[b]
		a.n++
		bits := math.Float64bits(v)
		if bits&expMask == expMask {
			o.addSpecial(fd, int(b)+f, i, v, int64(times[r]))
			continue
		}
		if sk >= 0 {
			o.stage[i*nsk+sk] = keyOf(bits)
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
			o.fl[int(slots[r])*o.nfl+fd.fl].add(int64(times[r]), v)
		}
		if !fd.needSum || bits<<1 == 0 {
			continue
		}
		o.addSlow(int(b)+f, bits, fd.needSq)
	}
}

// denseSketches are the dense sketches of a slot and the arena of their
// buckets. A slot gets them when it turns dense and keeps them for reuse.
type denseSketches struct {
	sk []sketch
	ar arena
}

// denseOf returns the dense sketches of slot s, allocating them if needed.
func (o *Operator) denseOf(s int32) *denseSketches {
	if o.dense[s] == nil {
		o.dense[s] = &denseSketches{sk: make([]sketch, o.nsk)}
	}
	return o.dense[s]
}

// growLog returns log with room for at least one more row of nsk entries.
func growLog(log []int32, nsk int) []int32 {
	c := max(2*cap(log), 8*nsk)
	c = min(c, logRows*nsk)
	c = max(c, len(log)+nsk)
	nl := make([]int32, len(log), c)
	copy(nl, log)
	return nl
}

// toDense counts the log of slot s into its dense sketches, with regions
// sized to the range of the logged values.
func (o *Operator) toDense(s int32) {
	nsk := o.nsk
	d := o.denseOf(s)
	ks, ar := d.sk, &d.ar
	log := o.skLog[s]
	for i := range ks {
		k := &ks[i]
		pLo, pHi, nLo, nHi := int32(math.MaxInt32), int32(0), int32(math.MaxInt32), int32(0)
		for j := i; j < len(log); j += nsk {
			switch key := log[j]; {
			case key > 0:
				pLo, pHi = min(pLo, key-1), max(pHi, key-1)
			case key < 0 && key != noKey:
				nLo, nHi = min(nLo, -key-1), max(nHi, -key-1)
			}
		}
		if pLo <= pHi && len(k.pos.counts) == 0 {
			k.pos.reserve(pLo, pHi, ar)
		}
		if nLo <= nHi && len(k.neg.counts) == 0 {
			k.neg.reserve(nLo, nHi, ar)
		}
		for j := i; j < len(log); j += nsk {
			if key := log[j]; key != noKey {
				k.addKey(key, 1, ar)
			}
		}
	}
	o.skLog[s] = log[:0]
	o.skDense[s] = true
}

// mergeSketches adds the sketch values of slot src to slot dst.
func (o *Operator) mergeSketches(dst, src int32) {
	nsk := o.nsk
	if !o.skDense[dst] && !o.skDense[src] {
		o.skLog[dst] = append(o.skLog[dst], o.skLog[src]...)
		if len(o.skLog[dst]) >= logRows*nsk {
			o.toDense(dst)
		}
		return
	}
	if !o.skDense[dst] {
		o.toDense(dst)
	}
	d := o.dense[dst]
	ks, ar := d.sk, &d.ar
	if o.skDense[src] {
		for i := range ks {
			ks[i].merge(&o.dense[src].sk[i], ar)
		}
		return
	}
	log := o.skLog[src]
	for i := range ks {
		for j := i; j < len(log); j += nsk {
			if key := log[j]; key != noKey {
				ks[i].addKey(key, 1, ar)
			}
		}
	}
}

// quantile returns quantile fn of field fd in slot s, whose state is a
// (no NaN seen). keys holds the field's logged keys once gathered (have).
func (o *Operator) quantile(s int32, fd *fieldDesc, fn aggFn, a *hacc, keys *[]int32, have *bool) float64 {
	if o.skDense[s] {
		return o.dense[s].sk[fd.sk].quantile(fn.num, fn.den, uint64(a.n), a.mn, a.mx)
	}
	total := uint64(a.n)
	rank := (total*fn.num + fn.den - 1) / fn.den
	if rank == 0 {
		rank = 1
	}
	if rank > total {
		return a.mx
	}
	var k int32
	switch {
	case fd.nq == 1 && rank <= maxTopM:
		k = extremeKey(o.skLog[s], fd.sk, o.nsk, int(rank), false)
	case fd.nq == 1 && total-rank < maxTopM:
		k = extremeKey(o.skLog[s], fd.sk, o.nsk, int(total-rank+1), true)
	default:
		if !*have {
			*have = true
			ks := o.keyBuf[:0]
			log := o.skLog[s]
			for j := fd.sk; j < len(log); j += o.nsk {
				if key := log[j]; key != noKey {
					ks = append(ks, key)
				}
			}
			if fd.nq > 1 {
				slices.Sort(ks)
			}
			o.keyBuf = ks
			*keys = ks
		}
		ks := *keys
		if rank > uint64(len(ks)) {
			return a.mx
		}
		if fd.nq > 1 {
			k = ks[rank-1]
		} else {
			k = selectKth(ks, int(rank-1))
		}
	}
	return keyEstimate(k, a.mn, a.mx)
}

// addSpecial adds NaN or ±Inf (already counted in n) to state i: the
// value of row ci of the chunk, at time t.
func (o *Operator) addSpecial(fd *fieldDesc, i, ci int, v float64, t int64) {
	a := &o.hot[i]
	switch {
	case v != v:
		a.special |= specNaN
	case v > 0:
		a.special |= specPosInf
	default:
		a.special |= specNegInf
	}
	if fd.sk >= 0 {
		key := int32(noKey)
		if v == v {
			key = keyOf(math.Float64bits(v))
		}
		o.stage[ci*o.nsk+fd.sk] = key
	}
	if v == v {
		if v < a.mn {
			a.mn = v
		}
		if v > a.mx {
			a.mx = v
		}
	}
	if fd.fl >= 0 {
		s := i / len(o.fd)
		o.fl[s*o.nfl+fd.fl].add(t, v)
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
