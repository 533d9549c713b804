package seqset_test

import (
	"math/rand/v2"
	"testing"

	"github.com/sluice-edge/sluice/engine/buffer/seqset"
)

// TestSetAgainstMap checks every operation against a plain map of
// sequences over random adds and trims.
func TestSetAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var s seqset.Set
		m := map[uint64]bool{}
		var floor uint64
		for range 40 {
			if r.IntN(8) == 0 {
				floor += uint64(r.IntN(20))
				s.Trim(floor)
				for k := range m {
					if k <= floor {
						delete(m, k)
					}
				}
				continue
			}
			lo := floor + 1 + uint64(r.IntN(200))
			hi := lo + uint64(r.IntN(15))
			s.Add(lo, hi)
			for k := lo; k <= hi; k++ {
				m[k] = true
			}
		}
		for i := 1; i < len(s); i++ {
			if s[i].Lo <= s[i-1].Hi+1 {
				t.Fatalf("round %d: ranges %v and %v not merged", round, s[i-1], s[i])
			}
		}
		for k := uint64(0); k < floor+260; k++ {
			if s.Contains(k) != m[k] {
				t.Fatalf("round %d: Contains(%d) = %v", round, k, s.Contains(k))
			}
		}
		lo, hi := floor+uint64(r.IntN(100)), floor+100+uint64(r.IntN(100))
		var want uint64
		var missing []seqset.Span
		for k := lo; k <= hi; k++ {
			if m[k] {
				want++
				continue
			}
			if n := len(missing); n > 0 && missing[n-1].Hi+1 == k {
				missing[n-1].Hi = k
			} else {
				missing = append(missing, seqset.Span{Lo: k, Hi: k})
			}
		}
		if got := s.Count(lo, hi); got != want {
			t.Fatalf("round %d: Count(%d, %d) = %d, want %d", round, lo, hi, got, want)
		}
		got := s.Missing(lo, hi)
		if len(got) != len(missing) {
			t.Fatalf("round %d: Missing(%d, %d) = %v, want %v", round, lo, hi, got, missing)
		}
		for i := range got {
			if got[i] != missing[i] {
				t.Fatalf("round %d: Missing(%d, %d) = %v, want %v", round, lo, hi, got, missing)
			}
		}
		p := s.Prefix(floor)
		wantP := floor
		for m[wantP+1] {
			wantP++
		}
		if p != wantP {
			t.Fatalf("round %d: Prefix(%d) = %d, want %d", round, floor, p, wantP)
		}
		if s.ContainsRange(lo, lo) != m[lo] {
			t.Fatalf("round %d: ContainsRange(%d, %d)", round, lo, lo)
		}
	}
}

func TestAddAtTheTop(t *testing.T) {
	var s seqset.Set
	s.Add(^uint64(0)-5, ^uint64(0))
	s.Add(1, 3)
	s.Add(^uint64(0)-10, ^uint64(0)-6)
	if len(s) != 2 || s[1].Lo != ^uint64(0)-10 || s[1].Hi != ^uint64(0) {
		t.Fatalf("got %v", s)
	}
}
