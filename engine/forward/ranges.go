package forward

import "slices"

// ranges is a sorted set of disjoint, non-adjacent closed sequence ranges:
// the rows above the cursor that need no more publishing (published, dead-
// lettered, or gone from the buffer).
type ranges []span

type span struct{ lo, hi uint64 }

// add inserts [lo, hi], merging with overlapping and adjacent ranges.
func (rs *ranges) add(lo, hi uint64) {
	if hi < lo {
		return
	}
	r := *rs
	// first range that ends at or after lo-1 (could merge)
	i, _ := slices.BinarySearchFunc(r, lo, func(s span, v uint64) int {
		if s.hi+1 < v {
			return -1
		}
		return 1
	})
	j := i
	for j < len(r) && r[j].lo <= hi+1 {
		lo = min(lo, r[j].lo)
		hi = max(hi, r[j].hi)
		j++
	}
	*rs = slices.Replace(r, i, j, span{lo, hi})
}

// contains reports whether seq is in the set.
func (rs ranges) contains(seq uint64) bool {
	i, ok := rs.find(seq)
	return ok && rs[i].lo <= seq
}

// find returns the index of the first range ending at or after seq.
func (rs ranges) find(seq uint64) (int, bool) {
	i, _ := slices.BinarySearchFunc(rs, seq, func(s span, v uint64) int {
		if s.hi < v {
			return -1
		}
		return 1
	})
	return i, i < len(rs)
}

// prefix returns the highest sequence p such that every sequence in
// (from, p] is in the set, or from when from+1 is not.
func (rs ranges) prefix(from uint64) uint64 {
	i, ok := rs.find(from + 1)
	if !ok || rs[i].lo > from+1 {
		return from
	}
	return rs[i].hi
}

// trim removes everything at or below seq.
func (rs *ranges) trim(seq uint64) {
	r := *rs
	n := 0
	for n < len(r) && r[n].hi <= seq {
		n++
	}
	r = r[n:]
	if len(r) > 0 && r[0].lo <= seq {
		r[0].lo = seq + 1
	}
	*rs = r
}

// missing returns the sub-ranges of [lo, hi] not in the set, in order.
func (rs ranges) missing(lo, hi uint64) []span {
	var out []span
	i, _ := rs.find(lo)
	for pos := lo; pos <= hi; {
		if i >= len(rs) || rs[i].lo > hi {
			out = append(out, span{pos, hi})
			break
		}
		if rs[i].lo > pos {
			out = append(out, span{pos, rs[i].lo - 1})
		}
		if rs[i].hi >= hi {
			break
		}
		pos = rs[i].hi + 1
		i++
	}
	return out
}
