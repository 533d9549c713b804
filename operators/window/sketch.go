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
// reset; in steady state a slot's block is reused window after window. A
// block much larger than the demand of a window shrinks.
type arena struct {
	buf  []uint16
	used int
	over int // cells handed out from the heap since the last reset
}

func (a *arena) alloc(n int) []uint16 {
	if a.used+n <= len(a.buf) {
		r := a.buf[a.used : a.used+n : a.used+n]
		a.used += n
		return r
	}
	a.over += n
	return make([]uint16, n)
}

// reset frees every region. Regions must be dropped by their sketches.
func (a *arena) reset() {
	switch need := a.used + a.over; {
	case a.over > 0 || need < len(a.buf)/4:
		a.buf = nil // the old block goes now, before a new one comes
		if need > 0 {
			a.buf = make([]uint16, need+need/4) // slack: demand varies from window to window
		}
		a.over = 0
	default:
		clear(a.buf[:a.used])
	}
	a.used = 0
}

// dense holds counts for the bucket indexes [base, base+len(counts)).
type dense struct {
	base   int32
	counts []uint16
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
	size := need + need/2 + firstSpan/2
	nb := max(lo-(size-need)/2, 0)
	c := ar.alloc(int(size))
	copy(c[d.base-nb:], d.counts)
	d.base, d.counts = nb, c
}

// reserve makes an empty region cover the bucket indexes [lo, hi], with
// some room on both sides.
func (d *dense) reserve(lo, hi int32, ar *arena) {
	need := hi - lo + 1
	size := need + need/4 + firstSpan/2
	d.base = max(lo-(size-need)/2, 0)
	d.counts = ar.alloc(int(size))
}

// sketch is a mergeable quantile sketch of non-NaN float64 values. Counts
// are 16-bit; the rare carries out of a count go to over.
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
	d.counts[off] = uint16(s)
	if s>>16 != 0 {
		k.carry(idx, neg, s>>16<<16)
	}
}

// carry records counts beyond 16 bits.
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
		s := uint32(dst[i]) + uint32(c)
		dst[i] = uint16(s)
		if s>>16 != 0 {
			k.carry(o.base+int32(i), neg, 1<<16)
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

// Small windows keep their sketch values as bucket keys (see bucketKey; 0
// for zero) in a log, one entry per row and sketch field, and count them
// into dense sketches only once a slot holds logRows rows. A log is the
// same multiset of buckets as the dense sketch it stands for, so quantiles
// read from either are the same.

// logRows is the number of rows a slot logs before it turns dense. Tests
// lower it.
var logRows = 256

// noKey marks a row without a value for a sketch field (null or NaN).
const noKey = math.MinInt32

// keyOf returns the bucket key of a non-NaN value with bit pattern b.
func keyOf(b uint64) int32 {
	mag := b &^ signBit
	k := int32(mag>>idxShift) + 1
	if mag == 0 {
		k = 0
	}
	if b&signBit != 0 {
		k = -k
	}
	return k
}

// addKey counts c values in the bucket with key k.
func (k *sketch) addKey(key int32, c uint64, ar *arena) {
	switch {
	case key > 0:
		k.addN(uint64(key-1)<<idxShift, c, ar)
	case key < 0:
		k.addN(uint64(-key-1)<<idxShift|signBit, c, ar)
	default:
		k.zero += c
	}
}

// keyEstimate returns the estimate of a value in the bucket with key k:
// the bucket midpoint clamped to [lo, hi], as sketch.quantile gives it.
func keyEstimate(k int32, lo, hi float64) float64 {
	switch {
	case k > 0:
		return clamp(bucketMid(k-1), lo, hi)
	case k < 0:
		return clamp(-bucketMid(-k-1), lo, hi)
	}
	return clamp(0, lo, hi)
}

// selectKth reorders a so that a[k] is its k-th smallest element (from 0)
// and returns it.
func selectKth(a []int32, k int) int32 {
	lo, hi := 0, len(a)-1
	for hi-lo > 16 {
		mid := lo + (hi-lo)/2
		if a[mid] < a[lo] {
			a[mid], a[lo] = a[lo], a[mid]
		}
		if a[hi] < a[lo] {
			a[hi], a[lo] = a[lo], a[hi]
		}
		if a[hi] < a[mid] {
			a[hi], a[mid] = a[mid], a[hi]
		}
		p := a[mid]
		i, j := lo, hi
		for i <= j {
			for a[i] < p {
				i++
			}
			for a[j] > p {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		// a[lo..j] <= p, a[i..hi] >= p, a[j+1..i-1] == p.
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return a[k]
		}
	}
	for i := lo + 1; i <= hi; i++ {
		for j := i; j > lo && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
	return a[k]
}

// maxTopM is the largest m for which extremeKey keeps the m extreme keys
// in a small sorted array instead of selecting among all of them.
const maxTopM = 16

// extremeKey returns the m-th largest (top) or m-th smallest key among
// log[start], log[start+stride], ..., skipping noKey; there must be at
// least m keys and 1 <= m <= maxTopM. It makes one pass, comparing most
// keys only with the m-th best so far.
func extremeKey(log []int32, start, stride, m int, top bool) int32 {
	if m <= 4 {
		return extreme4(log, start, stride, m, top)
	}
	var best [maxTopM]int32 // the best keys so far, best first
	n := 0
	for j := start; j < len(log); j += stride {
		k := log[j]
		if k == noKey {
			continue
		}
		if !top {
			k = ^k // reverses the order: the smallest keys become the largest
		}
		if n == m {
			if k <= best[m-1] {
				continue
			}
			n--
		}
		i := n
		for ; i > 0 && best[i-1] < k; i-- {
			best[i] = best[i-1]
		}
		best[i] = k
		n++
	}
	if !top {
		return ^best[m-1]
	}
	return best[m-1]
}

// extreme4 is extremeKey for m <= 4: the four best keys pass through a
// branch-free network of minimum and maximum, so the data decides no
// branch.
func extreme4(log []int32, start, stride, m int, top bool) int32 {
	b0, b1, b2, b3 := int32(math.MinInt32), int32(math.MinInt32), int32(math.MinInt32), int32(math.MinInt32)
	var flip int32 // all ones for the smallest keys: ^k reverses the order
	if !top {
		flip = -1
	}
	for j := start; j < len(log); j += stride {
		k := log[j]
		x := k ^ flip
		if k == noKey {
			x = math.MinInt32 // loses every comparison
		}
		b0, x = max(b0, x), min(b0, x)
		b1, x = max(b1, x), min(b1, x)
		b2, x = max(b2, x), min(b2, x)
		b3 = max(b3, x)
	}
	r := [4]int32{b0, b1, b2, b3}[m-1]
	return r ^ flip
}
