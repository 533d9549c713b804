// Package seqset is a set of sequence numbers kept as sorted, disjoint
// closed ranges: what the buffer and the forwarder use to track delivered,
// dropped and covered rows above the cursor.
package seqset

import "slices"

// Span is the closed range [Lo, Hi].
type Span struct{ Lo, Hi uint64 }

// Set is a sorted set of disjoint, non-adjacent closed ranges. The zero
// value is empty.
type Set []Span

// Add inserts [lo, hi], merging with overlapping and adjacent ranges.
func (rs *Set) Add(lo, hi uint64) {
	if hi < lo {
		return
	}
	r := *rs
	// first range that ends at or after lo-1 (could merge)
	i, _ := slices.BinarySearchFunc(r, lo, func(s Span, v uint64) int {
		if s.Hi+1 < v && s.Hi != ^uint64(0) {
			return -1
		}
		return 1
	})
	j := i
	for j < len(r) && (hi == ^uint64(0) || r[j].Lo <= hi+1) {
		lo = min(lo, r[j].Lo)
		hi = max(hi, r[j].Hi)
		j++
	}
	*rs = slices.Replace(r, i, j, Span{lo, hi})
}

// Contains reports whether seq is in the set.
func (rs Set) Contains(seq uint64) bool {
	i, ok := rs.find(seq)
	return ok && rs[i].Lo <= seq
}

// ContainsRange reports whether every sequence of [lo, hi] is in the set.
func (rs Set) ContainsRange(lo, hi uint64) bool {
	i, ok := rs.find(lo)
	return ok && rs[i].Lo <= lo && hi <= rs[i].Hi
}

// find returns the index of the first range ending at or after seq.
func (rs Set) find(seq uint64) (int, bool) {
	i, _ := slices.BinarySearchFunc(rs, seq, func(s Span, v uint64) int {
		if s.Hi < v {
			return -1
		}
		return 1
	})
	return i, i < len(rs)
}

// Prefix returns the highest sequence p such that every sequence in
// (from, p] is in the set, or from when from+1 is not.
func (rs Set) Prefix(from uint64) uint64 {
	i, ok := rs.find(from + 1)
	if !ok || rs[i].Lo > from+1 {
		return from
	}
	return rs[i].Hi
}

// Trim removes everything at or below seq.
func (rs *Set) Trim(seq uint64) {
	r := *rs
	n := 0
	for n < len(r) && r[n].Hi <= seq {
		n++
	}
	r = r[n:]
	if len(r) > 0 && r[0].Lo <= seq {
		r[0].Lo = seq + 1
	}
	*rs = r
}

// Missing returns the sub-ranges of [lo, hi] not in the set, in order.
func (rs Set) Missing(lo, hi uint64) []Span {
	var out []Span
	i, _ := rs.find(lo)
	for pos := lo; pos <= hi; {
		if i >= len(rs) || rs[i].Lo > hi {
			out = append(out, Span{pos, hi})
			break
		}
		if rs[i].Lo > pos {
			out = append(out, Span{pos, rs[i].Lo - 1})
		}
		if rs[i].Hi >= hi {
			break
		}
		pos = rs[i].Hi + 1
		i++
	}
	return out
}

// Count returns how many sequences of [lo, hi] are in the set.
func (rs Set) Count(lo, hi uint64) uint64 {
	var n uint64
	i, _ := rs.find(lo)
	for ; i < len(rs) && rs[i].Lo <= hi; i++ {
		n += min(rs[i].Hi, hi) - max(rs[i].Lo, lo) + 1
	}
	return n
}
