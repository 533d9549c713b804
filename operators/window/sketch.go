package window

import "math"

// Quantile sketch: log-linear buckets over the float64 bit pattern. The
// bucket of a non-zero finite |v| is its exponent followed by the top
// subBits mantissa bits, which splits every power of two into 2^subBits
// equal-width buckets. The bucket midpoint is within half a bucket width of
// every value in the bucket, so for a normal value x the estimate e obeys
// |e - x| <= 2^-(subBits+1) * |x|.
//
// Buckets hold exact counts, so a sketch is a function of the multiset of
// values it saw: adding or merging in any order gives the same sketch.
const (
	subBits  = 7
	idxShift = 52 - subBits
	// infIdx is the bucket of ±Inf (exponent all ones, mantissa zero).
	infIdx = 0x7ff << subBits
	// QuantileRelError is the bound on the relative error of a quantile
	// estimate for normal float64 values: 2^-8, about 0.39%.
	QuantileRelError = 1.0 / (1 << (subBits + 1))
	// firstSpan is the number of buckets a sketch side starts with,
	// centred on its first value (an eighth of a power of two).
	firstSpan = 16
)

const signBit = 1 << 63

// arena hands out the bucket arrays of one slot's sketches from one block,
// so that the buckets a row updates lie together in memory. Regions given
// out past the block come from the heap and size the block at the next
// reset; in steady state a slot's block is reused window after window.
type arena struct {
	buf  []uint32
	used int
	over int // cells handed out from the heap since the last reset
}

func (a *arena) alloc(n int) []uint32 {
	if a.used+n <= len(a.buf) {
		r := a.buf[a.used : a.used+n : a.used+n]
		a.used += n
		return r
	}
	a.over += n
	return make([]uint32, n)
}

// reset frees every region. Regions must be dropped by their sketches.
func (a *arena) reset() {
	if a.over > 0 {
		n := len(a.buf) + a.over
		a.buf = make([]uint32, n+n/4) // slack: demand varies from window to window
		a.over = 0
	} else {
		clear(a.buf[:a.used])
	}
	a.used = 0
}

// dense holds counts for the bucket indexes [base, base+len(counts)).
type dense struct {
	base   int32
	counts []uint32
}

// place makes the region cover bucket idx, moving it to a larger region of
// the arena when needed.
func (d *dense) place(idx int32, ar *arena) {
	n := int32(len(d.counts))
	if n == 0 {
		d.base = max(idx-firstSpan/2, 0)
		d.counts = ar.alloc(firstSpan)
		return
	}
	lo, hi := min(d.base, idx), max(d.base+n-1, idx)
	need := hi - lo + 1
	size := max(2*n, need+firstSpan/2)
	nb := max(lo-(size-need)/2, 0)
	c := ar.alloc(int(size))
	copy(c[d.base-nb:], d.counts)
	d.base, d.counts = nb, c
}

// sketch is a mergeable quantile sketch of non-NaN float64 values. Counts
// are 32-bit; the rare carries out of a count go to over.
type sketch struct {
	pos, neg dense
	zero     uint64
	over     map[int32]uint64 // bucket key (see bucketKey) -> carried counts
}

// bucketKey identifies a bucket across both sides: idx+1 for positive
// values, -(idx+1) for negative ones.
func bucketKey(idx int32, neg bool) int32 {
	if neg {
		return -(idx + 1)
	}
	return idx + 1
}

// add counts the value with bit pattern bits (not NaN).
func (k *sketch) add(bits uint64, ar *arena) {
	k.addN(bits, 1, ar)
}

// addN counts c values with bit pattern bits (not NaN).
func (k *sketch) addN(bits uint64, c uint64, ar *arena) {
	mag := bits &^ signBit
	if mag == 0 {
		k.zero += c
		return
	}
	idx := int32(mag >> idxShift)
	neg := bits&signBit != 0
	d := &k.pos
	if neg {
		d = &k.neg
	}
	off := idx - d.base
	if uint32(off) >= uint32(len(d.counts)) {
		d.place(idx, ar)
		off = idx - d.base
	}
	s := uint64(d.counts[off]) + c
	d.counts[off] = uint32(s)
	if s>>32 != 0 {
		k.carry(idx, neg, s>>32<<32)
	}
}

// carry records counts beyond 32 bits.
func (k *sketch) carry(idx int32, neg bool, c uint64) {
	if k.over == nil {
		k.over = map[int32]uint64{}
	}
	k.over[bucketKey(idx, neg)] += c
}

func (k *sketch) count(d *dense, i int, neg bool) uint64 {
	c := uint64(d.counts[i])
	if k.over != nil {
		c += k.over[bucketKey(d.base+int32(i), neg)]
	}
	return c
}

// reset empties the sketch; the arena is reset by the caller.
func (k *sketch) reset() {
	k.pos, k.neg, k.zero = dense{}, dense{}, 0
	clear(k.over)
}

// merge adds the counts of o.
func (k *sketch) merge(o *sketch, ar *arena) {
	k.pos.merge(&o.pos, k, false, ar)
	k.neg.merge(&o.neg, k, true, ar)
	k.zero += o.zero
	for key, c := range o.over {
		if k.over == nil {
			k.over = map[int32]uint64{}
		}
		k.over[key] += c
	}
}

// merge adds the counts of o (one side of sketch k).
func (d *dense) merge(o *dense, k *sketch, neg bool, ar *arena) {
	n := int32(len(o.counts))
	if n == 0 {
		return
	}
	if len(d.counts) == 0 {
		d.base, d.counts = o.base, ar.alloc(int(n))
		copy(d.counts, o.counts)
		return
	}
	// Cover both ends of o, then add region to region.
	if off := o.base - d.base; uint32(off) >= uint32(len(d.counts)) {
		d.place(o.base, ar)
	}
	if off := o.base + n - 1 - d.base; uint32(off) >= uint32(len(d.counts)) {
		d.place(o.base+n-1, ar)
	}
	dst := d.counts[o.base-d.base:][:n]
	for i, c := range o.counts {
		s := uint64(dst[i]) + uint64(c)
		dst[i] = uint32(s)
		if s>>32 != 0 {
			k.carry(o.base+int32(i), neg, 1<<32)
		}
	}
}

// quantile returns the nearest-rank quantile num/den of total values: the
// value of rank ceil(total*num/den) in ascending order, estimated by its
// bucket midpoint and clamped to [lo, hi], the exact extremes.
func (k *sketch) quantile(num, den, total uint64, lo, hi float64) float64 {
	rank := (total*num + den - 1) / den
	if rank == 0 {
		rank = 1
	}
	var cum uint64
	for i := len(k.neg.counts) - 1; i >= 0; i-- {
		cum += k.count(&k.neg, i, true)
		if cum >= rank {
			return clamp(-bucketMid(k.neg.base+int32(i)), lo, hi)
		}
	}
	cum += k.zero
	if cum >= rank {
		return clamp(0, lo, hi)
	}
	for i := range k.pos.counts {
		cum += k.count(&k.pos, i, false)
		if cum >= rank {
			return clamp(bucketMid(k.pos.base+int32(i)), lo, hi)
		}
	}
	return hi
}

// bucketMid returns the midpoint of bucket idx (positive side).
func bucketMid(idx int32) float64 {
	if idx >= infIdx {
		return math.Inf(1)
	}
	lo := math.Float64frombits(uint64(idx) << idxShift)
	hi := math.Float64frombits(uint64(idx+1) << idxShift)
	if isInf(hi) {
		return lo
	}
	return lo + (hi-lo)/2
}

func clamp(v, lo, hi float64) float64 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}
